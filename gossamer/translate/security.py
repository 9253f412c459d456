"""Istio security semantics -> IR: PeerAuthentication (inbound mTLS per port), auto mTLS and
DestinationRule `tls` (outbound), AuthorizationPolicy (RBAC).

* PeerAuthentication: the workload's policy (selector, in its namespace), else its namespace's
  (no selector), else the mesh's (no selector, root namespace istio-system); among several at one
  level the oldest wins. UNSET inherits from the next level up; the mesh default is PERMISSIVE.
  `portLevelMtls` counts on workload policies only, keyed by the workload's port; UNSET there
  inherits the workload's mode.
* Outbound: a DestinationRule `tls` decides (ISTIO_MUTUAL, SIMPLE, MUTUAL, DISABLE); without one,
  auto mTLS: mTLS to endpoints labelled tlsMode istio, plaintext to the others.
* AuthorizationPolicy: policies in the root namespace apply mesh-wide (narrowed by their selector),
  others to the workloads of their namespace their selector picks. CUSTOM is not enforced.

A proxy without SDS (`Proxy.has_sds` false: its agent serves no secrets yet) gets no TLS at all,
since Envoy would reject or never warm config referring to secrets it cannot fetch.
"""

from __future__ import annotations

from gossamer.ir.security import ISTIO_ALPN_CLIENT, InboundMtls, UpstreamTls
from gossamer.mesh import ROOT_NAMESPACE, TrustDomains
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import MeshService, Proxy, Workload
from gossamer.resources.apps import Deployment
from gossamer.resources.networking import ClientTLSSettings
from gossamer.resources.security import MutualTLS, PeerAuthentication, PeerAuthenticationSpec, Selector

MeshMode = str  # STRICT | PERMISSIVE | DISABLE (UNSET resolved away)
TLS_MODE_LABEL = "security.istio.io/tlsMode"


def workload_selected(selector: Selector | None, labels: dict[str, str]) -> bool:
    """A selector without labels selects every workload (Istio)."""
    wanted = (selector.match_labels or {}) if selector is not None else {}
    return all(labels.get(k) == v for k, v in wanted.items())


def _has_selector(spec: PeerAuthenticationSpec) -> bool:
    return spec.selector is not None and bool(spec.selector.match_labels)


def _mode(mtls: MutualTLS | None) -> str:
    return (mtls.mode if mtls is not None else None) or "UNSET"


# ------------------------------------------------------------------------------------ PeerAuthentication


def peer_authentication_levels(
    snapshot: MeshSnapshot, proxy: Proxy | Workload
) -> tuple[PeerAuthentication | None, PeerAuthentication | None, PeerAuthentication | None]:
    """The PeerAuthentications that count for the workload: (mesh, namespace, workload), each or None."""
    labels = proxy.label_map
    policies = snapshot.of_kind(PeerAuthentication)
    workload = next(
        (
            p
            for p in policies
            if p.metadata.namespace == proxy.namespace
            and _has_selector(p.spec)
            and workload_selected(p.spec.selector, labels)
        ),
        None,
    )
    namespace = next(
        (p for p in policies if p.metadata.namespace == proxy.namespace and not _has_selector(p.spec)), None
    )
    mesh = next((p for p in policies if p.metadata.namespace == ROOT_NAMESPACE and not _has_selector(p.spec)), None)
    return mesh, namespace, workload


def peer_authentication_modes(snapshot: MeshSnapshot, proxy: Proxy | Workload) -> tuple[MeshMode, dict[int, MeshMode]]:
    """The effective mode for the workload (a proxy's, or an endpoint's), and the ports whose
    portLevelMtls says otherwise."""
    mesh, namespace, workload = peer_authentication_levels(snapshot, proxy)
    mode = "PERMISSIVE"
    for policy in (mesh, namespace, workload):
        if policy is not None and _mode(policy.spec.mtls) != "UNSET":
            mode = _mode(policy.spec.mtls)
    ports: dict[int, MeshMode] = {}
    if workload is not None:
        for port, mtls in (workload.spec.port_level_mtls or {}).items():
            port_mode = _mode(mtls)
            if port_mode != "UNSET":
                ports[int(port)] = port_mode
    return mode, ports


def inbound_mtls(proxy: Proxy, mode: MeshMode) -> InboundMtls:
    if not proxy.has_sds or mode == "DISABLE":
        return ""
    return "STRICT" if mode == "STRICT" else "PERMISSIVE"


# ------------------------------------------------------------------------------------ outbound TLS


