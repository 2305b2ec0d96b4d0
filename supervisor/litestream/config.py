"""The user's litestream.yml, resolved once, exactly as Litestream 0.5.17 would read it.

`load()` expands the text as Litestream does (supervisor/litestream/expand.py), parses it, checks every key
against the key set of the section it sits in (Litestream silently ignores unknown keys), and
resolves each database into the one object that restore, the lag probe, `check` and the child's
config all read: the db path, its meta dir, and the replica's bucket, key prefix, endpoint,
region and addressing style. The child is given `child_document()` (fully expanded, run with
`-no-expand-env`), so what the supervisor lists is what Litestream writes.
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from supervisor.core.errors import ConfigError
from supervisor.core.settings import Settings
from supervisor.litestream.expand import expand
from supervisor.litestream.replicaspec import Replica as Replica
from supervisor.litestream.replicaspec import go_clean, replica_spec, resolve_replica

# Key sets per section: exactly the keys Litestream 0.5.17 reads there (its config types
# ReplicaSettings, Config, DBConfig, ReplicaConfig, LoggingConfig, SocketConfig; the source mirrored
# here is not 0.5.17, so tests/unit/test_config_litestream.py asks the binary, both ways).
REPLICA_SETTINGS = frozenset({
    "sync-interval", "validation-interval", "max-sync-ltx-files", "auto-recover",
    "access-key-id", "secret-access-key", "region", "bucket", "endpoint", "force-path-style",
    "sign-payload", "sign-accept-encoding", "require-content-md5", "skip-verify", "storage-class", "part-size",
    "concurrency",
    "sse-customer-algorithm", "sse-customer-key", "sse-customer-key-path", "sse-kms-key-id",
    "account-name", "account-key", "sas-token",
    "host", "user", "password", "key-path", "concurrent-writes", "host-key",
    "webdav-url", "webdav-username", "webdav-password",
    "jwt", "seed", "creds", "nkey", "username", "token", "tls", "root-cas", "client-cert", "client-key",
    "max-reconnects", "reconnect-wait", "timeout", "age",
})
TOP_KEYS = REPLICA_SETTINGS | {
    "addr", "socket", "levels", "snapshot", "validation", "l0-retention", "l0-retention-check-interval",
    "verify-compaction", "retention", "heartbeat-url", "heartbeat-interval", "dbs", "exec", "logging",
    "mcp-addr", "shutdown-sync-timeout", "shutdown-sync-interval",
}
DB_KEYS = frozenset({
    "path", "dir", "pattern", "recursive", "watch", "snapshot", "meta-path", "meta-dir", "monitor-interval",
    "checkpoint-interval", "busy-timeout", "min-checkpoint-page-count", "truncate-page-n", "max-sync-wal-bytes",
    "restore-if-db-not-exists", "replica", "replicas",
})
REPLICA_KEYS = REPLICA_SETTINGS | {"type", "name", "path", "url"}
SNAPSHOT_KEYS = frozenset({"interval", "retention"})
AGE_KEYS = frozenset({"identities", "recipients"})
# Each section named by where it sits ("" is the top level, "[]" an item of a list), so the same
# name (`snapshot`, `age`, `path`) means what Litestream makes of it in that place, and a test can
# put a probe in each place and ask the binary (tests/unit/test_config_litestream.py).
SECTIONS: dict[str, frozenset[str]] = {
    "": TOP_KEYS,
    "socket": frozenset({"enabled", "path", "permissions"}),
    "levels[]": frozenset({"interval"}),
    "snapshot": SNAPSHOT_KEYS,
    "validation": frozenset({"interval"}),
    "retention": frozenset({"enabled"}),
    "logging": frozenset({"level", "type", "stderr", "source"}),
    "age": AGE_KEYS,
    "dbs[]": DB_KEYS,
    "dbs[].snapshot": SNAPSHOT_KEYS,
    "dbs[].replica": REPLICA_KEYS,
    "dbs[].replica.age": AGE_KEYS,
    "dbs[].replicas[]": REPLICA_KEYS,
    "dbs[].replicas[].age": AGE_KEYS,
}
_STATIC = "{where} sets {key}; remove static keys, the supervisor supplies short-lived credentials"
# Keys Litestream reads that we refuse on purpose once they hold a value, each with its reason. They
# stay in SECTIONS so that the refusal, not "unknown key", names them; an empty value passes because
# Litestream treats it as unset too (a seed config's `access-key-id: $AWS_ACCESS_KEY_ID`, say).
REFUSED: dict[str, dict[str, str]] = {
    "": {
        "access-key-id": "top-level {key} is set; remove static keys, the supervisor supplies short-lived "
                         "credentials",
        "secret-access-key": "top-level {key} is set; remove static keys, the supervisor supplies short-lived "
                             "credentials",
        "exec": "top-level 'exec' is not supported here; use `litestream-supervisor replicate --exec CMD`",
    },
    "dbs[]": {
        "dir": "{where} uses 'dir' (directory replication); list each database by 'path'",
        "meta-dir": "{where}.meta-dir only applies to directory replication; use meta-path",
    },
    "dbs[].replica": {"access-key-id": _STATIC, "secret-access-key": _STATIC},
    "dbs[].replicas[]": {"access-key-id": _STATIC, "secret-access-key": _STATIC},
}
# Litestream serves these without authentication: never beyond loopback.
LOOPBACK_KEYS = ("addr", "mcp-addr")
_SQLITE_PREFIX = re.compile(r"^sqlite3?://")


@dataclass(frozen=True)
class Database:
    path: Path
    replica: Replica
    meta_dir: Path  # Litestream's local state: meta-path, else <dir>/.<name>-litestream

    @property
    def name(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class LitestreamConfig:
    source: Path
    document: dict[str, Any]  # the file as Litestream parses it (expanded once)
    databases: tuple[Database, ...]

    def database(self, path: Path) -> Database:
        for db in self.databases:
            if db.path == path:
                return db
        known = ", ".join(str(d.path) for d in self.databases)
        raise ConfigError(f"--db: {path} is not in {self.source} (it lists: {known})")


def _check_keys(node: Any, section: str, where: str, source: Path) -> None:
    """Every key in `node` and below is one Litestream reads in that place, and none is refused."""
    if not isinstance(node, dict):
        return  # a wrong type is refused further on, or by Litestream's own load
    refused = REFUSED.get(section, {})
    for key, value in node.items():
        if key not in SECTIONS[section]:
            raise ConfigError(f"{source}: unknown key {key!r} in {where or 'the top level'} (Litestream 0.5.17 "
                              "would silently ignore it; check the spelling)")
        if value and key in refused:
            raise ConfigError(f"{source}: " + refused[key].format(where=where, key=key))
        child, child_where = (f"{section}.{key}", f"{where}.{key}") if section else (key, key)
        if child in SECTIONS:
            _check_keys(value, child, child_where, source)
        elif f"{child}[]" in SECTIONS and isinstance(value, list):
            for i, item in enumerate(value):
                _check_keys(item, f"{child}[]", f"{child_where}[{i}]", source)


def local_path(value: str, home: str | None) -> Path:
    """Litestream's expand(): strip sqlite:// prefixes, `~/` is the home directory, then Clean."""
    value = _SQLITE_PREFIX.sub("", value)
    if value == "~" or value.startswith("~/"):
        if not home:
            raise ConfigError(f"{value}: cannot expand '~' (no HOME)")
        value = home + value[1:]
    # filepath.Clean: unlike POSIX normpath (and pathlib), "//d/a.db" is "/d/a.db"
    return Path(go_clean(value)) if value.startswith("/") else Path(value)


