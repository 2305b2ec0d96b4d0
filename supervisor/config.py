"""The user's litestream.yml: read, validated, and rewritten for the child.

Litestream silently ignores unknown keys and writes to the bucket root when a replica has no
path; both lose data quietly, so both are errors here. Static keys in the file would win over
our credentials endpoint, so they are refused too.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

from supervisor.errors import ConfigError

# Every key Litestream 0.5.17's config structs accept (from its yaml tags), at any level.
# A key outside this set is a typo that Litestream would silently ignore.
KNOWN_KEYS = frozenset(
    """
access-key-id account-key account-name addr age auto-recover bucket busy-timeout
checkpoint-interval client-cert client-key concurrency concurrent-writes creds dbs dir enabled
endpoint exec force-path-style heartbeat-interval heartbeat-url host host-key identities
interval jwt key-path l level levels logging max-checkpoint-page-n max-reconnects
max-sync-ltx-files max-sync-wal-bytes mcp-addr meta-dir meta-path min-checkpoint-page-count
min-checkpoint-page-n monitor-interval name nkey part-size password path pattern permissions
recipients reconnect-wait recursive region replica replicas require-content-md
restore-if-db-not-exists retention retention-check-interval root-cas sas-token secret-access-key
seed shutdown-sync-interval shutdown-sync-timeout sign-accept-encoding sign-payload skip-verify
snapshot socket source sse-customer-algorithm sse-customer-key sse-customer-key-path
sse-kms-key-id stderr storage-class sync-interval timeout tls token truncate-page-n type url
user username validation validation-interval verify-compaction watch webdav-password webdav-url
webdav-username
""".split()  # noqa: SIM905 (a word list reads better than 100 quoted strings)
)
STATIC_KEYS = ("access-key-id", "secret-access-key")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class Replica:
    """An S3 replica location, as Litestream will use it."""

    bucket: str
    path: str  # no leading or trailing slash, never empty
    endpoint: str | None
    region: str | None
    force_path_style: bool | None


@dataclass(frozen=True)
class Database:
    path: Path
    replica: Replica


@dataclass(frozen=True)
class LitestreamConfig:
    source: Path
    raw: dict[str, Any]  # as written (env references unexpanded), for the child's copy
    databases: tuple[Database, ...]
    addr: str | None

    def database(self, path: Path) -> Database:
        for db in self.databases:
            if db.path == path:
                return db
        known = ", ".join(str(d.path) for d in self.databases)
        raise ConfigError(f"--db: {path} is not in {self.source} (it lists: {known})")


def expand_env(text: str, env: Mapping[str, str]) -> str:
    """Expand $VAR and ${VAR} as Litestream does (unset variables become empty)."""
    return _ENV_REF.sub(lambda m: env.get(m.group(1) or m.group(2), ""), text)


def _check_keys(node: Any, where: str, source: Path) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in KNOWN_KEYS:
                raise ConfigError(f"{source}: unknown key {key!r} in {where} (Litestream would "
                                  "silently ignore it; check the spelling)")
            _check_keys(value, f"{where}.{key}", source)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _check_keys(item, f"{where}[{i}]", source)


def _replica(db: dict[str, Any], where: str, source: Path) -> Replica:
    if "replica" in db and "replicas" in db:
        raise ConfigError(f"{source}: {where} has both 'replica' and 'replicas'; keep one")
    spec = db.get("replica")
    if spec is None:
        replicas = db.get("replicas")
        if not replicas:
            raise ConfigError(f"{source}: {where} has no 'replica' (expected an s3 replica with bucket and path)")
        if not isinstance(replicas, list) or len(replicas) != 1:
            raise ConfigError(f"{source}: {where} has {len(replicas)} replicas; Litestream 0.5 "
                              "supports exactly one per database")
        spec = replicas[0]
    if not isinstance(spec, dict):
        raise ConfigError(f"{source}: {where}.replica must be a mapping")
    for key in STATIC_KEYS:
        if spec.get(key):
            raise ConfigError(f"{source}: {where}.replica sets {key}; remove static keys, the "
                              "supervisor supplies short-lived credentials")
    url = spec.get("url")
    bucket, path = spec.get("bucket"), spec.get("path")
    endpoint, region = spec.get("endpoint"), spec.get("region")
    force_path_style = spec.get("force-path-style")
    if url:
        parsed = urlparse(str(url))
        if parsed.scheme != "s3":
            raise ConfigError(f"{source}: {where}.replica.url {url!r}: only s3:// replicas are supported")
        bucket = bucket or parsed.netloc
        path = path or parsed.path
        query = parse_qs(parsed.query)
        endpoint = endpoint or (query.get("endpoint") or [None])[0]
        region = region or (query.get("region") or [None])[0]
        if "forcePathStyle" in query:
            force_path_style = query["forcePathStyle"][0] == "true"
    elif spec.get("type", "s3") != "s3":
        raise ConfigError(f"{source}: {where}.replica.type {spec.get('type')!r}: only s3 is supported")
    if not bucket:
        raise ConfigError(f"{source}: {where}.replica has no bucket (set 'bucket' or 'url: s3://BUCKET/PATH')")
    path = str(path or "").strip("/")
    if not path:
        raise ConfigError(f"{source}: {where}.replica has no path; Litestream would write to the "
                          "bucket root (set 'path', e.g. the database name)")
    if endpoint and not str(endpoint).startswith(("http://", "https://")):
        endpoint = f"https://{endpoint}"
    return Replica(str(bucket), path, str(endpoint).rstrip("/") if endpoint else None,
                   str(region) if region else None, force_path_style)


def load(source: Path, env: Mapping[str, str]) -> LitestreamConfig:
    """Read and validate; every problem is a ConfigError naming the file and the key.

    `env` expands $VAR references as Litestream will (Settings.environment).
    """
    try:
        text = source.read_text()
    except FileNotFoundError:
        raise ConfigError(f"--config / LITESTREAM_CONFIG: {source} does not exist") from None
    except OSError as e:
        raise ConfigError(f"--config: cannot read {source}: {e.strerror}") from None
    try:
        raw = yaml.safe_load(text)
        expanded = yaml.safe_load(expand_env(text, env))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    if not isinstance(expanded, dict):
        raise ConfigError(f"{source}: expected a mapping with a 'dbs' list")
    _check_keys(expanded, "the top level", source)
    for key in STATIC_KEYS:
        if expanded.get(key):
            raise ConfigError(f"{source}: top-level {key} is set; remove static keys, the "
                              "supervisor supplies short-lived credentials")
    dbs = expanded.get("dbs")
    if not isinstance(dbs, list) or not dbs:
        raise ConfigError(f"{source}: 'dbs' must list at least one database")
    databases: list[Database] = []
    for i, db in enumerate(dbs):
        where = f"dbs[{i}]"
        if not isinstance(db, dict):
            raise ConfigError(f"{source}: {where} must be a mapping with 'path' and 'replica'")
        if not db.get("path"):
            if db.get("dir"):
                raise ConfigError(f"{source}: {where} uses 'dir' (directory replication); list each database by 'path'")
            raise ConfigError(f"{source}: {where} has no 'path' (the SQLite file to replicate)")
        path = Path(str(db["path"]))
        if not path.is_absolute():
            raise ConfigError(f"{source}: {where}.path {str(path)!r} must be absolute")
        databases.append(Database(path, _replica(db, where, source)))
    seen: set[tuple[str, str]] = set()
    for db in databases:
        key = (db.replica.bucket, db.replica.path)
        if key in seen:
            raise ConfigError(f"{source}: two databases replicate to s3://{key[0]}/{key[1]}; give each its own path")
        seen.add(key)
    if expanded.get("exec"):
        raise ConfigError(f"{source}: top-level 'exec' is not supported here; use "
                          "`litestream-supervisor replicate --exec CMD`")
    addr = expanded.get("addr")
    return LitestreamConfig(source, raw if isinstance(raw, dict) else expanded, tuple(databases),
                            str(addr) if addr else None)


def loopback_addr(addr: str) -> str:
    """Litestream's addr serves /metrics and /debug/pprof: never beyond loopback."""
    _, _, port = addr.rpartition(":")
    return f"127.0.0.1:{port}"


