"""`make demo`: one pod's life on the local bed, no Kubernetes needed.

restore (empty replica: fresh start) -> replicate while a sample app writes, with 10-second
credentials, a token the "kubelet" rotates every 8 s and a restore drill every 10 s -> SIGTERM
(the final upload restored and compared with the database) -> a new pod restores -> every
committed row must be there. Exit 0 only when no row was lost and the drills verified the replica.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tests.bed.ceph import missing_binaries
from tests.bed.pod import Pod, Writer, row_ids
from tests.bed.replicas import forget_local
from tests.bed.testbed import Bed

T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {message}", flush=True)


def metric(sup: object, name: str, labels: str = "") -> float:
    try:
        return sup.metric(name, labels)  # type: ignore[attr-defined]
    except (KeyError, OSError):
        return float("nan")


def show_injection() -> None:
    """What the admission webhook (or `inject`) adds to the example app, in a few lines."""
    import subprocess

    import yaml

    app = yaml.safe_load((Path(__file__).parents[1] / "manifests/examples/app-component/deployment.yaml").read_text())
    labels = app["spec"]["template"]["metadata"]["labels"]
    labels["litestream-supervisor.io/inject"] = "true"
    app["spec"]["template"]["metadata"]["annotations"] = {"litestream-supervisor.io/db": "/var/lib/wiki/wiki.db"}
    say("the admission webhook's injection of the example app (litestream-supervisor inject -f -):")
    out = subprocess.run([sys.executable, "-m", "supervisor", "inject", "-f", "-", "--bucket", "litestream",
                          "--endpoint", "http://minio.minio.svc:9000"], input=yaml.safe_dump(app), text=True,
                         capture_output=True, check=False)
    if out.returncode != 0:
        say(f"  inject failed: {out.stderr.strip()}")
        return
    for line in out.stderr.strip().splitlines():
        say(f"  {line}")
    injected = yaml.safe_load(out.stdout)["spec"]["template"]["spec"]
    say("  init containers now: " + ", ".join(c["name"] for c in injected["initContainers"])
        + "; the app's own containers, volumes and settings unchanged")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30, help="how long the app writes (default 30)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory for inspection")
    args = parser.parse_args()
    missing = missing_binaries()
    if missing:
        print(f"demo needs {', '.join(missing)}: run `make deps` first", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="litestream-supervisor-demo-"))
    say(f"starting the local bed in {work}: Ceph RGW (S3 + STS), HTTPS OIDC issuer")
    bed = Bed.up(work / "bed")
    pods: list[Pod] = []
    try:
        say(f"bed up: S3/STS {bed.endpoint}, issuer {bed.issuer.url}, role {bed.role.arn}")
        prefix = f"demo/{uuid.uuid4().hex[:8]}"
        (work / "pod-1").mkdir()
        pod = Pod.create(bed, work / "pod-1", prefix)
        pods.append(pod)
        say("pod 1: kubelet projected the service-account token "
            f"(aud=sts.amazonaws.com, sub=system:serviceaccount:default:app) into {pod.projector.path}")

        say("pod 1 initContainer: litestream-supervisor restore")
        run = pod.run("restore")
        fresh = run.returncode == 0 and not pod.db().exists()
        say(f"  exit {run.returncode}: {'replica empty, fresh start (no file created)' if fresh else 'UNEXPECTED'}")
        if run.returncode != 0:
            print(run.output, file=sys.stderr)
            return 1

        say("pod 1 sidecar: litestream-supervisor replicate --duration-seconds 10 --verify-interval 10 "
            "(credentials live 10 s; a restore drill every ~10 s)")
        sup = pod.start_replicate("--duration-seconds", "10", "--verify-interval", "10")
        sup.wait_ready(60)
        say(f"  ready: /readyz 200 on 127.0.0.1:{sup.health_port}")
        writer = Writer(pod.db(), 0.02).start()
        pod.projector.start(interval_seconds=8)
        say(f"app writes rows for {args.seconds:g}s; the kubelet rotates the token every 8 s")
        end = time.monotonic() + args.seconds
        shown = False
        db_label = f'{{db="{pod.db()}"}}'
        while time.monotonic() < end:
            time.sleep(5)
            say(f"  rows={len(writer.committed):5d} "
                f"refreshes={metric(sup, 'litestream_supervisor_credential_refreshes_total'):.0f} "
                f"rotations={metric(sup, 'litestream_supervisor_token_rotations_total'):.0f} "
                f"litestream_restarts={metric(sup, 'litestream_supervisor_litestream_restarts_total'):.0f} "
                f"lag={metric(sup, 'litestream_supervisor_replication_lag_seconds', db_label):.1f}s")
            if not shown and time.monotonic() > end - args.seconds / 2:
                shown = True
                status, body = sup.get("/readyz?verbose")
                say(f"GET /readyz?verbose -> {status}")
                for line in body.strip().splitlines():
                    print(f"           {line}")
                status, body = sup.get("/metrics")
                say(f"GET /metrics -> {status} (excerpt)")
                for line in body.splitlines():
                    if line.startswith(("litestream_supervisor_credential", "litestream_supervisor_token",
                                        "litestream_supervisor_replication_lag", "litestream_supervisor_sts")):
                        print(f"           {line}")
        pod.projector.stop()
        committed = writer.stop()
        drills = [e for e in sup.events() if e.get("event") in ("drill_verified", "drill_failed", "drill_skipped")]
        for drill in drills:
            say(f"  restore drill: {drill.get('result', drill.get('reason'))} at txid {drill.get('txid')}, "
                f"{drill.get('seconds')} s, compared={drill.get('compared')}: {drill.get('detail')}")
        refreshes = metric(sup, "litestream_supervisor_credential_refreshes_total")
        rotations = metric(sup, "litestream_supervisor_token_rotations_total")
        restarts = metric(sup, "litestream_supervisor_litestream_restarts_total")
        lag = metric(sup, "litestream_supervisor_replication_lag_seconds", db_label)
        say(f"pod 1 stopped (SIGTERM) right after the last of {len(committed)} commits")
        rc = sup.terminate()
        say(f"  supervisor exit {rc} ({'final position confirmed in the replica' if rc == 0 else 'NOT confirmed'})")
        for final in (e for e in sup.events() if e.get("event", "").startswith("final_content")):
            say(f"  {final['event']}: {final.get('detail')}")

        say("pod 2 (new node, empty emptyDir) initContainer: litestream-supervisor restore")
        forget_local(pod.db())
        run = pod.run("restore")
        restored = row_ids(pod.db()) if run.returncode == 0 and pod.db().exists() else []
        lost = sorted(set(committed) - set(restored))
        say(f"  exit {run.returncode}: {len(restored)} rows restored")

        show_injection()
        verified = [d for d in drills if d.get("event") == "drill_verified"]
        compared = [d for d in verified if d.get("compared")]
        ok = rc == 0 and run.returncode == 0 and not lost and restarts == 0 and verified and \
            len(verified) == len(drills)
        rows = [
            ("rows written (committed)", f"{len(committed)}"),
            ("rows restored", f"{len(restored)}"),
            ("rows lost", f"{len(lost)}"),
            ("credential refreshes", f"{refreshes:.0f}"),
            ("token rotations seen", f"{rotations:.0f}"),
            ("litestream restarts", f"{restarts:.0f}"),
            ("replication lag at stop", f"{lag:.1f} s"),
            ("restore drills verified", f"{len(verified)} of {len(drills)} ({len(compared)} compared)"),
            ("sidecar exit code", f"{rc}"),
            ("verdict", "PASS: no row lost" if ok else "FAIL"),
        ]
        width = max(len(k) for k, _ in rows)
        print()
        print(f"+-{'-' * width}-+-{'-' * 18}-+")
        for key, value in rows:
            print(f"| {key:<{width}} | {value:<18} |")
        print(f"+-{'-' * width}-+-{'-' * 18}-+")
        return 0 if ok else 1
    finally:
        for pod in pods:
            pod.close()
        bed.down()
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        say("cleaned up")


if __name__ == "__main__":
    sys.exit(main())
