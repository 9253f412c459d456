"""Host names as Istio treats them: short-name resolution and wildcard matching."""

from __future__ import annotations

from gossamer.registry.types import DOMAIN_SUFFIX


def resolve_host(host: str, namespace: str) -> str:
    """Istio's ResolveShortnameToFQDN: a name without dots is local to `namespace`."""
    if host == "*" or host.startswith("*."):
        return host
    if "." not in host:
        return f"{host}.{namespace}.{DOMAIN_SUFFIX}"
    return host


def host_matches(pattern: str, hostname: str) -> bool:
    """Does `pattern` (possibly a wildcard) cover `hostname`?"""
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return hostname.endswith(pattern[1:])
    return pattern == hostname


def hosts_intersect(a: str, b: str) -> bool:
    return host_matches(a, b) or host_matches(b, a)


def service_domains(name: str, namespace: str, vip: str, port: int, proxy_namespace: str) -> tuple[str, ...]:
    """The Host/:authority values that reach a service port, as Istio lists them."""
    fqdn = f"{name}.{namespace}.{DOMAIN_SUFFIX}"
    names = [fqdn, f"{name}.{namespace}.svc", f"{name}.{namespace}"]
    if namespace == proxy_namespace:
        names.insert(1, name)
    if vip:
        names.append(vip)
    out: list[str] = []
    for n in names:
        out.extend((n, f"{n}:{port}"))
    return tuple(out)
