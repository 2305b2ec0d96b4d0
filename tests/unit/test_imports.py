"""Each command loads only what it uses: every module imported is start-up time (restore) and
resident memory for the pod's life (the sidecar)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def loaded_after(*modules: str) -> set[str]:
    code = ("import json, sys\n" + "".join(f"import {m}\n" for m in modules)
            + "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-OO", "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize(("command", "never"), [
    # restore (the initContainer): no health server, no metrics, no token watcher
    ("supervisor.replica.restore", {"supervisor.core.inotify", "prometheus_client", "http.server",
                                    "supervisor.health.server"}),
    # replicate (the sidecar): no restore machinery or SQLite until a WAL reset needs it
    ("supervisor.jobs.replicate", {"supervisor.replica.restore", "sqlite3", "boto3"}),
])
def test_a_command_does_not_load_what_it_does_not_use(command: str, never: set[str]) -> None:
    loaded = loaded_after("supervisor.commands.cli", command)
    assert command in loaded
    assert not never & loaded, sorted(never & loaded)


def test_the_token_watcher_is_loaded_when_the_watch_starts() -> None:
    loaded = loaded_after("supervisor.identity.token")
    assert "supervisor.core.inotify" not in loaded
