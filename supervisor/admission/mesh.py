"""Service meshes at admission: would our containers have a network, and our probes an answer?

A mesh that captures the pod's traffic (iptables set by its init container, or by its CNI plugin
before any container starts) sends it to its proxy. Two consequences for us:

- **Classic (regular-container) proxy**: it starts with the app's containers, after every init
  container, and stops with them, before a native sidecar's final upload. Our restore (an init
  container) and the sidecar's start-up then reach neither STS nor S3, and the final upload is
  lost. Istio docs, "Install with the Istio CNI plugin", section on application init containers;
  Linkerd: linkerd/linkerd2#4792, #2704. Fixes: the mesh's native-sidecar mode (Istio: default
  since 1.27, annotation `sidecar.istio.io/nativeSidecar: "true"`; Linkerd:
  `config.beta.linkerd.io/proxy-enable-native-sidecar: "true"`), or the mesh's own annotations
  excluding the STS/S3 port from outbound capture.
- **Probes**: a mesh injector that runs before ours (the usual order: webhooks are called in name
  order in practice, and istio-sidecar-injector and linkerd-proxy-injector sort before
  litestream-supervisor) never rewrites our probes, and under STRICT mTLS the kubelet's plain HTTP
  probes on a captured port are refused (Istio docs, "Health Checking of Istio Services"). So in
  both modes our health port must be excluded from inbound capture.

The mesh's annotations are read as the mesh reads them (comma lists, Linkerd also ranges `a-b`).
`litestream-supervisor.io/mesh-ports-excluded: "true"` says the user excluded them another way
(IP ranges, a mesh-wide setting): the only thing we cannot check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MeshKind:
    name: str
    proxy: str
    capture_inits: tuple[str, ...]  # init containers that set or check the capture rules
    status_annotation: str  # written by the mesh's injector
    outbound: str  # annotation excluding ports from outbound capture
    inbound: str  # annotation excluding ports from inbound capture
    native_hint: str


ISTIO = MeshKind("Istio", "istio-proxy", ("istio-init", "istio-validation"), "sidecar.istio.io/status",
                 "traffic.sidecar.istio.io/excludeOutboundPorts", "traffic.sidecar.istio.io/excludeInboundPorts",
                 'sidecar.istio.io/nativeSidecar: "true" (Istio >= 1.20; the default since 1.27)')
LINKERD = MeshKind("Linkerd", "linkerd-proxy", ("linkerd-init", "linkerd-network-validator"),
                   "linkerd.io/proxy-version",
                   "config.linkerd.io/skip-outbound-ports", "config.linkerd.io/skip-inbound-ports",
                   'config.beta.linkerd.io/proxy-enable-native-sidecar: "true" (Linkerd >= 2.15)')
MESHES = (ISTIO, LINKERD)
EXCLUDED_OVERRIDE = "litestream-supervisor.io/mesh-ports-excluded"
# Containers a mesh adds: ours go after them (the init ones), and they are not the app.
MESH_CONTAINERS = frozenset(n for m in MESHES for n in (m.proxy, *m.capture_inits))


@dataclass(frozen=True)
class Found:
    mesh: MeshKind
    native: bool  # the proxy is an init container with restartPolicy Always


def found(pod: Mapping[str, Any]) -> list[Found]:
    """The meshes whose injector has been at this pod, and the mode of each one's proxy."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    annotations = meta.get("annotations") or {}
    init, main = spec.get("initContainers") or [], spec.get("containers") or []
    out = []
    for mesh in MESHES:
        native_proxy = any(c.get("name") == mesh.proxy and c.get("restartPolicy") == "Always" for c in init)
        classic_proxy = any(c.get("name") == mesh.proxy for c in main)
        capture = any(c.get("name") in mesh.capture_inits for c in init)
        if native_proxy or classic_proxy or capture or mesh.status_annotation in annotations:
            out.append(Found(mesh, native=native_proxy and not classic_proxy))
    return out


def ports(value: str | None) -> set[int] | None:
    """A mesh's port list ("9000,9091", Linkerd also "4000-4100"); None when unreadable."""
    if value is None:
        return set()
    out: set[int] = set()
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            return None
        out.update(range(int(low), int(high or low) + 1))
    return out


def problems(pod: Mapping[str, Any], outbound_ports: Iterable[int], health_port: int) -> list[str]:
    """What stops our containers in this pod's mesh(es), each with what to set; empty when fine."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if annotations.get(EXCLUDED_OVERRIDE) == "true":
        return []
    out = []
    for f in found(pod):
        m = f.mesh
        inbound, outbound = ports(annotations.get(m.inbound)), ports(annotations.get(m.outbound))
        for name, value in ((m.inbound, inbound), (m.outbound, outbound)):
            if value is None:
                out.append(f"annotation {name}: expected port numbers separated by commas, got "
                           f"{annotations.get(name)!r}")
        if inbound is None or outbound is None:
            continue
        wanted = sorted(set(outbound_ports))
        if not f.native and not set(wanted) <= outbound:
            out.append(f"{m.name}'s proxy is a regular container: our restore (an init container) runs before it "
                       f"and the final upload after it, with the traffic captured. Use the native sidecar mode "
                       f"({m.native_hint}), or exclude the STS/S3 port: {m.outbound}: \"{','.join(map(str, wanted))}\" "
                       f"(and {m.inbound}: \"{health_port}\")")
            continue
        if health_port not in inbound:
            out.append(f"{m.name} captures inbound traffic and does not rewrite our probes (its injector runs first): "
                       f"under STRICT mTLS the kubelet's probes on port {health_port} are refused. Set {m.inbound}: "
                       f"\"{health_port}\"")
    if out:
        out[-1] += f" (or {EXCLUDED_OVERRIDE}: \"true\" once excluded another way)"
    return out
