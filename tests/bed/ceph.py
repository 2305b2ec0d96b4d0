"""A throwaway one-node Ceph cluster (1 mon, 1 memstore OSD, no mgr) and radosgw with STS.

Everything lives under one directory; daemons are child processes of this one, on loopback
ports chosen at start. RGW's credential lifetime minimum is lowered so expiry and refresh can
be tested in seconds. RGW checks the OIDC issuer's TLS certificate against the system CA
store, so it runs in a private mount namespace whose /etc/ssl/certs also trusts the test CA.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from tests.bed.net import free_port

ADMIN_ACCESS_KEY = "ADMINACCESSKEY0000001"
ADMIN_SECRET_KEY = "adminsecretkey000000000000000000000001"
RGW_NAME = "client.rgw.bed"
REQUIRED_BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph-authtool", "ceph")


def missing_binaries() -> list[str]:
    return [b for b in REQUIRED_BINARIES if shutil.which(b) is None]


def _conf(base: Path, mon_port: int, rgw_port: int, sts_min_seconds: int) -> str:
    return f"""[global]
fsid = {uuid.uuid4()}
mon_host = v2:127.0.0.1:{mon_port}
public_addr = 127.0.0.1
ms_bind_msgr1 = false
ms_bind_ipv6 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
# without these, 'auth none' radosgw hangs for 300 s
ms_mon_client_mode = crc secure
ms_client_mode = crc secure
ms_mon_cluster_mode = crc secure
ms_mon_service_mode = crc secure
run_dir = {base}/run
pid_file = {base}/run/$name.pid
admin_socket = {base}/run/$name.asok
log_file = {base}/log/$name.log
log_to_stderr = false
err_to_stderr = true
mon_cluster_log_file = {base}/log/cluster.log
keyring = {base}/keyring
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_max_pg_per_osd = 1000
mon_allow_pool_delete = true

[mon]
mon_data = {base}/mon.$id
mon_data_avail_crit = 1
mon_data_avail_warn = 2
# single-mon commits: ~3 s start instead of ~13 s
paxos_propose_interval = 0.05
paxos_min_wait = 0.01

[osd]
osd_data = {base}/osd.$id
osd_objectstore = memstore
memstore_device_bytes = 4294967296
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 1

