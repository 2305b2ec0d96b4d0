"""`check`: walk the chain a pod depends on and say which link is broken.

config -> litestream binary -> token -> STS -> clock -> bucket and replica layout.
Each step prints one line, `[ok]` or `[FAIL]` with the reason; later steps that depend on a
failed one are skipped. Exit 0 only when every step passed.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import click

from supervisor.core.budget import Budget
from supervisor.core.errors import ExitCode, SupervisorError
from supervisor.core.settings import Settings
from supervisor.core.signals import Signals
from supervisor.core.state import State
from supervisor.identity import deletes, minio
from supervisor.identity import token as tokens
from supervisor.identity.credentials import Credentials
from supervisor.identity.service import CredentialService
from supervisor.identity.sts import server_time
from supervisor.litestream import binary as litestream
from supervisor.litestream import config as lsconfig
from supervisor.litestream import sqlitedb
from supervisor.litestream.config import Database
from supervisor.replica import layout as replicas
from supervisor.replica import ondisk
from supervisor.replica.lease import LeaseStore

MAX_SKEW_SECONDS = 60.0


async def obtain_once(settings: Settings) -> Credentials:
    """One exchange for `credentials`: bounded by --timeout; no config needed."""
    config = lsconfig.load_for(settings) if settings.one_db or settings.config_path.exists() else None
    # The app's own credentials: the role's policy, not the supervisor's narrowed session.
    service = CredentialService(replace(settings, session_policy=False), State(), config)
    try:
        return await service.keeper.obtain(Budget(settings.timeout_seconds))
    finally:
        await service.close()


class Report:
    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.failed = 0

    def ok(self, step: str, detail: str) -> None:
        self.echo(f"[ok]   {step:<10} {detail}")

    def fail(self, step: str, detail: str) -> None:
        self.failed += 1
        self.echo(f"[FAIL] {step:<10} {detail}")

    def skip(self, step: str, why: str) -> None:
        self.echo(f"[skip] {step:<10} {why}")


def _token_step(settings: Settings, report: Report) -> bool:
    if not settings.aws.token_file:
        report.fail("token", "AWS_WEB_IDENTITY_TOKEN_FILE / --token-file is not set")
        return False
    try:
        token = tokens.read(settings.aws.token_file)
    except SupervisorError as e:
        report.fail("token", str(e))
        return False
    problems = []
    if settings.aws.audience not in token.audiences:
        problems.append(f"aud {token.audiences} lacks {settings.aws.audience!r}")
    nbf = token.not_before
    if nbf is not None and nbf > time.time() + 1:
        problems.append(f"not valid for another {int(nbf - time.time())}s (clock?)")
    left = token.seconds_left()
    detail = (f"sub={token.subject} iss={token.issuer} aud={token.audiences} "
              f"expires in {int(left) if left is not None else '?'}s")
    if problems:
        report.fail("token", detail + "; " + "; ".join(problems))
        return False
    report.ok("token", detail)
    return True


def _clock_step(response_headers: dict[str, Any], report: Report) -> None:
    server = server_time(response_headers)
    if server is None:
        report.skip("clock", "server sent no readable Date header")
        return
    skew = time.time() - server
    if abs(skew) > MAX_SKEW_SECONDS:
        report.fail("clock", f"local clock is {skew:+.0f}s off the server's (tokens and signatures "
                    "fail beyond a few minutes)")
    else:
        report.ok("clock", f"skew {skew:+.1f}s against the server")


def _files_step(config: lsconfig.LitestreamConfig, report: Report) -> None:
    """Can this process write what Litestream must write? (The app and the sidecars share the db,
    its WAL and Litestream's meta dir: a uid mismatch is "attempt to write a readonly database".)"""
    me = f"uid {os.getuid()} gid {os.getgid()}"
    for db in config.databases:
        paths = [db.path.parent, db.path, db.path.with_name(db.path.name + "-wal"),
                 db.path.with_name(db.path.name + "-shm"), db.meta_dir]
        for path in paths:
            if not path.exists():
                continue
            if not os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0)):
                st = path.stat()
                report.fail("files", f"{path} is owned by uid {st.st_uid} gid {st.st_gid} (mode "
                            f"{stat.filemode(st.st_mode)}) and not writable by this process ({me}): Litestream "
                            "fails with 'attempt to write a readonly database'; run the sidecars as the app's "
                            "user (pod-level runAsUser/runAsGroup) or make the files group-writable (fsGroup)")
                break
        else:
            report.ok("files", f"{db.path} and its WAL, meta dir and directory are writable by {me}")


