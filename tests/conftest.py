"""Fixtures: the real test bed (session-scoped) and per-test pods (token dir, data dir, config)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bed.ceph import missing_binaries
from tests.bed.pod import CAPTURED, SERVED_SECRETS, Pod
from tests.bed.testbed import Bed


@pytest.fixture(scope="session")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    missing = missing_binaries()
    if missing:
        # Never a skip: CI installs these (make deps); a missing tool is a red build.
        pytest.fail(f"test bed needs {', '.join(missing)}: run `make deps` (apt-get install radosgw ceph-mon ceph-osd)")
    workdir = tmp_path_factory.mktemp("bed")
    bed = Bed.up(workdir)
    try:
        yield bed
        # After the last test that used the bed, whatever the order or selection: every output
        # captured (logs, health pages, metrics, error text) against every token ever minted and
        # every secret ever served.
        assert_no_secret_leaked(bed)
    finally:
        bed.down()
        if not os.environ.get("KEEP_BED"):
            shutil.rmtree(workdir, ignore_errors=True)


def assert_no_secret_leaked(bed: Bed) -> None:
    if not CAPTURED:
        return
    secrets = {s for s in (*bed.issuer.minted, *SERVED_SECRETS) if s and len(s) >= 16}
    text = "\n".join(CAPTURED)
    leaked = [s[:12] + "..." for s in secrets if s in text]
    assert not leaked, f"{len(leaked)} secret(s) leaked into captured output"


@pytest.fixture
def pod(bed: Bed, tmp_path: Path) -> Iterator[Pod]:
    """A pod's worth of files: token dir (kubelet layout), data dir, litestream.yml, env."""
    p = Pod.create(bed, tmp_path, prefix=f"t/{uuid.uuid4().hex[:12]}")
    try:
        yield p
    finally:
        p.close()