[{RGW_NAME}]
# Nagle off, as MinIO (a Go server) has it: with it on, every GET, 404 and 412 waited ~40 ms for
# the client's delayed ACK, and the bed measured that instead of the supervisor.
rgw_frontends = beast endpoint=127.0.0.1:{rgw_port} tcp_nodelay=1
rgw_data = {base}/rgw
rgw_sts_key = 0123456789abcdef
rgw_sts_min_session_duration = {sts_min_seconds}
rgw_s3_auth_use_sts = true
rgw_enable_apis = s3, sts, iam, admin
rgw_dns_name = 127.0.0.1
debug_rgw = 1
rgw_thread_pool_size = 64
"""


class Cluster:
    """Start with `start()`, stop with `stop()`; `stop_rgw()`/`start_rgw()` make S3 go away."""

    def __init__(self, base: Path, extra_ca: Path, sts_min_seconds: int = 10) -> None:
        self.base = base
        self.extra_ca = extra_ca
        self.sts_min_seconds = sts_min_seconds
        self.mon_port = free_port()
        self.rgw_port = free_port()
        self.conf = base / "ceph.conf"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.rgw_port}"

    def _ceph(self, *args: str, timeout: float = 30) -> str:
        out = subprocess.run(
            ["ceph", "-c", str(self.conf), "--connect-timeout", "5", *args],
            capture_output=True, text=True, timeout=timeout, check=True,
        )
        return out.stdout

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.base / "log" / f"{name}.stdout", "ab")  # noqa: SIM115 (child owns it)
        self._procs[name] = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def start(self) -> None:
        if self.base.exists():
            shutil.rmtree(self.base)
        for d in ("run", "log", "mon.a", "osd.0", "rgw"):
            (self.base / d).mkdir(parents=True)
        self.conf.write_text(_conf(self.base, self.mon_port, self.rgw_port, self.sts_min_seconds))
        fsid = next(line.split("=", 1)[1].strip() for line in self.conf.read_text().splitlines()
                    if line.startswith("fsid"))
        keyring, monmap = str(self.base / "keyring"), str(self.base / "monmap")
        subprocess.run(["ceph-authtool", "--create-keyring", keyring, "--gen-key", "-n", "mon.",
                        "--cap", "mon", "allow *"], check=True, capture_output=True)
        subprocess.run(["monmaptool", "--create", "--fsid", fsid, "--addv", "a",
                        f"[v2:127.0.0.1:{self.mon_port}]", monmap], check=True, capture_output=True)
        subprocess.run(["ceph-mon", "-c", str(self.conf), "--mkfs", "-i", "a", "--monmap", monmap,
                        "--keyring", keyring], check=True, capture_output=True)
        self._spawn("mon.a", ["ceph-mon", "-c", str(self.conf), "-i", "a", "-f"])
        self._poll(lambda: self._ceph("mon", "stat", timeout=10), 60, "ceph-mon")
        osd_uuid = str(uuid.uuid4())
        osd_id = self._ceph("osd", "new", osd_uuid).strip()
        subprocess.run(["ceph-osd", "-c", str(self.conf), "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid],
                       check=True, capture_output=True)
        self._spawn("osd", ["ceph-osd", "-c", str(self.conf), "-i", osd_id, "-f"])

        def osd_up() -> None:
            if f"osd.{osd_id} up" not in self._ceph("osd", "dump"):
                raise RuntimeError("osd not up yet")

        self._poll(osd_up, 60, "ceph-osd")
        self.start_rgw()
        self.admin("user", "create", "--uid=admin", "--display-name=admin",
                   f"--access-key={ADMIN_ACCESS_KEY}", f"--secret-key={ADMIN_SECRET_KEY}")
        self.admin("caps", "add", "--uid=admin",
                   "--caps=roles=*;oidc-provider=*;user-policy=*;users=*;buckets=*")

    def admin(self, *args: str) -> str:
        out = subprocess.run(["radosgw-admin", "-c", str(self.conf), "-n", RGW_NAME, *args],
                             capture_output=True, text=True, timeout=60, check=True)
        return out.stdout

    def _trusted_certs_dir(self) -> Path:
        certs = self.base / "cacerts"
        if certs.exists():
            return certs
        certs.mkdir()
        for pem in Path("/etc/ssl/certs").glob("*.pem"):
            with contextlib.suppress(OSError):
                shutil.copy(pem, certs / pem.name)
        shutil.copy(self.extra_ca, certs / "zz-litestream-supervisor-test-ca.pem")
        system_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
        bundle = system_bundle.read_bytes() if system_bundle.exists() else b""
        (certs / "ca-certificates.crt").write_bytes(bundle + self.extra_ca.read_bytes())
        subprocess.run(["openssl", "rehash", str(certs)], check=False, capture_output=True)
        return certs

    def start_rgw(self) -> None:
        certs = self._trusted_certs_dir()
        cmd = ["radosgw", "-c", str(self.conf), "-n", RGW_NAME, "-f"]
        self._spawn("rgw", ["unshare", "-m", "--propagation", "private", "sh", "-c",
                            'mount --bind "$0" /etc/ssl/certs && exec "$@"', str(certs), *cmd])

        def answers() -> None:
            with urllib.request.urlopen(self.endpoint + "/", timeout=2):
                pass

        self._poll(answers, 60, "radosgw")

    def stop_rgw(self) -> None:
        self._terminate("rgw")

    def _terminate(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def stop(self) -> None:
        for name in ("rgw", "osd", "mon.a"):
            self._terminate(name)

    def _poll(self, probe: object, timeout_seconds: float, what: str) -> None:
        deadline = time.monotonic() + timeout_seconds
        last: Exception | None = None
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}); see {self.base}/log")
            try:
                probe()  # type: ignore[operator]
                return
            except (subprocess.SubprocessError, OSError, RuntimeError, urllib.error.URLError) as e:
                last = e
                time.sleep(0.1)
        raise TimeoutError(f"{what} did not come up in {timeout_seconds}s: {last}; see {self.base}/log")
