"""What an opted-in pod must be for the injection to be safe: refusals (the pod could not run, or
would run on the wrong files) and warnings (it runs, with a risk a person should know about).

Each rule is something the API server or the kubelet does to the pod we would produce:
- the API server rejects two mounts at one path in a container, so a `subPath` mount at or above the
  database's directory *is* the data volume (with its subPath), never a reason to add a second one;
  an emptyDir added at the database's directory would also hide the app's own volume there;
- volumes are per container: the data volume is the one the app's own (regular, non-mesh)
  containers mount at or above the database's directory; an init container mounting another
  volume there (or the only one, when the app mounts none) would be restored into or seeded
  where the app never reads, so every container seeing something there must see the same files;
- when the app mounts no volume there, the emptyDir added at the database's directory hides what
  the image has at that path: refused at /, at a container's workingDir or above it, and at a
  top-level directory (/app, /data: the image's WORKDIR is not in the pod spec) unless annotated
  `litestream-supervisor.io/data-volume-ok: "true"`;
- `subPathExpr` expands the container's own env ($(POD_NAME)...): ours would need the same env to
  see the same directory, so it is refused;
- `runAsNonRoot: true` (our containers) with uid 0 is refused by the kubelet at container start
  ("container has runAsNonRoot and image will run as root"): the pod never starts;
- a grace period shorter than the sidecar's shutdown budget cuts the final upload.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from supervisor.admission.mesh import MESH_CONTAINERS

# The app's own stop before our native sidecar gets SIGTERM (the Component's manifests test the same margin).
APP_STOP_MARGIN_SECONDS = 10
DEFAULT_GRACE_SECONDS = 30  # the API server's default terminationGracePeriodSeconds


class Refused(Exception):
    """The pod opted in but cannot be injected safely; the message says what to change."""


@dataclass(frozen=True)
class DataMount:
    volume: str
    path: str  # where the app mounts it
    sub_path: str | None = None  # the same subPath, for our containers to see the same files


def _norm(path: str) -> str:
    return posixpath.normpath(path) if path else "/"


def app_containers(pod_spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The app's own containers: the regular ones a mesh did not add. Init containers have exited
    before the app starts, so what they mount is not where the app reads its database."""
    return [c for c in pod_spec.get("containers", []) if c.get("name") not in MESH_CONTAINERS]


def _covering(container: Mapping[str, Any], db: str) -> DataMount | None:
    """The deepest mount of one container at or above the db's directory, subPath mounts included (a
    subPath mount is the volume's subdirectory at that path): what that container sees there."""
    db_dir = posixpath.dirname(db)
    best: DataMount | None = None
    for m in container.get("volumeMounts", []):
        path = _norm(m.get("mountPath", ""))
        if path == db:
            raise Refused(f"container {container.get('name')!r} mounts a single file at the database's path {db}: "
                          "SQLite writes its -wal and -shm files beside it; mount the directory instead")
        if not (db_dir == path or db_dir.startswith(path.rstrip("/") + "/")):
            continue
        if m.get("subPathExpr"):
            raise Refused(f"container {container.get('name')!r} mounts {m['name']!r} at {path} with subPathExpr: "
                          "the injected containers cannot expand it as the app's container does; use subPath or a "
                          "volume of its own for the database")
        if best is None or len(path) > len(best.path):
            best = DataMount(m["name"], path, m.get("subPath") or None)
    return best


def _location(mount: DataMount, db_dir: str) -> tuple[str, str]:
    """Which files a mount shows at the db's directory: the volume, and the directory inside it."""
    inside = posixpath.join(mount.sub_path or "", posixpath.relpath(db_dir, mount.path))
    return mount.volume, posixpath.normpath(inside)


def _shows(name: str, mount: DataMount) -> str:
    sub = f" (subPath {mount.sub_path})" if mount.sub_path else ""
    return f"{name!r} mounts {mount.volume!r}{sub} at {mount.path}"


@dataclass(frozen=True)
class AppData:
    mount: DataMount | None  # None: no app container mounts a volume at or above the db's directory
    container: Mapping[str, Any] | None  # the app container whose files (and uid) the injected ones share


