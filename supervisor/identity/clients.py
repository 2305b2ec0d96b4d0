"""One botocore session for every AWS client the supervisor makes, with slim models.

Each botocore session loads and caches the service models; one per client (as
boto3.session.Session() would do) costs ~10 MB each, which adds up with many databases.
The session's loader would also keep what the sidecar never uses: endpoints.json for every AWS
service (7 MB of dicts) and the whole S3 model (3.4 MB, ~100 operations). Its loader keeps only
the operations below, the shapes they reach, and our services' endpoints; nothing is
hand-written, botocore builds the clients from its own data as before.

Parsing the full files and dropping most of them still leaves the heap fragmented (~5 MB of
RSS), so the slim files are written once, at install time (`python -m supervisor.identity.clients`, run by
`make venv` and the image build), into DATA_DIR for the installed botocore version; without them
(another botocore version) the loader slims in memory.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import botocore
import botocore.loaders
import botocore.session

# What the supervisor calls; an operation missing here is an AttributeError on the client,
# which every test of the feature that calls it would show.
OPERATIONS: dict[str, frozenset[str]] = {
    "s3": frozenset({"ListObjectsV2", "GetObject", "PutObject", "HeadObject", "DeleteObject", "DeleteObjects",
                       "HeadBucket"}),
    "sts": frozenset({"AssumeRoleWithWebIdentity", "GetCallerIdentity"}),
}
DROPPED_KEYS = frozenset({"documentation", "documentationUrl"})


def _shape_refs(shape: dict[str, Any]) -> list[str]:
    refs = [shape[k]["shape"] for k in ("member", "key", "value") if k in shape]
    refs += [m["shape"] for m in shape.get("members", {}).values()]
    return refs


def slim_service_model(model: dict[str, Any], keep: frozenset[str]) -> dict[str, Any]:
    """The operations in `keep` and every shape they reach, without documentation."""
    operations = {name: op for name, op in model["operations"].items() if name in keep}
    wanted: list[str] = []
    for op in operations.values():
        wanted += [op[k]["shape"] for k in ("input", "output") if k in op]
        wanted += [e["shape"] for e in op.get("errors", [])]
    shapes: dict[str, Any] = {}
    while wanted:
        name = wanted.pop()
        if name in shapes:
            continue
        shapes[name] = model["shapes"][name]
        wanted += _shape_refs(shapes[name])
    slim = {**model, "operations": operations, "shapes": shapes}
    return _without_docs(slim)


def _without_docs(node: Any) -> Any:
    """Documentation strings emptied, not removed: botocore reads some of them by key."""
    if isinstance(node, dict):
        return {k: "" if k in DROPPED_KEYS else _without_docs(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_without_docs(v) for v in node]
    return node


def slim_endpoints(endpoints: dict[str, Any]) -> dict[str, Any]:
    """Every partition (regions, defaults) with only our services' endpoint entries."""
    return {**endpoints, "partitions": [
        {**p, "services": {k: v for k, v in p.get("services", {}).items() if k in OPERATIONS}}
        for p in endpoints["partitions"]]}


# beside the package root, where the build and the image have always put it
DATA_DIR = Path(__file__).parents[1] / "_botocore_data"
SLIM_FILES = ("endpoints", "s3/2006-03-01/service-2", "sts/2011-06-15/service-2")