async def _policy_hint(service: CredentialService, settings: Settings, error: SupervisorError) -> str:
    """Refused with a session policy: would the same exchange pass without it?"""
    if service.keeper.policy is None or error.exit_code != ExitCode.CREDENTIALS_REFUSED:
        return ""
    policy, service.keeper.policy = service.keeper.policy, None
    try:
        await service.keeper.obtain(Budget(settings.timeout_seconds))
    except SupervisorError:
        return ""
    finally:
        service.keeper.policy = policy
    return ("; without the session policy STS accepts the token: this store refuses inline session policies, "
            "set --session-policy off")


def _role_hint(settings: Settings) -> str:
    """When STS refused a MinIO role: the ARN MinIO derives from the audience, if it differs."""
    arn = settings.aws.role_arn or ""
    if not minio.looks_like_minio_role(arn):
        return ""
    region = arn.split(":")[3]
    expected = minio.role_arn(settings.aws.audience, region)
    if arn == expected:
        return ""
    return (f"; MinIO's role for client id {settings.aws.audience!r} is {expected} (base64url(sha1(client id)), "
            "logged by MinIO as 'IAM Roles: ...'), not the configured one")


def _role_step(settings: Settings, report: Report) -> None:
    """The ARN MinIO derives for this audience, beside the configured one."""
    arn = settings.aws.role_arn or ""
    expected = minio.role_arn(settings.aws.audience, arn.split(":")[3] if minio.looks_like_minio_role(arn) else "")
    if not minio.looks_like_minio_role(arn):
        report.ok("role", f"{arn or '(unset)'}; on MinIO the role for audience {settings.aws.audience!r} "
                  f"would be {expected}")
    elif arn == expected:
        report.ok("role", f"{arn} is MinIO's role for audience {settings.aws.audience!r}")
    else:
        report.fail("role", f"{arn} is not MinIO's role for audience {settings.aws.audience!r}: MinIO derives "
                    f"{expected} (base64url(sha1(client id)); it logs it as 'IAM Roles: ...')")


async def _lease_step(store: LeaseStore, settings: Settings, report: Report) -> None:
    """Who holds the replica's lease, judged by the server's clock (read only: check never takes it)."""
    if not settings.lease:
        report.skip("lease", "--lease off: nothing keeps two pods from writing this replica")
        return
    try:
        async with Budget(settings.timeout_seconds).limit(store.location):
            seen = await asyncio.to_thread(store.read)
    except SupervisorError as e:
        report.fail("lease", str(e))
        return
    if seen.body is None:
        report.ok("lease", f"{store.location}: free (no pod has taken it yet)")
    elif seen.body.released:
        report.ok("lease", f"{store.location}: released by {seen.body.describe()}")
    elif seen.age_seconds > seen.body.ttl_seconds:
        report.ok("lease", f"{store.location}: expired (held by {seen.body.describe()}, not renewed for "
                  f"{seen.age_seconds:.0f}s): the next pod takes it over")
    else:
        report.ok("lease", f"{store.location}: held by {seen.body.describe()}, renewed {seen.age_seconds:.0f}s ago, "
                  f"expires in {seen.remaining_seconds:.0f}s unless renewed")


def _on_disk_step(db: Database, found: replicas.Layout, report: Report) -> None:
    """The database on disk against its replica: what restore and the sidecar will decide."""
    if not db.path.exists():
        report.ok("on disk", f"{db.path}: absent ({'restore fills it' if found.kind != 'empty' else 'fresh start'})")
        return
    verdict = ondisk.judge(ondisk.local_position(db.path, db.meta_dir), found.kind, found.max_txid)
    if verdict.keep:
        report.ok("on disk", f"{db.path}: {verdict.reason}")
    else:
        report.fail("on disk", f"{db.path}: {verdict.reason}; restore and replicate refuse it (exit 16) unless "
                    "--if-local-behind restore or keep")