def _read(source: Path) -> str:
    try:
        return source.read_text()
    except FileNotFoundError:
        raise ConfigError(f"--config / LITESTREAM_CONFIG: {source} does not exist") from None
    except OSError as e:
        raise ConfigError(f"--config: cannot read {source}: {e.strerror}") from None


def loopback_addr(addr: str) -> str:
    """An address Litestream serves without authentication: the same port on 127.0.0.1."""
    _, _, port = str(addr).rpartition(":")
    return f"127.0.0.1:{port}"


def load(source: Path, env: Mapping[str, str], *, default_endpoint: str | None = None,
         default_region: str = "us-east-1") -> LitestreamConfig:
    """Read, expand once, validate and resolve; every problem is a ConfigError naming file and key.

    `env` is Settings.environment; the defaults come from AWS_ENDPOINT_URL_S3 / AWS_REGION.
    """
    text = expand(_read(source), env, str(source))
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    return resolve(document, source, env, default_endpoint=default_endpoint, default_region=default_region)


def resolve(document: Any, source: Path, env: Mapping[str, str], *, default_endpoint: str | None = None,
            default_region: str = "us-east-1") -> LitestreamConfig:
    """Validate and resolve a parsed (already expanded) Litestream config document."""
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: expected a mapping with a 'dbs' list")
    _check_keys(document, "", "", source)
    dbs = document.get("dbs")
    if not isinstance(dbs, list) or not dbs:
        raise ConfigError(f"{source}: 'dbs' must list at least one database")
    home = env.get("HOME")
    databases: list[Database] = []
    child_dbs: list[dict[str, Any]] = []
    entry_of: dict[Path, int] = {}
    for i, db in enumerate(dbs):
        where = f"dbs[{i}]"
        if not isinstance(db, dict):
            raise ConfigError(f"{source}: {where} must be a mapping with 'path' and 'replica'")
        if not db.get("path"):
            raise ConfigError(f"{source}: {where} has no 'path' (the SQLite file to replicate)")
        path = local_path(str(db["path"]), home)
        if not path.is_absolute():
            raise ConfigError(f"{source}: {where}.path {str(path)!r} must be absolute")
        # Litestream 0.5.17 refuses this at load (the two would share one meta dir and race): refuse it
        # here too, before restore or the lease act on a config Litestream will not run.
        if path in entry_of:
            raise ConfigError(f"{source}: dbs[{entry_of[path]}] and {where} both have path {path} (Litestream "
                              "0.5.17 refuses a database listed twice; keep one entry)")
        entry_of[path] = i
        meta = local_path(str(db["meta-path"]), home) if db.get("meta-path") else \
            path.parent / f".{path.name}-litestream"
        if not meta.is_absolute():
            raise ConfigError(f"{source}: {where}.meta-path {str(meta)!r} must be absolute")
        replica, child_spec = resolve_replica(replica_spec(db, where, source), f"{where}.replica", source,
                                               default_endpoint, default_region)
        databases.append(Database(path, replica, meta))
        child_db = {k: v for k, v in db.items() if k not in ("replica", "replicas")}
        child_db.update({"path": str(path), "meta-path": str(meta), "replica": child_spec})
        child_dbs.append(child_db)
    seen: dict[tuple[str, str], Path] = {}
    for db in databases:
        key = (db.replica.bucket, db.replica.path)
        if key in seen:
            raise ConfigError(f"{source}: {seen[key]} and {db.path} both replicate to "
                              f"{db.replica.location}; give each its own path")
        seen[key] = db.path
    resolved = copy.deepcopy(document)
    resolved["dbs"] = child_dbs
    for key in LOOPBACK_KEYS:
        if resolved.get(key):
            resolved[key] = loopback_addr(resolved[key])
    return LitestreamConfig(source, resolved, tuple(databases))