def write_slim_data(target: Path = DATA_DIR) -> None:
    """The slim files for the installed botocore, replaced atomically (a reader never sees half)."""
    loader = SlimLoader()
    tmp = Path(tempfile.mkdtemp(prefix=".botocore-data-", dir=target.parent))
    try:
        for name in SLIM_FILES:
            data, _ = loader.load_data_with_path(name)
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / f"{name}.json").write_text(json.dumps(data, separators=(",", ":")))
        (tmp / "VERSION").write_text(stamp())
        os.chmod(tmp, 0o755)  # noqa: S103 (mkdtemp makes it 0700; the image runs as another user)
        old = target.with_name(target.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def stamp() -> str:
    """What the slim files were cut for: botocore's version and the operations kept (a file cut
    before an operation was added would lack it: AttributeError on the client)."""
    kept = ",".join(f"{service}:{op}" for service in sorted(OPERATIONS) for op in sorted(OPERATIONS[service]))
    return f"{botocore.__version__} {hashlib.sha256(kept.encode()).hexdigest()[:16]}"


def slim_data_dir() -> Path | None:
    try:
        return DATA_DIR if (DATA_DIR / "VERSION").read_text() == stamp() else None
    except OSError:
        return None


class SlimLoader(botocore.loaders.Loader):
    def is_builtin_path(self, path: str) -> bool:
        """Our slim files stand for botocore's own (endpoint resolution treats others differently)."""
        return super().is_builtin_path(path) or Path(path).is_relative_to(DATA_DIR)

    @botocore.loaders.instance_cache
    def list_available_services(self, type_name: str) -> list[str]:
        """Only the services we call: this session builds no other client (rgw-setup's IAM client
        comes from boto3's own session). botocore's own answer walks every service it ships (~900
        directories per type, ~25 ms of each process's start before the first request)."""
        def has(service: str) -> bool:
            for base in self.search_paths:
                directory = os.path.join(base, service)
                if os.path.isdir(directory) and any(self.file_loader.exists(os.path.join(directory, version, type_name))
                                                    for version in os.listdir(directory)):
                    return True
            return False

        return [service for service in sorted(OPERATIONS) if has(service)]

    def load_data_with_path(self, name: str) -> tuple[Any, str]:
        key = ("load_data_with_path", name)
        if key in self._cache:
            return self._cache[key]
        data, path = super().load_data_with_path(name)  # caches the full data under `key`: replaced below
        service, _, kind = name.partition("/")
        if Path(path).is_relative_to(DATA_DIR):
            pass  # written slim
        elif name == "endpoints":
            data = slim_endpoints(data)
        elif service in OPERATIONS and kind.endswith("/service-2"):
            data = slim_service_model(data, OPERATIONS[service])
        self._cache[key] = (data, path)
        return data, path


_session_lock = threading.Lock()


def session() -> botocore.session.Session:
    """The one session: threads asking at once (the keeper reading STS's answer while a thread
    preloads S3's model) wait for the first to build it rather than each building its own."""
    with _session_lock:
        return _session()


@functools.cache
def _session() -> botocore.session.Session:
    s = botocore.session.get_session()
    builtin = {botocore.loaders.Loader.CUSTOMER_DATA_PATH, botocore.loaders.Loader.BUILTIN_DATA_PATH}
    default = botocore.loaders.create_loader(s.get_config_variable("data_path"))
    extra = [p for p in default.search_paths if p not in builtin]
    slim = slim_data_dir()
    s.register_component("data_loader", SlimLoader(([str(slim)] if slim else []) + extra))
    return s


# What the image keeps of botocore's data: our services, and IAM for `rgw-setup`.
IMAGE_SERVICES = frozenset({*OPERATIONS, "iam"})


def prune_botocore_data() -> int:
    """Image build only: remove every other service's models from botocore's data (~27 MB)."""
    data = Path(botocore.loaders.Loader.BUILTIN_DATA_PATH)
    removed = 0
    for service in data.iterdir():
        if service.is_dir() and service.name not in IMAGE_SERVICES:
            shutil.rmtree(service)
            removed += 1
    return removed


if __name__ == "__main__":
    if sys.argv[1:] == ["--prune-botocore-data"]:
        print(f"removed {prune_botocore_data()} services from botocore's data")
    else:
        write_slim_data(Path(sys.argv[1]) if len(sys.argv) > 1 else DATA_DIR)
        print(f"slim botocore {botocore.__version__} data in {sys.argv[1] if len(sys.argv) > 1 else DATA_DIR}")
