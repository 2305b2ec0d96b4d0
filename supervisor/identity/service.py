"""CredentialService: the keeper, the token watcher and the broker, started and stopped together.

Every command that needs credentials (restore, replicate, check, credentials) goes through one
of these, so there is one exchange shared by the supervisor's own S3 calls and the child.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor.core.budget import Budget
from supervisor.core.logs import get_logger
from supervisor.core.settings import Settings, require_web_identity
from supervisor.core.state import State
from supervisor.identity import s3
from supervisor.identity import token as tokens
from supervisor.identity.broker import BrokerAddress, CredentialsBroker
from supervisor.identity.credentials import Credentials
from supervisor.identity.keeper import CredentialKeeper
from supervisor.identity.scope import session_policy
from supervisor.identity.stsquery import sts_endpoint
from supervisor.litestream import config as lsconfig
from supervisor.litestream import schedule
from supervisor.litestream.binary import child_env
from supervisor.litestream.config import LitestreamConfig
from supervisor.litestream.control import MAX_SOCKET_PATH, socket_config

if TYPE_CHECKING:
    from supervisor.core.inotify import Inotify

log = get_logger("service")
SOCKET_NAME = "litestream.sock"


class CredentialService:
    def __init__(self, settings: Settings, state: State, config: LitestreamConfig | None,
                 read_only: bool = False) -> None:
        role_arn, token_file = require_web_identity(settings.aws)
        self.settings = settings
        self.state = state
        self.config = config
        self.endpoint = sts_endpoint(settings, config)
        policy = session_policy(config.databases, read_only) if config is not None and settings.session_policy \
            else None
        if config is not None and settings.session_policy and policy is None:
            log.warning("session_policy_too_large", databases=len(config.databases),
                        detail="the credentials carry the role's whole policy")
        self.keeper = CredentialKeeper(settings.aws, settings.keeper, state, self.endpoint,
                                       role_arn, token_file, policy=policy)
        self.broker = CredentialsBroker(lambda: self.keeper.current)
        self.address: BrokerAddress | None = None
        self._stop_watch = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._workdir = Path(tempfile.mkdtemp(prefix="litestream-supervisor-"))
        self._socket_dir: Path | None = None
        # the supervisor's own S3 calls (lag probe, lease, inspection), with the keeper's credentials
        self.s3 = s3.S3Clients(lambda: self.keeper.current, settings.aws.ca_bundle)

    async def start(self, budget: Budget, *, watch_token: bool = True) -> Credentials:
        """Obtain the first credentials (within the budget), then keep them fresh in the background."""
        self.address = await self.broker.start()
        obtaining = asyncio.ensure_future(self.keeper.obtain(budget))
        loading = asyncio.ensure_future(self._load_s3_models())  # behind the STS request, in its wait
        try:
            creds = await obtaining
        finally:
            await loading
        self.start_background(watch_token=watch_token)
        return creds

    async def _load_s3_models(self) -> None:
        if self.config is None or not self.config.databases:
            return
        await asyncio.sleep(0)  # the exchange's thread is submitted first: its request goes out first
        try:
            await asyncio.to_thread(s3.load_models, self.config.databases[0].replica)
        except Exception as e:  # noqa: BLE001 (only a head start: the real client reports any problem)
            log.debug("s3_models_not_preloaded", error=type(e).__name__)

    def start_background(self, *, watch_token: bool = True, inotify: Inotify | None = None) -> None:
        """The keeper refreshes before expiry (re-reading the token each time); the token watch adds
        a refresh right after each rotation, which only a long-running sidecar needs (told by the
        process's inotify instance, or polling without one)."""
        self._tasks = [asyncio.create_task(self.keeper.run(), name="keeper")]
        if watch_token:
            self._tasks.append(asyncio.create_task(
                tokens.watch(self.keeper.token_file, self.keeper.on_token_change, self._stop_watch, inotify),
                name="token-watch"))

    @property
    def tasks(self) -> list[asyncio.Task[Any]]:
        return self._tasks

    async def close(self) -> None:
        self._stop_watch.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.broker.close()
        if self._socket_dir not in (None, self._workdir):
            assert self._socket_dir is not None
            (self._socket_dir / SOCKET_NAME).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self._socket_dir.rmdir()
        for path in sorted(self._workdir.glob("*"), reverse=True):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self._workdir.rmdir()

    def child_environment(self) -> dict[str, str]:
        assert self.address is not None, "start() first"
        return child_env(self.settings.environment, self.address.url, self.address.authorization,
                         self.settings.aws.ca_bundle)

    @property
    def socket_path(self) -> Path:
        """Litestream's control socket: in our private 0700 directory, never on the network (in a
        second private directory where the first's path is too long for a Unix socket)."""
        if self._socket_dir is None:
            self._socket_dir = self._workdir
            if len(str(self._workdir / SOCKET_NAME).encode()) > MAX_SOCKET_PATH:
                for parent in ("/tmp", "/dev/shm", "/run"):
                    with contextlib.suppress(OSError):
                        self._socket_dir = Path(tempfile.mkdtemp(prefix="ls-", dir=parent))
                        break
        return self._socket_dir / SOCKET_NAME

    def child_config(self, *, socket: bool = False, spread: bool = False) -> Path:
        """The config Litestream runs with; for the sidecar's own Litestream (`replicate`), with our
        control socket and, where litestream.yml names none, compaction and snapshot intervals of its
        own. One file per kind: `replicate --exec` writes the sidecar's, restores (writing the other),
        then starts Litestream, which must find its socket."""
        assert self.config is not None
        document = lsconfig.child_document(self.config)
        if spread:
            if document.get("levels") in (None, []) and "levels" in document:
                log.warning("litestream_levels_empty", detail="litestream.yml's `levels:` is empty: Litestream "
                            "then never compacts or deletes level-0 files and the replica grows without bound; "
                            "remove the key to use the default levels")
            drawn = schedule.spread(document, schedule.seeded(
                [f"{db.replica.bucket}/{db.replica.path}" for db in self.config.databases]))
            if drawn.levels or drawn.snapshot:
                log.info("litestream_schedule_spread", levels_seconds=list(drawn.levels or ()),
                         snapshot_seconds=drawn.snapshot,
                         detail="Litestream compacts and snapshots on the wall clock: intervals of this "
                                "sidecar's own keep sidecars on one store out of each other's second; "
                                "`levels:` or `snapshot.interval` in litestream.yml are used as written")
        if socket:
            if document.get("socket"):
                log.warning("litestream_socket_replaced", detail="litestream.yml's `socket:` is replaced: the "
                            "supervisor drives Litestream through a control socket of its own")
            document["socket"] = socket_config(self.socket_path)
        return lsconfig.write_child_config(document, self._workdir, "replicate.yml" if socket else "restore.yml")
