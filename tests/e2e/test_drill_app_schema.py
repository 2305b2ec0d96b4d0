"""On the real bed: a drill on a database holding a virtual table of the app's own module (sqlite-vec's
vec0, an FTS5 tokenizer of its own) keeps the sidecar running (it ended it on f9608c2)."""

from __future__ import annotations

from typing import Any

import apsw
import pytest

from tests.bed.pod import Pod, Writer, connect

pytestmark = pytest.mark.bed


class _Source:
    def Create(self, _db: Any, _module: str, _dbname: str, _table: str, *_args: Any) -> tuple[str, Any]:  # noqa: N802
        return "CREATE TABLE x(a)", _Table()

    Connect = Create


class _Table:
    def BestIndex(self, *_: Any) -> None:  # noqa: N802
        return None

    def Disconnect(self) -> None:  # noqa: N802
        pass

    Destroy = Disconnect


def test_drills_on_a_db_with_the_apps_own_virtual_table_keep_the_sidecar_running(pod: Pod) -> None:
    """FINDING: pages.row_counts() counts every table in sqlite_schema, virtual ones included; the
    supervisor's SQLite lacks the app's module, apsw.SQLError escapes Drills.drill (it catches only
    SupervisorError), the `drills` root task ends and main_loop shuts the sidecar down
    ("task drills exited") at the first drill."""
    connect(pod.db()).close()
    app = apsw.Connection(str(pod.db()))
    app.create_module("appmod", _Source())
    app.execute("CREATE VIRTUAL TABLE embeddings USING appmod()")
    app.close()
    sup = pod.start_replicate("--verify-interval", "2")
    sup.wait_ready()
    writer = Writer(pod.db(), 0.05).start()
    try:
        # wait_for raises when the supervisor exits meanwhile
        sup.wait_for(lambda: sum(1 for e in sup.events() if str(e.get("event", "")).startswith("drill_")) >= 3,
                     60, "three drills, the sidecar still running")
    finally:
        writer.stop()
    assert sup.terminate() == 0, sup.output()[-3000:]