def app_data(pod_spec: Mapping[str, Any], db: str) -> AppData:
    """The volume holding the database as the app's own containers see it. Volumes are per container
    (a volume is visible only where a container mounts it), so a mount in an init container (a seed, a
    migration) is not the app's: restoring there while the app reads another volume, or its image's
    filesystem, loses the data. Every container that sees something at the db's directory must see
    the same files (volume and directory inside it), else it is refused."""
    db_dir = posixpath.dirname(db)
    apps = app_containers(pod_spec)
    seen = [(c, m) for c in apps if (m := _covering(c, db)) is not None]
    if len({_location(m, db_dir) for _, m in seen}) > 1:
        raise Refused(f"the app's containers see different volumes at {db_dir} (the database's directory): "
                      + ", ".join(_shows(c.get("name", "?"), m) for c, m in seen)
                      + "; mount the same volume (and subPath) there in each, or only in the one with the database")
    container, mount = seen[0] if seen else (apps[0] if apps else None, None)
    others = pod_spec.get("initContainers", []) + [c for c in pod_spec.get("containers", []) if c not in apps]
    for c in others:
        other = _covering(c, db)
        if other is None or (mount is not None and _location(other, db_dir) == _location(mount, db_dir)):
            continue
        if mount is None:
            names = ", ".join(repr(a.get("name")) for a in apps)
            raise Refused(f"container {c.get('name')!r} mounts volume {other.volume!r} at {other.path}, but the app's "
                          f"container(s) {names} mount nothing at {db_dir} (the database's directory): the restore "
                          f"would land where the app never reads; add that volumeMount to the app's container")
        raise Refused(f"container {c.get('name')!r} mounts volume {other.volume!r} at {other.path}, but the app's "
                      f"container {_shows(container.get('name', '?') if container else '?', mount)} (the database's "
                      f"directory {db_dir}): they see different files; mount the app's volume there, or elsewhere")
    return AppData(mount, container)


def data_mount(pod_spec: Mapping[str, Any], db: str) -> DataMount | None:
    """The app's volume holding the database (app_data): None when the app mounts none there."""
    return app_data(pod_spec, db).mount


DATA_VOLUME_OK = "litestream-supervisor.io/data-volume-ok"


def empty_dir_problem(pod_spec: Mapping[str, Any], db: str, annotations: Mapping[str, str]) -> str | None:
    """Where an emptyDir added at the db's directory would hide what the image has there (a mount
    covers the image's files at its path): / (nothing left to run), a container's workingDir or a
    directory above it (the app's code). The image's own WORKDIR is not in the pod spec, so a
    top-level directory (/app, /data) needs the annotation saying the image has nothing there."""
    db_dir = posixpath.dirname(db)
    for c in app_containers(pod_spec):
        where = f"mount a volume at {db_dir} (the database's directory) in container {c.get('name')!r}"
        working = _norm(c.get("workingDir") or "")
        if db_dir == "/":
            return f"{where}: an emptyDir at / would hide the image's whole filesystem; or move the database " \
                   "to a directory of its own (annotation litestream-supervisor.io/db)"
        if c.get("workingDir") and (working == db_dir or working.startswith(db_dir + "/")):
            return f"{where}: it is its workingDir {working} or above it, and an emptyDir there would hide the " \
                   "app's files; or move the database to a directory of its own (annotation " \
                   "litestream-supervisor.io/db)"
        if len([p for p in db_dir.split("/") if p]) < 2 and annotations.get(DATA_VOLUME_OK) != "true":
            return f"{where}: an emptyDir at a top-level directory may hide the image's files there (its WORKDIR " \
                   f"is not in the pod spec); or annotate {DATA_VOLUME_OK}: \"true\" if the image has none there"
    return None


def app_user(container: Mapping[str, Any] | None) -> dict[str, int]:
    """The uid/gid the injected containers must run with: the data container's own (a container's
    securityContext overrides the pod's); {} when it has none, as ours then inherit the pod's too."""
    sc = (container or {}).get("securityContext") or {}
    return {k: sc[k] for k in ("runAsUser", "runAsGroup") if k in sc}


def root_problem(pod_spec: Mapping[str, Any], container: Mapping[str, Any] | None) -> str | None:
    """Our containers run as the data container's uid with runAsNonRoot: uid 0 means they never start."""
    name = (container or {}).get("name", "?")
    own = app_user(container).get("runAsUser")
    uid, where = (own, f"container {name!r} securityContext.runAsUser") if own is not None else \
        ((pod_spec.get("securityContext") or {}).get("runAsUser"), "spec.securityContext.runAsUser")
    if uid == 0:
        return (f"the app runs as uid 0 ({where}): the injected containers run as the app's user so they share "
                "its files, and with runAsNonRoot the kubelet refuses to start them; run the app as a non-root uid "
                "(fsGroup makes the volume writable for it)")
    return None


def warnings(pod_spec: Mapping[str, Any], shutdown_timeout_seconds: int) -> list[str]:
    """Soft rules a pod can break and still run (short: admission warnings are shown one per line)."""
    out = []
    grace = pod_spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
    budget = shutdown_timeout_seconds + APP_STOP_MARGIN_SECONDS
    if grace < budget:
        out.append(f"terminationGracePeriodSeconds {grace} < {budget} (sidecar shutdown {shutdown_timeout_seconds}s "
                   f"+ {APP_STOP_MARGIN_SECONDS}s): the final upload may be cut")
    return out