def trust_domains(snapshot: MeshSnapshot) -> TrustDomains:
    """The mesh config's `trustDomain` and `trustDomainAliases`."""

    def make() -> TrustDomains:
        mesh = snapshot.mesh_config
        return TrustDomains(mesh.trust_domain, tuple(mesh.trust_domain_aliases))

    return snapshot.derived(("trust_domains",), make)


def istio_sni(host: str, port: int, subset: str) -> str:
    return f"outbound_.{port}_.{subset}_.{host}"


def service_accounts(snapshot: MeshSnapshot, service: MeshService) -> tuple[str, ...]:
    """SPIFFE ids of the workloads behind a service: its pods and WorkloadEntries, and the pod
    templates of the Deployments it selects (so a new Deployment's pods are trusted at once)."""
    return snapshot.derived(
        ("service_accounts", service.namespace, service.hostname), lambda: _service_accounts(snapshot, service)
    )


def _service_accounts(snapshot: MeshSnapshot, service: MeshService) -> tuple[str, ...]:
    td = trust_domains(snapshot)
    ids = {td.spiffe_id(w.namespace, w.service_account or "default") for w in snapshot.endpoints_of(service)}
    if service.selector:
        for d in snapshot.of_kind_in(Deployment, service.namespace):
            template = d.spec.template
            if service.selects(template.metadata.labels or {}):
                ids.add(td.spiffe_id(d.metadata.namespace, template.spec.service_account_name or "default"))
    # As Istio: a peer with the same path in an alias trust domain is the same workload.
    return tuple(sorted(td.expand_identities(ids)))


def istio_mutual(
    snapshot: MeshSnapshot, service: MeshService, port: int, subset: str, sans: tuple[str, ...] = (), sni: str = ""
) -> UpstreamTls:
    sans = sans or service_accounts(snapshot, service)
    return UpstreamTls(
        "ISTIO_MUTUAL",
        sni=sni or istio_sni(service.hostname, port, subset),
        subject_alt_names=sans,
        trust_domain="" if sans else trust_domains(snapshot).domain,
        alpn=ISTIO_ALPN_CLIENT,
    )


def upstream_tls(
    snapshot: MeshSnapshot,
    proxy: Proxy,
    service: MeshService,
    port: int,
    subset: str,
    settings: ClientTLSSettings | None,
    auto_allowed: bool,
) -> tuple[UpstreamTls | None, UpstreamTls | None]:
    """(tls for every endpoint, auto mTLS for tlsMode istio endpoints) of one outbound cluster."""
    if settings is not None:
        mode = settings.mode or "DISABLE"
        sans = tuple(settings.subject_alt_names or ())
        if mode == "DISABLE":
            return None, None
        if mode == "ISTIO_MUTUAL":
            if not proxy.has_sds:
                return None, None
            return istio_mutual(snapshot, service, port, subset, sans, settings.sni or ""), None
        # SIMPLE / MUTUAL: TLS origination with the files named in the DestinationRule.
        return UpstreamTls(
            "MUTUAL" if mode == "MUTUAL" else "SIMPLE",
            sni=settings.sni or service.hostname,
            subject_alt_names=sans,
            ca_certificates=settings.ca_certificates or "",
            client_certificate=settings.client_certificate or "" if mode == "MUTUAL" else "",
            private_key=settings.private_key or "" if mode == "MUTUAL" else "",
            insecure_skip_verify=bool(settings.insecure_skip_verify),
        ), None
    if not proxy.has_sds or not auto_allowed or service.mesh_external:
        return None, None
    return None, istio_mutual(snapshot, service, port, subset)


def endpoint_tls_mode(
    workload: Workload, port_modes: tuple[MeshMode, dict[int, MeshMode]] | None = None, port: int | None = None
) -> str:
    """Pods with a sidecar accept mesh mTLS (gateway pods do not); WorkloadEntries when labelled so (Istio's label).
    As Istio's mtlsChecker: not on a port whose PeerAuthentication (PORT_MODES, from
    peer_authentication_modes of the workload) is DISABLE, so auto mTLS sends plaintext there."""
    labelled = workload.label_map.get(TLS_MODE_LABEL)
    if labelled is not None:
        mode = "istio" if labelled == "istio" else ""
    else:
        mode = "istio" if workload.has_sidecar and not workload.workload_entry and not workload.router else ""
    if mode and port_modes is not None:
        workload_mode, by_port = port_modes
        if (by_port.get(port, workload_mode) if port is not None else workload_mode) == "DISABLE":
            return ""
    return mode
