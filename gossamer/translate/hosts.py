"""Host names as Istio treats them: short-name resolution and the names that reach a service
(matching is gossamer.mesh.host_matches)."""

from __future__ import annotations

from gossamer.mesh import service_fqdn


def resolve_host(host: str, namespace: str) -> str:
    """Istio's ResolveShortnameToFQDN: a name without dots is local to `namespace`."""
    if host == "*" or host.startswith("*."):
        return host
    if "." not in host:
        return service_fqdn(host, namespace)
    return host


def service_domains(name: str, namespace: str, vip: str, port: int, proxy_namespace: str) -> tuple[str, ...]:
    """The Host/:authority values that reach a service port, as Istio lists them."""
    fqdn = service_fqdn(name, namespace)
    names = [fqdn, f"{name}.{namespace}.svc", f"{name}.{namespace}"]
    if namespace == proxy_namespace:
        names.insert(1, name)
    if vip:
        names.append(vip)
    out: list[str] = []
    for n in names:
        out.extend((n, f"{n}:{port}"))
    return tuple(out)
