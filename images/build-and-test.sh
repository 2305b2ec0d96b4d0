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
# The tag names the recipe: a change to base() below must bump it, or a machine keeps its old base.
BASE=localhost/litestream-supervisor-base:bookworm-slim5
ROOTFS=$W/rootfs-slim5.tar
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

# What a container that runs one Python program never reads (~90 MB of the 176 MB minbase):
# documentation (the copyright notices stay), manuals, translations, glibc's iconv modules, time
# zones (logs are UTC), the package manager and what only it links (the image is rebuilt, never
# upgraded in place), e2fsprogs, and Python's 2to3, distutils, test support and pydoc data.
# Python's own modules and the libraries they link stay (checked below: none may go missing).
PURGE="apt perl-base debconf libapt-pkg6.0 libgnutls30 libp11-kit0 libstdc++6 libunistring2 libtasn1-6
  libnettle8 libhogweed6 libidn2-0 tzdata e2fsprogs libext2fs2 libss2 logsave python3-lib2to3 python3-distutils"
slim_rootfs() {
  local r=$1
  find "$r/usr/share/doc" -type f ! -name copyright -delete
  find "$r/usr/share/doc" -type d -empty -delete
  rm -rf "$r"/usr/share/{man,info,locale,lintian,linda,bug,debconf,menu}/* "$r/usr/lib/x86_64-linux-gnu/gconv"
  # shellcheck disable=SC2086
  chroot "$r" dpkg --purge --force-remove-essential --force-depends $PURGE >/dev/null 2>&1 \
    || log "dpkg --purge reported errors (checked below)"
  rm -rf "$r"/usr/lib/python3.11/{lib2to3,pydoc_data,idlelib,turtledemo,test,distutils} "$r"/var/cache/debconf/*-old
  rm -rf "$r"/usr/lib/x86_64-linux-gnu/perl* "$r"/usr/share/perl* "$r"/etc/apt "$r"/var/lib/apt "$r"/var/cache/apt
  rm -f "$r"/var/lib/dpkg/*-old
  local missing
  missing=$(chroot "$r" sh -c 'for f in /usr/bin/python3.11 /usr/lib/python3.11/lib-dynload/*.so; do ldd "$f"; done' \
    | grep "not found" | grep -v -e libdb -e libnsl -e libtirpc | sort -u || true)
  [ -z "$missing" ] || { log "slim_rootfs removed what Python links: $missing"; return 1; }
  chroot "$r" python3 -c "import ssl, sqlite3, ctypes, hashlib, lzma, bz2, zlib, uuid, decimal, asyncio, venv; \
    ssl.create_default_context()" || { log "slim_rootfs broke Python"; return 1; }
  # The image runs Python with -OO (PYTHONOPTIMIZE=2, ~2 MB less resident per process): the
  # stdlib's bytecode at that level replaces the plain level's, which only the build stage uses
  # (it compiles what it needs itself). On a read-only root nothing could be cached later, so
  # unchecked-hash: never stale whatever later copies do to the sources' mtimes.
  chroot "$r" python3 -OO -m compileall -q --invalidation-mode unchecked-hash -x '/(test|tests)/' \
    /usr/lib/python3.11 >/dev/null \
    || { log "slim_rootfs: compileall -OO of the stdlib failed"; return 1; }
  find "$r/usr/lib/python3.11" -name '*.cpython-311.pyc' -delete
}

base() {
  if buildah inspect --type image "$BASE" >/dev/null 2>&1; then log "base $BASE present"; return; fi
  if [ ! -f "$ROOTFS" ]; then
    local mirror
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    log "debootstrap bookworm (python3, venv) from $mirror"
    rm -rf "$W/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$W/rootfs" "$mirror" >"$W/debootstrap.log" 2>&1
    rm -rf "$W/rootfs/var/cache/apt/archives"/*.deb "$W/rootfs/var/lib/apt/lists"/*
    slim_rootfs "$W/rootfs"
    tar --numeric-owner -C "$W/rootfs" -cf "$ROOTFS.tmp" . && mv "$ROOTFS.tmp" "$ROOTFS"
    rm -rf "$W/rootfs"
  fi
  mkdir -p "$W/basectx" && ln -f "$ROOTFS" "$W/basectx/rootfs.tar"
  printf 'FROM scratch\nADD rootfs.tar /\nENV LANG=C.UTF-8\nCMD ["python3"]\n' > "$W/basectx/Dockerfile"
  log "base image $BASE"
  buildah bud --runtime runc --layers=false -q -t "$BASE" "$W/basectx" >/dev/null
}

wheels() {
  log "wheels for the lock (no network inside the build)"
  find images/wheels -name '*.whl' -delete
  "$PY" -m pip download -q --no-deps -d images/wheels --only-binary=:all: --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 --platform linux_x86_64 \
    --python-version 3.11 --implementation cp \
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
