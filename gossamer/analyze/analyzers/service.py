"""Service analyzers: port names that do not tell the protocol (IST0118), `tcp` ports of ExternalName
Services (IST0150)."""

from __future__ import annotations

from collections.abc import Iterator

from gossamer.analyze.context import Context
from gossamer.analyze.messages import Message
from gossamer.analyze.registry import analyzer

_PROTOCOLS = {
    "tcp",
    "udp",
    "grpc",
    "grpc-web",
    "http",
    "http_proxy",
    "http2",
    "https",
    "tls",
    "mongo",
    "redis",
    "mysql",
}
_WELL_KNOWN_TCP = {25, 53, 3306, 27017}  # ports Istio treats as TCP whatever their name
_APP_PROTOCOLS = {"kubernetes.io/h2c", "kubernetes.io/ws", "kubernetes.io/wss"}
_GATEWAY_MANAGED = {"istio.io-gateway-controller", "istio.io-mesh-controller", "istio.io-eastwest-controller"}


def port_protocol_known(number: int, name: str, protocol: str, app_protocol: str | None) -> bool:
    """Istio's ConvertProtocol is not "unsupported": UDP, a known appProtocol, a known name prefix, a
    well-known port."""
    if protocol == "UDP":
        return True
    value = name if app_protocol is None else app_protocol
    if app_protocol in _APP_PROTOCOLS or value.lower().startswith("grpc-web"):
        return True
    prefix = value.split("-", 1)[0].lower()
    return prefix in _PROTOCOLS or number in _WELL_KNOWN_TCP


def is_control_plane(resource: object) -> bool:
    labels = resource.metadata.labels  # type: ignore[attr-defined]
    return "istio" in labels or labels.get("release") == "istio"


@analyzer("service.PortNameAnalyzer", "Checks the port names associated with each service", ("IST0118", "IST0150"))
def port_names(ctx: Context) -> Iterator[Message]:
    for svc in ctx.of("Service"):
        if is_control_plane(svc) or svc.metadata.labels.get("gateway.istio.io/managed") in _GATEWAY_MANAGED:
            continue
        external = svc.spec.type == "ExternalName"
        for i, port in enumerate(svc.spec.ports):
            name = port.name or ""
            if port_protocol_known(port.port, name, port.protocol, port.app_protocol) and not (
                name == "tcp" and external
            ):
                continue
            path = ("spec", "ports", i, "port")
            if external:
                yield ctx.message(
                    "IST0150",
                    svc,
                    path,
                    f"port name {name!r} of an ExternalName Service: the proxy may not forward "
                    "its TCP traffic; name the port after its protocol (e.g. http-, https-, tls-)",
                )
            else:
                target = port.target_port if port.target_port is not None else port.port
                yield ctx.message(
                    "IST0118",
                    svc,
                    path,
                    f"port name {name!r} (port {port.port}, targetPort {target}) does not follow "
                    "Istio's <protocol>[-<suffix>] convention: the protocol is sniffed",
                )
