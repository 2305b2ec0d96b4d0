"""The garbage collector is paused through start-up and runs again once Litestream is started, or
after PAUSE_SECONDS at the latest: a pod that never gets that far must not pile up cycles."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from supervisor.commands import options as cli
from supervisor.commands import replicate as replicate_command
from supervisor.commands import restore as restore_command
from supervisor.commands.cli import cli as group
from supervisor.core import memory
from supervisor.litestream import process

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def paused(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process as the entry point (supervisor/__main__.py) leaves it (the collector off), restored afterwards."""
    gc.disable()
    monkeypatch.setattr(memory, "_paused", True)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.enable()


def test_the_entry_point_runs_the_cli_with_the_collector_paused() -> None:
    code = ("import gc; import supervisor.commands.cli as c; seen = []; c.main = lambda: seen.append(gc.isenabled()); "
            "from supervisor import __main__ as entry; from supervisor.core import memory; entry.main(); "
            "print(seen, gc.isenabled(), memory.paused())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert out.split() == ["[False]", "False", "True"]


def test_starting_litestream_ends_the_pause_and_freezes_what_start_up_allocated(paused: None) -> None:
    assert not gc.isenabled()

    async def spawn_and_reap() -> int:
        proc = await process.spawn(["/bin/true"], os.environ)
        return await proc.wait()

    assert asyncio.run(spawn_and_reap()) == 0
    assert gc.isenabled() and not memory.paused()
    assert gc.get_freeze_count() > 0  # start-up's objects: never scanned again


def test_a_command_that_never_starts_litestream_gets_the_collector_back(
        paused: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "PAUSE_SECONDS", 0.1)
    seen = []

    async def waiting_for_sts(_settings: object, _signals: object) -> int:
        seen.append(gc.isenabled())
        await asyncio.sleep(0.3)
        seen.append(gc.isenabled())
        return 0

    assert cli.run_async(waiting_for_sts, None) == 0  # type: ignore[arg-type]
    assert seen == [False, True]


def test_without_the_entry_point_nothing_is_paused_or_frozen() -> None:
    """Tests and tools that import the CLI keep their own collector settings."""
    assert gc.isenabled() and not memory.paused()
    before = gc.get_freeze_count()
    memory.over()
    assert gc.isenabled() and gc.get_freeze_count() == before


RELEASE = """
import sys
from supervisor.core.memory import release_memory

def rss_kb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1])

chunks = [bytes(2048) + bytes([i % 256]) for i in range(40000)]  # ~80 MB on glibc's heap
keep = chunks[-1]  # the top of the heap stays in use: glibc cannot shrink it by itself
del chunks
before = rss_kb()
released = release_memory()
print(released, before - rss_kb())
"""


def test_the_memory_start_up_freed_goes_back_to_the_kernel() -> None:
    """Issue 29: freed start-up heap stayed resident (glibc keeps it for reuse) for the pod's life."""
    out = subprocess.run([sys.executable, "-c", RELEASE], capture_output=True, text=True, check=True, timeout=60,
                         cwd=ROOT)
    released, freed_kb = out.stdout.split()
    assert released == "True" and int(freed_kb) > 40_000, out.stdout


ARENAS = """
import ctypes, os, sys, tempfile, threading
from supervisor.core.memory import limit_arenas

if sys.argv[1] == "limit":
    assert limit_arenas()

def work():
    keep = [bytes(1024 + i % 64) for i in range(20000)]
    del keep

threads = [threading.Thread(target=work) for _ in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
path = tempfile.mktemp()
f = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(f))
libc.fclose(ctypes.c_void_p(f))
print(open(path).read().count("<heap nr="))
os.unlink(path)
"""


def test_the_sidecars_threads_share_one_malloc_arena() -> None:
    """Issue 29 (soak): each blocking call runs in a new thread, and glibc gives threads arenas of
    their own (up to 8 per core), each keeping its own free memory for the pod's life."""
    def arenas(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", ARENAS, mode], capture_output=True, text=True, check=True,
                             timeout=60, cwd=ROOT)
        return int(out.stdout.strip())

    assert arenas("default") > 1  # what the sidecar had
    assert arenas("limit") == 1


@pytest.mark.parametrize(("command", "limited"), [("replicate", True), ("restore", False)])
def test_only_the_sidecar_limits_its_arenas(monkeypatch: pytest.MonkeyPatch, command: str, limited: bool) -> None:
    """The arena limit is set by the long-running command, before its first thread (the STS head
    start): a limit set later would leave the arenas already made. The init container exits in
    seconds and keeps glibc's defaults."""
    calls: list[str] = []
    monkeypatch.setattr(memory, "limit_arenas", lambda: calls.append("limit") or True)
    settings = SimpleNamespace(log_level="info", log_format="json")
    monkeypatch.setattr(cli.settings_mod, "build", lambda _options: calls.append("settings") or settings)
    monkeypatch.setattr(cli, "configure", lambda *_args: None)
    for module in (restore_command, replicate_command):
        monkeypatch.setattr(module, "dry_run", lambda _settings: 0)
    assert group.main([command, "--dry-run"], standalone_mode=False) == 0
    assert calls == (["settings", "limit"] if limited else ["settings"])
