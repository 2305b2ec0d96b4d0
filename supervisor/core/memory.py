"""The process entry point: the cyclic garbage collector waits until start-up is over.

Start-up (imports, botocore's models, the clients) allocates ~100k objects that live as long as
the process; on the way the collector runs ~100 times and finds nothing to free: 12-22 ms of a
restore's 0.2 s before Litestream can start. So it is paused from the first import until the
first Litestream has been started (or `PAUSE_SECONDS` have passed, whichever comes first: a pod
still waiting for STS must not pile up the cycles its retries leave), then everything allocated
so far is frozen (never scanned again: it will not die) and the collector runs as usual.
"""

from __future__ import annotations

import gc

PAUSE_SECONDS = 2.0

_paused = False


def pause() -> None:
    """Called first thing by the entry point, before the imports it pauses for."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def over() -> None:
    """Start-up is done: the collector resumes (a no-op unless `main` paused it)."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def paused() -> bool:
    return _paused


M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_arenas() -> bool:
    """One malloc arena for every thread (glibc gives each new thread its own, up to 8 per core):
    the sidecar runs each blocking call in a thread of its own (supervisor/core/threads.py), so over
    weeks each of those arenas would keep its own free memory. Locking one arena costs nothing at
    the sidecar's few calls a second. False where the C library has no mallopt."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, 1))


def release_memory() -> bool:
    """Give the kernel back the heap pages start-up used and freed (glibc keeps them for reuse: about
    1 MB of the sidecar's RSS for its whole life, measured). False where the C library has no
    malloc_trim (musl)."""
    import ctypes

    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim(0)
    return True