def child_document(config: LitestreamConfig) -> dict[str, Any]:
    """What Litestream runs with (with -no-expand-env): the resolved config, nothing decided again."""
    return copy.deepcopy(config.document)


def write_child_config(doc: dict[str, Any], directory: Path, name: str) -> Path:
    """Write atomically, mode 0600, into a private directory."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".litestream-", suffix=".yml", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
        final = directory / name
        os.replace(tmp, final)
        return final
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_for(settings: Settings) -> LitestreamConfig:
    """The config as every command reads it: the one-database flags, or litestream.yml."""
    one = settings.one_db
    if one is not None:
        replica: dict[str, Any] = {"type": "s3", "bucket": one.bucket, "path": one.replica_path}
        if one.endpoint:
            replica["endpoint"] = one.endpoint
        if one.sync_interval:
            replica["sync-interval"] = one.sync_interval
        if one.force_path_style is not None:
            replica["force-path-style"] = one.force_path_style
        document = {"dbs": [{"path": str(one.db), "replica": replica}]}
        return resolve(document, Path("--db/--bucket"), settings.environment,
                       default_endpoint=settings.aws.s3_endpoint, default_region=settings.aws.region)
    return load(settings.config_path, settings.environment, default_endpoint=settings.aws.s3_endpoint,
                default_region=settings.aws.region)
