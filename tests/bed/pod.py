"""A pod's worth of files and processes on the bed: token dir, data dir, litestream.yml, env.

Runs the real `litestream-supervisor` (this interpreter, `-m supervisor`) as a subprocess, and
keeps everything it printed so tests can search it for secrets.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.bed.net import Forwarder, free_port
from tests.bed.projector import TokenProjector
from tests.bed.testbed import Bed

# Everything the supervisor printed in this test session, and every secret it served: the
# suite-wide scan (the bed fixture's teardown in tests/conftest.py) checks that no secret ever reached an output.
CAPTURED: list[str] = []
SERVED_SECRETS: set[str] = set()


def supervisor_cmd(*args: str) -> list[str]:
    # -OO as the image runs it (PYTHONOPTIMIZE=2): what the tests and the bench run is what ships.
    return [sys.executable, "-OO", "-m", "supervisor", *args]


@dataclass
class Run:
    returncode: int
    output: str
    seconds: float


@dataclass
class Pod:
    bed: Bed
    root: Path
    prefix: str
    projector: TokenProjector
    outputs: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    endpoint: str = ""
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))  # the pod's metadata.uid (downward API)
    workload: str = "app"

    @classmethod
    def create(cls, bed: Bed, root: Path, prefix: str, **mint_kwargs: object) -> Pod:
        projector = TokenProjector(root / "tokens", lambda: bed.issuer.mint(**mint_kwargs))  # type: ignore[arg-type]
        projector.rotate()
        (root / "data").mkdir()
        pod = cls(bed=bed, root=root, prefix=prefix, projector=projector, endpoint=bed.endpoint)
        pod.write_config()
        return pod

    @property
    def name(self) -> str:
        return f"app-{self.uid[:8]}"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def config(self) -> Path:
        return self.root / "litestream.yml"

    def db(self, name: str = "app.db") -> Path:
        return self.data / name

    def write_config(self, names: tuple[str, ...] = ("app.db",), endpoint: str | None = None,
                     extra_db: str = "", top: str = "") -> Path:
        endpoint = endpoint or self.endpoint
        lines = [top, "dbs:"] if top else ["dbs:"]
        for name in names:
            lines += [
                f"  - path: {self.db(name)}",
                extra_db,
                "    replica:",
                "      type: s3",
                f"      bucket: {self.bed.role.bucket}",
                f"      path: {self.prefix}/{name}",
                f"      endpoint: {endpoint}",
            ]
        self.config.write_text("\n".join(line for line in lines if line) + "\n")
        return self.config

    @contextlib.contextmanager
    def through_forwarder(self, throttle_bytes_per_second: float | None = None) -> Iterator[Forwarder]:
        """Point the pod at a forwarder in front of RGW (S3 in litestream.yml, and STS in env()
        unless a test overrides AWS_ENDPOINT_URL_STS); cut it, throttle it; undone on exit."""
        fwd = Forwarder(self.bed.cluster.rgw_port, throttle_bytes_per_second=throttle_bytes_per_second)
        fwd.start()
        self.endpoint = fwd.url
        self.write_config()
        try:
            yield fwd
        finally:
            fwd.stop()
            self.endpoint = self.bed.endpoint
            self.write_config()

    def env(self, **overrides: str | None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.bed.pod_env(self.projector.path, endpoint=self.endpoint))
        env["LITESTREAM_CONFIG"] = str(self.config)
        # Pods on one prefix are pods of one workload (as a Deployment's are): the webhook and the
        # Component set this from the pod's owner.
        env.update(POD_NAME=self.name, POD_NAMESPACE="tests", POD_UID=self.uid,
                   LITESTREAM_SUPERVISOR_WORKLOAD=self.workload)
        env["LITESTREAM_SUPERVISOR_LOG_FORMAT"] = "json"
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def run(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> Run:
        started = time.monotonic()
        out = subprocess.run(supervisor_cmd(*args), env=env or self.env(), capture_output=True,
                             text=True, timeout=timeout, check=False)
        text = out.stdout + out.stderr
        self.outputs.append(text)
        # `credentials` prints secrets to stdout by design: only its stderr (logs) is scanned.
        CAPTURED.append(out.stderr if args[:1] == ("credentials",) else text)
        return Run(out.returncode, text, time.monotonic() - started)

    def start(self, *args: str, env: dict[str, str] | None = None) -> Supervisor:
        log = self.root / f"supervisor-{len(self.procs)}.log"
        handle = open(log, "wb")  # noqa: SIM115 (the child owns it)
        proc = subprocess.Popen(supervisor_cmd(*args), env=env or self.env(), stdout=handle,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        handle.close()
        self.procs.append(proc)
        return Supervisor(proc, log, self)

    def start_replicate(self, *args: str, env: dict[str, str] | None = None) -> Supervisor:
        port = free_port()
        sup = self.start("replicate", "--health-addr", f"127.0.0.1:{port}", "--lag-interval", "0.5", *args, env=env)
        sup.health_port = port
        return sup

    def close(self) -> None:
        self.projector.stop()
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        for log in self.root.glob("supervisor-*.log"):
            CAPTURED.append(log.read_text(errors="replace"))

    def secret_values(self) -> list[str]:
        """Every token this pod's projector ever wrote, and every secret the broker served
        (the test knows them; logs must not)."""
        return [*self.projector.written, *SERVED_SECRETS]


@dataclass
class Supervisor:
    proc: subprocess.Popen[bytes]
    log: Path
    pod: Pod
    health_port: int = 0

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def events(self) -> list[dict[str, object]]:
        out = []
        for line in self.output().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                item = json.loads(line)
                if isinstance(item, dict):
                    out.append(item)
        return out

    def count(self, event: str, **match: object) -> int:
        return sum(1 for e in self.events()
                   if e.get("event") == event and all(e.get(k) == v for k, v in match.items()))

    def get(self, path: str, timeout: float = 5) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}{path}", timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metric(self, name: str, labels: str = "") -> float:
        _, body = self.get("/metrics")
        for line in body.splitlines():
            if line.startswith(name + (labels or "")) and not line.startswith("#"):
                head, _, value = line.rpartition(" ")
                if head == name + labels or (not labels and head.split("{")[0] == name):
                    return float(value)
        raise KeyError(f"{name}{labels} not in /metrics")

    def wait_for(self, predicate: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"supervisor exited ({self.proc.returncode}) waiting for {what}:\n"
                                     + self.output()[-3000:])
            with contextlib.suppress(OSError, KeyError, urllib.error.URLError):
                if predicate():  # type: ignore[operator]
                    return
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n" + self.output()[-3000:])

    def wait_ready(self, timeout: float = 60) -> None:
        self.wait_for(lambda: self.get("/readyz")[0] == 200, timeout, "/readyz 200")

    def terminate(self, timeout: float = 60, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        self.pod.outputs.append(self.output())
        return rc

    def litestream_pid(self) -> int:
        """The pid of the Litestream daemon started last (from its litestream_started line)."""
        for e in reversed(self.events()):
            if e.get("event") == "litestream_started":
                return int(e["pid"])  # type: ignore[arg-type]
        raise KeyError("no litestream_started line yet")

    def served_credentials(self) -> dict[str, str]:
        """The credentials the broker serves right now, fetched the way Litestream does.

        Reads the child's environment from /proc (the test bed runs as root), so secret scans
        can search for the real secret key and session token.
        """
        pid = self.litestream_pid()
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        env = dict(item.decode().split("=", 1) for item in environ if b"=" in item)
        req = urllib.request.Request(env["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
                                     headers={"Authorization": env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]})
        with urllib.request.urlopen(req, timeout=5) as r:
            body = json.loads(r.read())
        body["BrokerAuthorization"] = env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
        SERVED_SECRETS.update((body["SecretAccessKey"], body["Token"], body["BrokerAuthorization"]))
        return body

    def scrape(self) -> None:
        """Keep the health pages for the suite-wide secret scan."""
        for path in ("/livez?verbose", "/readyz?verbose", "/metrics"):
            with contextlib.suppress(OSError, urllib.error.URLError):
                CAPTURED.append(self.get(path)[1])


class Writer:
    """Commits one row at a time at a steady rate in a thread; remembers what was committed."""

    def __init__(self, db: Path, interval_seconds: float = 0.05) -> None:
        self.db = db
        self.interval = interval_seconds
        self.committed: list[int] = []
        self.commit_times: list[float] = []  # wall clock of each commit, for latency benchmarks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.errors: list[str] = []

    def _loop(self) -> None:
        con = connect(self.db)
        i = len(self.committed)
        try:
            while not self._stop.is_set():
                i += 1
                try:
                    con.execute("INSERT INTO rows(id, payload) VALUES (?, ?)", (i, os.urandom(64).hex()))
                    con.commit()
                    self.committed.append(i)
                    self.commit_times.append(time.time())
                except sqlite3.OperationalError as e:  # busy during a checkpoint: retry next tick
                    self.errors.append(str(e))
                    i -= 1
                time.sleep(self.interval)
        finally:
            con.close()

    def start(self) -> Writer:
        self._thread.start()
        return self

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(timeout=10)
        return self.committed


def connect(db: Path) -> sqlite3.Connection:
    con = sqlite3.connect(db, timeout=10)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA busy_timeout=10000")
    con.execute("CREATE TABLE IF NOT EXISTS rows(id INTEGER PRIMARY KEY, payload TEXT)")
    con.commit()
    return con


def row_ids(db: Path) -> list[int]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [r[0] for r in con.execute("SELECT id FROM rows ORDER BY id")]
    finally:
        con.close()