def child_document(config: LitestreamConfig, s3_endpoint: str | None, region: str) -> dict[str, Any]:
    """The config Litestream runs with: the user's, with addr on loopback and endpoints filled."""
    doc = dict(config.raw)
    if config.addr:
        doc["addr"] = loopback_addr(config.addr)
    dbs = []
    for raw_db, db in zip(doc.get("dbs", []), config.databases, strict=False):
        raw_db = dict(raw_db)
        spec = dict(raw_db.pop("replica", None) or raw_db.pop("replicas")[0])
        spec.pop("url", None)
        spec.update({"type": "s3", "bucket": db.replica.bucket, "path": db.replica.path})
        endpoint = db.replica.endpoint or s3_endpoint
        if endpoint:
            spec["endpoint"] = endpoint
            # Non-AWS endpoints (MinIO, Ceph) want path-style addressing unless told otherwise.
            spec["force-path-style"] = (True if db.replica.force_path_style is None
                                        else db.replica.force_path_style)
        spec["region"] = db.replica.region or region
        raw_db["replica"] = spec
        dbs.append(raw_db)
    doc["dbs"] = dbs
    return doc


def write_child_config(doc: dict[str, Any], directory: Path) -> Path:
    """Write atomically, mode 0600, into a private directory."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".litestream-", suffix=".yml", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(doc, f, sort_keys=False)
        final = directory / "litestream.yml"
        os.replace(tmp, final)
        return final
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