async def _deletes_step(service: CredentialService, settings: Settings, report: Report) -> None:
    """Would Litestream's retention delete? As replicate asks it, session policy fallback included."""
    try:
        settled = await deletes.settle(service, Budget(settings.timeout_seconds))
    except SupervisorError as e:
        report.skip("deletes", str(e))
        return
    for refusal in settled.refusals:
        report.fail("deletes", f"{refusal.where()}: a batch delete was refused ({refusal.code}): {refusal.explain()}")
    if settled.refusals:
        return
    if settled.dropped:
        report.ok("deletes", "refused under the session policy; replicate trades the token again without it "
                  "(--session-policy auto) and the store then accepts Litestream's batch deletes")
    else:
        report.ok("deletes", "the store accepts Litestream's batch deletes (DeleteObjects) under the replicas")


async def run_checks(settings: Settings, echo: Callable[[str], None]) -> int:
    report = Report(echo)
    config = None
    try:
        config = lsconfig.load_for(settings)
        source = "--db/--bucket" if settings.one_db else settings.config_path
        report.ok("config", f"{source}: {len(config.databases)} database(s), "
                  + ", ".join(f"{db.path} -> {db.replica.location}" for db in config.databases))
    except SupervisorError as e:
        report.fail("config", str(e))
    if config is not None:
        _files_step(config, report)
    try:
        report.ok("litestream", litestream.version(settings.litestream))
    except SupervisorError as e:
        report.fail("litestream", str(e))
    report.ok("sqlite", f"{sqlitedb.version()} (bundled with apsw; every connection of the supervisor uses it; the "
              "app's own SQLite should be >= 3.51.3 too: older ones can corrupt a WAL database written by two "
              "processes)")
    _token_step(settings, report)  # STS is asked even after a token problem: its answer is the verdict
    _role_step(settings, report)
    service: CredentialService | None = None
    creds = None
    try:
        service = CredentialService(settings, State(), config)
    except SupervisorError as e:
        report.fail("sts", str(e))
    if service is not None:
        try:
            creds = await service.keeper.obtain(Budget(settings.timeout_seconds))
            report.ok("sts", f"{service.endpoint}: credentials valid for {int(creds.seconds_left())}s "
                      f"(role {settings.aws.role_arn})")
        except SupervisorError as e:
            report.fail("sts", str(e) + _role_hint(settings) + await _policy_hint(service, settings, e))
    try:
        if config is None or service is None or creds is None:
            report.skip("replica", "needs a valid config and credentials")
            report.skip("deletes", "needs a valid config and credentials")
        else:
            clock_done = False
            for db in config.databases:
                where = db.replica.location
                client = service.s3(db)
                try:
                    async with Budget(settings.timeout_seconds).limit(where):
                        found = await asyncio.to_thread(replicas.layout, client, db.replica)
                except SupervisorError as e:
                    report.fail("replica", str(e))
                    continue
                if not clock_done:
                    clock_done = True
                    try:
                        async with Budget(settings.timeout_seconds).limit(f"clock check against {where}"):
                            headers = await asyncio.to_thread(
                                lambda c=client, d=db: c.list_objects_v2(
                                    Bucket=d.replica.bucket, Prefix=d.replica.prefix,
                                    MaxKeys=1)["ResponseMetadata"]["HTTPHeaders"])
                        _clock_step(headers, report)
                    except SupervisorError as e:
                        report.fail("clock", str(e))
                    except Exception as e:  # noqa: BLE001 (a step that fails is reported, never a traceback)
                        report.fail("clock", replicas.explain(e, db.replica).args[0])
                detail = f"{db.path} <- {where}: {found.describe()}, {found.objects} object(s)"
                if found.kind == "unknown":
                    report.fail("replica", f"{detail} (e.g. {found.unexpected}): wrong prefix?")
                else:
                    report.ok("replica", detail)
                    _on_disk_step(db, found, report)
                await _lease_step(LeaseStore(lambda c=client: c, db.replica), settings, report)
            await _deletes_step(service, settings, report)
    finally:
        if service is not None:
            await service.close()
    echo("all checks passed" if not report.failed else f"{report.failed} check(s) failed")
    return int(ExitCode.OK if not report.failed else ExitCode.CHECK_FAILED)


async def main(settings: Settings, _signals: Signals) -> int:
    return await run_checks(settings, click.echo)
