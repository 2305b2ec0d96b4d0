"""Runs last: every output the suite captured (logs, health pages, metrics, error text) is
searched for every token the issuer minted and every secret the broker served."""

from __future__ import annotations

from tests.bed.pod import CAPTURED, SERVED_SECRETS
from tests.bed.testbed import Bed


def test_no_secret_in_any_captured_output(bed: Bed) -> None:
    assert CAPTURED, "nothing captured: the e2e tests did not run before this one"
    secrets = {s for s in (*bed.issuer.minted, *SERVED_SECRETS) if s and len(s) >= 16}
    assert len(secrets) > 10
    text = "\n".join(CAPTURED)
    leaked = [s[:12] + "..." for s in secrets if s in text]
    assert not leaked, f"{len(leaked)} secret(s) leaked into captured output"
