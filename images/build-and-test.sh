#!/usr/bin/env bash
# Build images/Dockerfile without a registry or a Docker engine, then test it.
#   images/build-and-test.sh build   base from Debian (debootstrap) -> buildah bud of the Dockerfile
#   images/build-and-test.sh         build, then the image tests (pytest -m image)
# Needs root and Debian's debootstrap, buildah, podman, runc (installed here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
W=${IMAGE_WORK:-$ROOT/.work/image}
TAG=${IMAGE_TAG:-localhost/litestream-supervisor:0.1.0}
BASE=localhost/litestream-supervisor-base:bookworm
PY=${PY:-$ROOT/.venv/bin/python}
mkdir -p "$W"

log() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

tools() {
  local missing=()
  for b in debootstrap buildah podman runc; do command -v $b >/dev/null || missing+=($b); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap buildah podman \
      runc fuse-overlayfs uidmap containernetworking-plugins golang-github-containers-common iptables >/dev/null
  fi
  # podman/buildah defaults that fail here: crun (cgroups hybrid mode), rlimit NOFILE.
  cat > "$W/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=1024:20000", "nproc=1024:1024"]
netns = "host"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  printf '[storage]\ndriver="overlay"\ngraphroot="%s/storage"\nrunroot="%s/runroot"\n' "$W" "$W" > "$W/storage.conf"
}

export CONTAINERS_CONF=$W/containers.conf CONTAINERS_STORAGE_CONF=$W/storage.conf

base() {
  if buildah inspect --type image "$BASE" >/dev/null 2>&1; then log "base $BASE present"; return; fi
  if [ ! -f "$W/rootfs.tar" ]; then
    local mirror
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    log "debootstrap bookworm (python3, venv) from $mirror"
    rm -rf "$W/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$W/rootfs" "$mirror" >"$W/debootstrap.log" 2>&1
    rm -rf "$W/rootfs/var/cache/apt/archives"/*.deb "$W/rootfs/var/lib/apt/lists"/*
    tar --numeric-owner -C "$W/rootfs" -cf "$W/rootfs.tar.tmp" . && mv "$W/rootfs.tar.tmp" "$W/rootfs.tar"
    rm -rf "$W/rootfs"
  fi
  mkdir -p "$W/basectx" && ln -f "$W/rootfs.tar" "$W/basectx/rootfs.tar"
  printf 'FROM scratch\nADD rootfs.tar /\nENV LANG=C.UTF-8\nCMD ["python3"]\n' > "$W/basectx/Dockerfile"
  log "base image $BASE"
  buildah bud --runtime runc --layers=false -q -t "$BASE" "$W/basectx" >/dev/null
}

wheels() {
  log "wheels for the lock (no network inside the build)"
  find images/wheels -name '*.whl' -delete
  "$PY" -m pip download -q --no-deps -d images/wheels --only-binary=:all: --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform linux_x86_64 --python-version 3.11 --implementation cp \
    --require-hashes -r images/requirements.lock 2> >(grep -v "^WARNING: Location" >&2)
  "$PY" -m pip download -q --no-deps -d images/wheels --only-binary=:all: \
    --require-hashes -r images/build-requirements.lock 2> >(grep -v "^WARNING: Location" >&2)
}

build() {
  tools
  base
  wheels
  log "buildah bud images/Dockerfile -> $TAG"
  buildah bud --runtime runc --network none --layers=false -q -f images/Dockerfile \
    --build-arg BASE_IMAGE="$BASE" --build-arg PIP_NO_INDEX=1 -t "$TAG" . >/dev/null
  local size
  size=$(podman image inspect --format '{{.Size}}' "$TAG")
  log "built $TAG: $((size / 1000000)) MB"
  echo "$size" > "$W/image-size-bytes"
}

case "${1:-all}" in
  build) build ;;
  all) build; "$PY" -m pytest -q -p no:cacheprovider -m image tests ;;
  *) echo "usage: $0 [build|all]" >&2; exit 2 ;;
esac
