"""What every benchmark shares: the log line, medians, a pod on the bed, bare Litestream beside
it, the replica a pod writes to, and the registry entry a benchmark module declares.

A benchmark module (bench/benchmarks/) holds one measurement: `BENCHMARKS` (name -> Benchmark),
`rows(benchmarks)` for RESULTS.md's table and `notes(benchmarks, results)` for its notes; its
own command-line options, when it has any, in `add_arguments(parser)`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.litestream.config import Database, Replica
from tests.bed.pod import Pod, row_ids
from tests.bed.replicas import bare_env, forget_local
from tests.bed.testbed import Bed, litestream_binary

HERE = Path(__file__).parent
Row = tuple[str, Any, Any, Any]  # measure | litestream-supervisor | peer | ratio


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else float("nan")


@dataclass(frozen=True)
class Benchmark:
    """One entry of `python -m bench --only NAME`."""

    run: Callable[[Bed, Path, argparse.Namespace], Any]
    # Where the value goes in results.json's "benchmarks" (default: under its own name); returns the
    # entry that gets the date when it was rerun with --only.
    store: Callable[[dict[str, Any], str, Any], dict[str, Any]] | None = None

    def put(self, benchmarks: dict[str, Any], name: str, value: Any) -> dict[str, Any]:
        if self.store is not None:
            return self.store(benchmarks, name, value)
        benchmarks[name] = value
        return value  # type: ignore[no-any-return]


def new_pod(bed: Bed, work: Path, names: tuple[str, ...] = ("app.db",)) -> Pod:
    root = work / f"pod-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    pod = Pod.create(bed, root, prefix=f"bench/{uuid.uuid4().hex[:10]}")
    pod.write_config(names=names)
    return pod


def rows_lost_by_restore(pod: Pod, committed: list[int]) -> int:
    """What a fresh pod would get: the local copy forgotten, the replica restored, the rows it lacks
    (all of them when the restore fails)."""
    forget_local(pod.db())
    run = pod.run("restore")
    return len(set(committed) - set(row_ids(pod.db()))) if run.returncode == 0 else len(committed)


def bare_replicate(pod: Pod, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log_file = open(pod.root / "bare.log", "ab")  # noqa: SIM115 (the child owns it)
    return subprocess.Popen([litestream_binary(), "replicate", "-config", str(pod.config)],
                            env=env or bare_env(pod), stdout=log_file, stderr=subprocess.STDOUT)


def replica_of(bed: Bed, pod: Pod, name: str = "app.db") -> Database:
    return Database(pod.db(name), Replica(bed.role.bucket, f"{pod.prefix}/{name}", bed.endpoint, bed.region, True),
                    pod.data / f".{name}-litestream")


def static_env(pod: Pod) -> dict[str, str]:
    """Bare Litestream with the same role's credentials given as keys: its run without its own STS call."""
    run = pod.run("credentials")
    assert run.returncode == 0, run.output[-2000:]
    creds = json.loads(next(line for line in run.output.splitlines() if line.startswith("{\"Version\"")))
    env = {k: v for k, v in bare_env(pod).items() if k not in ("AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")}
    env.update(AWS_ACCESS_KEY_ID=creds["AccessKeyId"], AWS_SECRET_ACCESS_KEY=creds["SecretAccessKey"],
               AWS_SESSION_TOKEN=creds["SessionToken"])
    return env


def timestamp(event: dict[str, Any]) -> float:
    """An event's wall-clock time, from the supervisor's JSON log line."""
    return datetime.datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def event_time(sup: Any, event: str) -> float:
    for e in sup.events():
        if e.get("event") == event:
            return timestamp(e)
    raise AssertionError(f"no {event} in the supervisor's log")
