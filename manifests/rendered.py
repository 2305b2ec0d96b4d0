"""Shared by the manifest generators: write the rendered files, or (--check) fail when stale."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(files: dict[str, str], directory: Path, make_target: str) -> int:
    stale = []
    for name, text in files.items():
        path = directory / name
        if "--check" in sys.argv:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}: run `make {make_target}`", file=sys.stderr)
        return 1
    return 0
