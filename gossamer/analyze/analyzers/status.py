"""What a cluster dump's status and control plane say: negative status conditions (IST0171) and an
istiod without BLOCKED_CIDRS_IN_JWKS_URIS while RequestAuthentications exist (IST0175)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gossamer.analyze.analyzers.deployment import containers, pod_spec
from gossamer.analyze.context import Context, as_dict
from gossamer.analyze.messages import Message
from gossamer.analyze.registry import analyzer
from gossamer.resources.apps import Deployment
from gossamer.resources.security import RequestAuthentication

_WAYPOINT = {"istio.io/WaypointBound": "False"}
_GATEWAY_API = {"Accepted": "False", "Programmed": "False", "ResolvedRefs": "False"}
NEGATIVE: dict[str, dict[str, str]] = {
    "Service": _WAYPOINT,
    "ServiceEntry": _WAYPOINT,
    "WorkloadEntry": _WAYPOINT,
    "AuthorizationPolicy": {"ZtunnelAccepted": "False", "WaypointAccepted": "False"},
    "K8sGateway": _GATEWAY_API,
    "HTTPRoute": _GATEWAY_API,
    "GRPCRoute": _GATEWAY_API,
}


def _conditions(kind: str, status: dict[str, Any]) -> list[dict[str, Any]]:
    if kind in ("HTTPRoute", "GRPCRoute"):
        return [
            c for p in status.get("parents") or [] for c in as_dict(p).get("conditions") or [] if isinstance(c, dict)
        ]
    return [c for c in status.get("conditions") or [] if isinstance(c, dict)]


@analyzer("conditions.ConditionAnalyzer", "Checks for negative status conditions on resources", ("IST0171",))
def negative_conditions(ctx: Context) -> Iterator[Message]:
    for kind, negative in NEGATIVE.items():
        for r in ctx.of(kind):
            for c in _conditions(kind, as_dict(r.raw.get("status"))):
                ctype, status = str(c.get("type", "")), str(c.get("status", ""))
                partial = (
                    kind == "AuthorizationPolicy"
                    and ctype == "WaypointAccepted"
                    and c.get("reason") == "PartiallyInvalid"
                )
                if negative.get(ctype) == status or partial:
                    yield ctx.message(
                        "IST0171",
                        r,
                        ("status",),
                        f"condition {ctype} is {status} (reason {c.get('reason', '')}: {c.get('message', '')})",
                    )


@analyzer(
    "authn.BlockedCIDRsAnalyzer",
    "Checks that BLOCKED_CIDRS_IN_JWKS_URIS is set on istiod when RequestAuthentications exist",
    ("IST0175",),
)
def blocked_cidrs(ctx: Context) -> Iterator[Message]:
    names = [f"{r.namespace}/{r.name}" for r in ctx.of_kind(RequestAuthentication)]
    if not names:
        return
    shown = ", ".join(names[:5]) + (f", and {len(names) - 5} more" if len(names) > 5 else "")
    for d in ctx.of_kind(Deployment):
        if d.metadata.labels.get("app") != "istiod":
            continue
        if any(
            as_dict(e).get("name") == "BLOCKED_CIDRS_IN_JWKS_URIS" and as_dict(e).get("value")
            for c in containers(pod_spec(d))
            for e in c.get("env") or []
        ):
            continue
        yield ctx.message(
            "IST0175",
            d,
            ("metadata", "name"),
            f"{len(names)} RequestAuthentication(s) ({shown}) but BLOCKED_CIDRS_IN_JWKS_URIS is not set: "
            "istiod fetches JWKS URIs from any network",
        )
