"""S3 clients for a replica, exactly as litestream.yml resolved it (endpoint, region, path style).

One attempt per call: the callers own retries and budgets (the lag probe, the lease, restore).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from botocore import UNSIGNED
from botocore.config import Config

from supervisor.identity.clients import session
from supervisor.identity.credentials import Credentials
from supervisor.litestream.config import Replica


def s3_client(creds: Credentials, replica: Replica, *, ca_bundle: Path | None, timeout_seconds: float = 10.0) -> Any:
    """A client for the replica exactly as resolved in the config (endpoint, region, path style)."""
    return session().create_client(
        "s3",
        endpoint_url=replica.endpoint,
        region_name=replica.region,
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        aws_session_token=creds.session_token,
        verify=str(ca_bundle) if ca_bundle else True,
        config=Config(
            retries={"total_max_attempts": 1},
            connect_timeout=timeout_seconds,
            read_timeout=timeout_seconds,
            s3={"addressing_style": "path" if replica.force_path_style else "auto"},
        ),
    )


def load_models(replica: Replica) -> None:
    """Parse S3's model and endpoint rules now, with a throwaway unsigned client (no credentials
    looked up, nothing sent): the first real client then takes ~2 ms rather than ~13. Called
    while the first STS answer is awaited, when the process has nothing else to do."""
    session().create_client("s3", endpoint_url=replica.endpoint, region_name=replica.region,
                            config=Config(signature_version=UNSIGNED))
