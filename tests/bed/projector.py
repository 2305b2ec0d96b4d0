"""Writes a projected service-account token directory exactly as the kubelet does.

Layout (kubelet's AtomicWriter):
    <dir>/..2026_11_28_11_00_00.123456789/token   the payload, in a timestamped directory
    <dir>/..data -> ..2026_11_28_11_00_00.123456789   swapped atomically (symlink + rename)
    <dir>/token -> ..data/token                   the path the pod reads
The previous timestamped directory is removed after the swap, so a watch on the file itself
dies at the first rotation.
"""

from __future__ import annotations

import datetime
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path


class TokenProjector:
    def __init__(self, directory: Path, mint: Callable[[], str], filename: str = "token") -> None:
        self.dir = directory
        self.mint = mint
        self.filename = filename
        self.rotations = 0
        self.current = ""
        self.written: list[str] = []  # every token ever projected, for secret scans
        # The kubelet gives the file to the pod's runAsUser/runAsGroup when its containers share one.
        self.owner: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> Path:
        return self.dir / self.filename

    def rotate(self, token: str | None = None) -> str:
        """Write a new token (minted unless given) with the kubelet's atomic swap."""
        self.dir.mkdir(parents=True, exist_ok=True)
        token = token if token is not None else self.mint()
        self.written.append(token)
        stamp = datetime.datetime.now(datetime.UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
        ts_dir = self.dir / stamp
        ts_dir.mkdir(mode=0o755)
        payload = ts_dir / self.filename
        payload.write_text(token)
        payload.chmod(0o600)
        if self.owner is not None:
            os.chown(payload, *self.owner)
        data_link = self.dir / "..data"
        old = os.readlink(data_link) if data_link.is_symlink() else None
        tmp_link = self.dir / "..data_tmp"
        if tmp_link.is_symlink():
            tmp_link.unlink()
        os.symlink(stamp, tmp_link)
        os.rename(tmp_link, data_link)
        user_link = self.dir / self.filename
        if not user_link.is_symlink():
            os.symlink(f"..data/{self.filename}", user_link)
        if old and old != stamp:
            shutil.rmtree(self.dir / old, ignore_errors=True)
        self.current = token
        self.rotations += 1
        return token

    def start(self, interval_seconds: float) -> None:
        """Rotate on a schedule in a background thread until stop()."""
        def loop() -> None:
            while not self._stop.wait(interval_seconds):
                self.rotate()

        self._thread = threading.Thread(target=loop, name="token-projector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
