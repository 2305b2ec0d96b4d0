"""One replica's settings as Litestream 0.5.17 reads them: `url:` or bucket/path, endpoint, region, style.

The parsing mirrors Litestream's own (s3.ParseHost, path.Clean, the url query keys), so the bucket
and prefix the supervisor lists are the ones Litestream writes; supervisor/litestream/config.py calls
`resolve_replica` for each database.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from supervisor.core.errors import ConfigError
from supervisor.core.settings import url_problem

# url query parameters Litestream reads for s3 replicas, and the config key each one stands for.
URL_QUERY_KEYS = {
    "endpoint": "endpoint", "region": "region", "forcePathStyle": "force-path-style",
    "force-path-style": "force-path-style", "skipVerify": "skip-verify", "signPayload": "sign-payload",
    "sign-payload": "sign-payload", "requireContentMD5": "require-content-md5",
    "require-content-md5": "require-content-md5", "storageClass": "storage-class",
    "storage-class": "storage-class", "partSize": "part-size", "part-size": "part-size",
    "concurrency": "concurrency",
}
_BOOL_KEYS = frozenset({"force-path-style", "skip-verify", "sign-payload", "require-content-md5"})


@dataclass(frozen=True)
class Replica:
    """An S3 replica as Litestream will use it: every key it writes starts with `prefix`."""

    bucket: str
    path: str  # as Litestream puts it in keys: verbatim for `path:`, path.Clean'ed for `url:`
    endpoint: str | None  # resolved: the replica's own, else AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL
    region: str
    force_path_style: bool

    @property
    def prefix(self) -> str:
        return self.path + "/"

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    # The lease (supervisor/replica/lease.py) sits beside the prefix, not under it: Litestream never lists it.
    @property
    def lease_key(self) -> str:
        return self.path + ".lease"

    @property
    def lease_probe_key(self) -> str:
        return self.path + ".lease-probe"


def _safe_url(url: str) -> str:
    """The url for an error message: never its user:password part."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        return url.replace(parts.netloc, "***@" + parts.hostname if parts.hostname else "***")
    return url


def parse_host(host: str) -> tuple[str, str | None, str | None, bool]:
    """s3.ParseHost for the host forms users write: (bucket, region, endpoint, path style)."""
    if ":" in host and ".com" not in host:
        bucket, dot, rest = host.partition(".")
        if dot:
            return bucket, "us-east-1", f"http://{rest}", True  # MinIO style: bucket.host:port
        return "", None, f"http://{host}", True
    aws = re.fullmatch(r"(.+)\.s3(?:[.-]([a-z0-9-]+))?\.amazonaws\.com", host)
    if aws:
        region = aws.group(2) if aws.group(2) and aws.group(2) != "dualstack" else None
        return aws.group(1), region, None, False
    return host, None, None, False


