"""The image: its size (base and what the supervisor adds), a container's start, and the sidecar's
idle RSS and a restore run as containers."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from bench.measure import rss_mb, wait_until
from bench.runner import HERE, Benchmark, Row, log, median, new_pod
from tests.bed.pod import connect
from tests.bed.replicas import forget_local, make_db, push_with_litestream
from tests.bed.testbed import Bed


def bench_image(bed: Bed, work: Path, runs: int, restore_runs: int = 15) -> dict[str, Any]:
    """Build the image (images/build-and-test.sh build) and measure it: the base, what the
    supervisor adds on top, and a container's start (`version`, as non-root on a read-only root)."""
    root = HERE.parent
    env = {**os.environ, "CONTAINERS_CONF": str(root / ".work/image/containers.conf"),
           "CONTAINERS_STORAGE_CONF": str(root / ".work/image/storage.conf")}
    subprocess.run(["bash", str(root / "images/build-and-test.sh"), "build"], check=True, env=env,
                   capture_output=True, timeout=1800)
    script = (root / "images/build-and-test.sh").read_text()
    base_tag = next(line.split("=", 1)[1] for line in script.splitlines() if line.startswith("BASE="))
    tag = "localhost/litestream-supervisor:0.1.0"

    def size(image: str) -> int:
        return int(subprocess.run(["podman", "image", "inspect", "--format", "{{.Size}}", image], env=env,
                                  check=True, capture_output=True, text=True).stdout.strip())

    starts = []
    for _ in range(max(3, runs)):
        t0 = time.monotonic()
        subprocess.run(["podman", "run", "--rm", "--read-only", "--user", "10001:10001", "--network", "none",
                        tag, "version"], env=env, check=True, capture_output=True, timeout=120)
        starts.append(time.monotonic() - t0)
    total, base = size(tag), size(base_tag)
    out = {"image_mb": round(total / 1e6, 1), "base_mb": round(base / 1e6, 1),
           "supervisor_added_mb": round((total - base) / 1e6, 1), "container_version_seconds": median(starts),
           "base": base_tag, **image_sidecar_idle(bed, work, seconds=20)}
    out["container_restore"] = image_restore(bed, work, restore_runs, megabytes=200)
    log(f"image: {out}")
    return out


def image_restore(bed: Bed, work: Path, runs: int, megabytes: int) -> dict[str, Any]:
    """Restore in the image as an initContainer runs it, against `litestream restore` run from the
    same image with its own web-identity chain: a container's start is in both."""
    from tests.image.test_image import TAG, for_the_container, podman, run_args

    pod = for_the_container(new_pod(bed, work))
    make_db(pod.db(), megabytes * 1024 * 1024 // 4200, payload_bytes=2048)
    push_with_litestream(pod, pod.db())
    ours_cmd = run_args(pod, "restore")
    bare_cmd = run_args(pod, "restore", "-config", "/etc/litestream/litestream.yml", "/data/app.db")
    bare_cmd[bare_cmd.index(TAG):bare_cmd.index(TAG)] = ["--entrypoint", "litestream"]
    ours, bare = [], []
    try:
        for i in range(runs):
            # alternated, as bench_restore: whichever runs right after the other is not always the same one
            pairs = ((ours_cmd, ours), (bare_cmd, bare))
            for cmd, times in (pairs if i % 2 == 0 else pairs[::-1]):
                forget_local(pod.db())
                t0 = time.monotonic()
                podman(*cmd, timeout=600)
                times.append(time.monotonic() - t0)
                assert pod.db().stat().st_size > megabytes * 1_000_000 // 2
    finally:
        pod.close()
    log(f"  image restore of {megabytes} MB: supervisor {median(ours)}s, bare litestream {median(bare)}s")
    return {"megabytes": megabytes, "supervisor_seconds": median(ours), "bare_seconds": median(bare),
            "ratio": round(median(ours) / median(bare), 3), "supervisor_runs_seconds": [round(x, 3) for x in ours],
            "bare_runs_seconds": [round(x, 3) for x in bare]}


def image_sidecar_idle(bed: Bed, work: Path, seconds: float) -> dict[str, Any]:
    """The sidecar as users run it: `replicate` in the image (non-root, read-only root), idle; the
    RSS of the container's PID 1 (the supervisor) and of its Litestream child, from the host."""
    from tests.bed.net import free_port
    from tests.image.test_image import for_the_container, podman, run_args

    pod = for_the_container(new_pod(bed, work))
    connect(pod.db()).close()
    subprocess.run(["chown", "-R", "10001:10001", str(pod.data)], check=True)
    port, name = free_port(), f"bench-{uuid.uuid4().hex[:8]}"
    podman(*run_args(pod, "replicate", "--health-addr", f"127.0.0.1:{port}", name=name, detach=True))
    try:
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200,
                   60, "the container's sidecar ready")
        pid = int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout.strip())
        child = int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])
        time.sleep(2)
        rss = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rss.append((rss_mb(pid), rss_mb(child)))
            time.sleep(1)
    finally:
        podman("stop", "-t", "30", name, timeout=60, check=False)
        podman("rm", "-f", name, check=False)
        pod.close()
    return {"container_supervisor_rss_mb": median([r[0] for r in rss]),
            "container_litestream_rss_mb": median([r[1] for r in rss]),
            "container_supervisor_rss_samples_mb": [r[0] for r in rss], "container_idle_seconds": seconds}


# Why each headline figure moved this round (RESULTS.md's "what changed"); a figure that moved


BENCHMARKS = {"image": Benchmark(lambda bed, work, a: bench_image(bed, work, a.runs, a.restore_runs))}


def rows(r: dict[str, Any]) -> list[Row]:
    if "image" not in r:
        return []
    i = r["image"]
    return [
        ("image size: total (base + supervisor)", f"{i['image_mb']} MB",
         f"{i['base_mb']} MB base + {i['supervisor_added_mb']} MB added", ""),
        ("container start: `podman run ... version` (read-only root, non-root)",
         f"{i['container_version_seconds']} s", "", ""),
        *([(f"idle RSS in the image ({i['container_idle_seconds']:g} s, `replicate` as a container)",
            f"{i['container_supervisor_rss_mb']} MB", f"{i['container_litestream_rss_mb']} MB (its child)",
            round(i["container_supervisor_rss_mb"] / i["container_litestream_rss_mb"], 3))]
          if "container_supervisor_rss_mb" in i else []),
        *([(f"restore of a {i['container_restore']['megabytes']} MB db in the image (container start in both)",
            f"{i['container_restore']['supervisor_seconds']} s", f"{i['container_restore']['bare_seconds']} s",
            i["container_restore"]["ratio"])] if "container_restore" in i else []),
    ]


def notes(r: dict[str, Any], results: dict[str, Any]) -> list[str]:
    return ["- image: " + (f"built by images/build-and-test.sh on {r['image']['base']}; sizes from `podman image "
                           "inspect`." if "image" in r else "not measured.")]
