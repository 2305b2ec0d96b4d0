"""The CLI as a user meets it: help, version, one-line errors with exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.bed.pod import supervisor_cmd


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run(supervisor_cmd(*args), capture_output=True, text=True, env=full, timeout=60, check=False)


def test_help_lists_every_command() -> None:
    out = run("--help")
    assert out.returncode == 0
    for command in ("restore", "replicate", "check", "credentials", "version"):
        assert command in out.stdout


COMMAND_SUMMARIES = {
    "restore": "Restore each database from its replica",
    "replicate": "Run `litestream replicate` with fresh credentials",
    "check": "Explain what is wrong",
    "credentials": "Print credentials in the AWS credential_process JSON format",
    "inject": "Print the YAML with the injection applied",
    "webhook": "Mutating admission webhook",
    "rgw-setup": "Create or update, idempotently, RGW's side for one app",
    "version": "Print the supervisor's version",
}


@pytest.mark.parametrize("optimize", ["", "-OO"])
def test_every_command_keeps_its_help_when_docstrings_are_stripped(optimize: str) -> None:
    """The image runs Python with PYTHONOPTIMIZE=2 (-OO strips docstrings): help must not come from them."""
    flags = [optimize] if optimize else []
    top = subprocess.run([sys.executable, *flags, "-m", "supervisor", "--help"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "Run Litestream with short-lived S3 credentials" in top
    for command, summary in COMMAND_SUMMARIES.items():
        assert " ".join(summary.split()[:3]) in " ".join(top.split()), (command, top)
        out = subprocess.run([sys.executable, *flags, "-m", "supervisor", command, "--help"], capture_output=True,
                             text=True, timeout=60, check=True).stdout
        assert summary in " ".join(out.split()), (command, out)


def test_restore_help_documents_exit_codes_and_env() -> None:
    out = run("restore", "--help").stdout
    assert "Exit codes:" in out and "143" in out and "LITESTREAM_SUPERVISOR_TIMEOUT" in out
    assert "LITESTREAM_SUPERVISOR_ROLE_ARN" in out


def test_version_prints_both() -> None:
    out = run("version")
    assert out.returncode == 0
    assert out.stdout.startswith("litestream-supervisor 0.") and "litestream 0.5.17" in out.stdout


def test_version_fails_clearly_without_binary(tmp_path: Path) -> None:
    out = run("version", "--litestream", str(tmp_path / "nope"))
    assert out.returncode == 11 and "--litestream" in out.stderr


@pytest.mark.parametrize(("args", "env", "names"), [
    (["restore", "--timeout", "soon"], {}, "--timeout"),
    (["restore"], {"LITESTREAM_SUPERVISOR_TIMEOUT": "-1"}, "LITESTREAM_SUPERVISOR_TIMEOUT"),
    (["replicate", "--health-addr", "nowhere"], {}, "--health-addr"),
    (["replicate", "--log-level", "loud"], {}, "--log-level"),
    (["restore", "--duration-seconds", "0"], {}, "--duration-seconds"),
    (["restore", "--sts-endpoint", "minio:9000"], {}, "--sts-endpoint"),
])
def test_bad_values_exit_2_with_one_line(args: list[str], env: dict[str, str], names: str) -> None:
    out = run(*args, env=env)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and names in lines[0], out.stderr


def test_bad_litestream_yml_exits_2_with_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "ls.yml"
    cfg.write_text("dbs:\n  - path: /data/app.db\n    replica:\n      bucket: b\n      pth: app\n")
    token = tmp_path / "token"
    token.write_text("x.y.z")
    out = run("restore", "--config", str(cfg), "--log-format", "json",
              env={"AWS_ROLE_ARN": "arn:aws:iam:::role/x", "AWS_WEB_IDENTITY_TOKEN_FILE": str(token)})
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown key 'pth'" in lines[0] and str(cfg) in lines[0]
    assert not (tmp_path / "data").exists()


def test_missing_role_arn_is_named(tmp_path: Path) -> None:
    cfg = tmp_path / "ls.yml"
    cfg.write_text("dbs:\n  - path: /data/app.db\n    replica: {bucket: b, path: app}\n")
    out = run("restore", "--config", str(cfg), env={"AWS_ROLE_ARN": "", "AWS_WEB_IDENTITY_TOKEN_FILE": ""})
    assert out.returncode == 2 and "AWS_ROLE_ARN" in out.stderr


def test_the_installed_console_script_runs() -> None:
    script = Path(sys.executable).parent / "litestream-supervisor"
    out = subprocess.run([str(script), "restore", "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0 and "Exit codes:" in out.stdout and " 13  " in out.stdout