def go_clean(path: str) -> str:
    """Go's path.Clean ("" is ".", and unlike POSIX normpath, "//a" is "/a")."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def _bool(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def replica_spec(db: dict[str, Any], where: str, source: Path) -> dict[str, Any]:
    if "replica" in db and "replicas" in db:
        raise ConfigError(f"{source}: {where} has both 'replica' and 'replicas'; keep one")
    spec = db.get("replica")
    if spec is None:
        replicas = db.get("replicas")
        if not replicas:
            raise ConfigError(f"{source}: {where} has no 'replica' (expected an s3 replica with bucket and path)")
        if not isinstance(replicas, list) or len(replicas) != 1:
            count = len(replicas) if isinstance(replicas, list) else "malformed"
            raise ConfigError(f"{source}: {where} has {count} replicas; Litestream 0.5 supports exactly one "
                              "per database")
        spec = replicas[0]
        where_spec = f"{where}.replicas[0]"
    else:
        where_spec = f"{where}.replica"
    if not isinstance(spec, dict):
        raise ConfigError(f"{source}: {where_spec} must be a mapping")
    return spec


def resolve_replica(spec: dict[str, Any], where: str, source: Path, default_endpoint: str | None,
                     default_region: str) -> tuple[Replica, dict[str, Any]]:
    """The replica Litestream will use, and the equivalent explicit spec for the child (no url)."""
    child = {k: v for k, v in spec.items() if k != "url"}
    url = spec.get("url")
    rtype = spec.get("type") or ("s3" if not url else urlsplit(str(url)).scheme)
    if rtype != "s3":
        raise ConfigError(f"{source}: {where}.type {rtype!r}: only s3 replicas are supported")
    endpoint = str(spec["endpoint"]) if spec.get("endpoint") else None
    region = str(spec["region"]) if spec.get("region") else None
    bucket = str(spec.get("bucket") or "")
    path = spec.get("path")
    path = "" if path is None else str(path)
    if "://" in path:
        raise ConfigError(f"{source}: {where}.path cannot be a URL; use 'url' instead")
    path_style = _bool(spec["force-path-style"]) if "force-path-style" in spec else None
    if url:
        url = str(url)
        if path or bucket:
            field = "path" if path else "bucket"
            raise ConfigError(f"{source}: {where} sets both url and {field}; Litestream refuses that, keep one")
        parts = urlsplit(url)
        if parts.username or parts.password:
            raise ConfigError(f"{source}: {where}.url carries credentials (user:password@); remove them, the "
                              "supervisor supplies short-lived credentials")
        if parts.scheme != "s3":
            raise ConfigError(f"{source}: {where}.url {_safe_url(url)!r}: only s3:// replicas are supported")
        bucket, u_region, u_endpoint, u_path_style = parse_host(parts.netloc)
        path = go_clean(parts.path).removeprefix("/")
        query = parse_qs(parts.query)
        for name, values in query.items():
            key = URL_QUERY_KEYS.get(name)
            if key is None:
                raise ConfigError(f"{source}: {where}.url: unknown query parameter {name!r} (Litestream would "
                                  f"ignore it; it reads {', '.join(sorted(set(URL_QUERY_KEYS)))})")
            if key not in child:
                child[key] = _bool(values[-1]) if key in _BOOL_KEYS else values[-1]
        if query.get("endpoint"):
            u_endpoint = query["endpoint"][-1]
            if "://" not in u_endpoint:
                u_endpoint = ("http://" if u_endpoint.startswith(("localhost", "127.")) else "https://") + u_endpoint
            u_path_style = query.get("forcePathStyle", ["true"])[-1] != "false"
        if query.get("region"):
            u_region = query["region"][-1]
        endpoint = endpoint or u_endpoint
        region = region or u_region
        if path_style is None and (u_path_style or "forcePathStyle" in query):
            path_style = u_path_style if "forcePathStyle" not in query else _bool(query["forcePathStyle"][-1])
    if not bucket:
        raise ConfigError(f"{source}: {where} has no bucket (set 'bucket', or 'url: s3://BUCKET/PATH')")
    if path in ("", "."):
        raise ConfigError(f"{source}: {where} has no path; Litestream would write to the bucket root (set "
                          "'path', e.g. the database name)")
    if endpoint and "://" not in endpoint:
        endpoint = f"https://{endpoint}"
    if endpoint and (problem := url_problem(endpoint)):
        raise ConfigError(f"{source}: {where}.endpoint {endpoint!r}: {problem}")
    endpoint = (endpoint or default_endpoint or None)
    endpoint = endpoint.rstrip("/") if endpoint else None
    # Litestream: path style whenever an endpoint is set (only AWS has none), unless told otherwise.
    path_style = bool(endpoint) if path_style is None else path_style
    replica = Replica(bucket, path, endpoint, region or default_region, path_style)
    child.update({"type": "s3", "bucket": bucket, "path": path, "region": replica.region,
                  "force-path-style": path_style})
    if endpoint:
        child["endpoint"] = endpoint
    return replica, child
