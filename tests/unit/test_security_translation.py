"""Security translation: PeerAuthentication resolution, auto mTLS / DestinationRule tls, and
AuthorizationPolicy selection and rule translation (Istio semantics), at the IR and proto level."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.rbac.v3 import rbac_pb2
from google.protobuf import struct_pb2

from gossamer.controlplane.proxies import proxy_from_node
from gossamer.ir.authorization import AuthzField, AuthzPolicy, AuthzRule
from gossamer.ir.types import Endpoint
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.registry.types import Proxy, Workload
from gossamer.resources.enforcement import not_enforced_fields
from gossamer.resources.loader import parse_documents
from gossamer.translate import translate_proxy
from gossamer.translate.authorization import authorization_policies, tcp_rules
from gossamer.translate.clusters import translate_endpoints
from gossamer.translate.security import endpoint_tls_mode, peer_authentication_modes
from gossamer.xds.build import build_resources
from gossamer.xds.build.authorization import rbac_configs, rbac_policy
from gossamer.xds.build.clusters import build_load_assignment
from gossamer.xds.types import CLUSTER, LISTENER
from tests.support.offline import proxy_for, snapshot_from_yaml

BASE = (Path(__file__).parent.parent / "golden" / "authz-allow-deny" / "in.yaml").read_text().split("\n---\n# Mesh")[0]


def _snapshot(extra: str) -> MeshSnapshot:
    return snapshot_from_yaml(BASE + "\n---\n" + extra)


def _proxy(snapshot: MeshSnapshot, deployment: str = "httpbin", sds: bool = True) -> Proxy:
    return proxy_for(snapshot, deployment, has_sds=sds)


def _pa(name: str, namespace: str, body: str) -> str:
    return (
        f"apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, "
        f"namespace: {namespace}}}\nspec:\n{body}\n"
    )


# ---------------------------------------------------------------------------------------- PeerAuthentication


def test_default_mode_is_permissive() -> None:
    snap = _snapshot(_pa("x", "other", "  mtls: {mode: STRICT}"))
    assert peer_authentication_modes(snap, _proxy(snap)) == ("PERMISSIVE", {})


def test_levels_override_and_unset_inherits() -> None:
    snap = _snapshot(
        "---\n".join(
            [
                _pa("mesh", "istio-system", "  mtls: {mode: STRICT}"),
                _pa("ns", "default", "  mtls: {mode: UNSET}"),
                _pa(
                    "wl",
                    "default",
                    "  selector: {matchLabels: {app: httpbin}}\n  portLevelMtls:\n"
                    "    8080: {mode: DISABLE}\n    9000: {mode: UNSET}",
                ),
            ]
        )
    )
    # namespace UNSET and workload without mtls inherit the mesh's STRICT; port 9000 UNSET inherits too.
    assert peer_authentication_modes(snap, _proxy(snap)) == ("STRICT", {8080: "DISABLE"})
    # tcp-echo: no workload policy.
    assert peer_authentication_modes(snap, _proxy(snap, "tcp-echo")) == ("STRICT", {})


def test_namespace_beats_mesh() -> None:
    snap = _snapshot(
        "---\n".join(
            [
                _pa("mesh", "istio-system", "  mtls: {mode: STRICT}"),
                _pa("ns", "default", "  mtls: {mode: DISABLE}"),
                # A selector policy in the root namespace is for root-namespace workloads only.
                _pa("root-wl", "istio-system", "  selector: {matchLabels: {app: httpbin}}\n  mtls: {mode: STRICT}"),
            ]
        )
    )
    assert peer_authentication_modes(snap, _proxy(snap)) == ("DISABLE", {})


def test_oldest_workload_policy_wins() -> None:
    snap = _snapshot(
        "---\n".join(
            [
                _pa("first", "default", "  selector: {matchLabels: {app: httpbin}}\n  mtls: {mode: STRICT}"),
                _pa("second", "default", "  selector: {matchLabels: {version: v1}}\n  mtls: {mode: DISABLE}"),
            ]
        )
    )
    assert peer_authentication_modes(snap, _proxy(snap))[0] == "STRICT"


def _inbound(snapshot: MeshSnapshot, proxy: Proxy) -> dict[str, object]:
    config = translate_proxy(snapshot, proxy)
    vi = next(lis for lis in config.listeners if lis.name == "virtualInbound")
    return {
        "ports": {c.port: c.mtls for c in vi.inbound_chains},
        "passthrough": vi.inbound_mtls,
        "inspector": vi.tls_inspector,
    }


def test_inbound_chains_follow_peer_authentication() -> None:
    snap = _snapshot(
        _pa(
            "wl",
            "default",
            "  selector: {matchLabels: {app: httpbin}}\n  mtls: {mode: STRICT}\n"
            "  portLevelMtls:\n    9000: {mode: PERMISSIVE}",
        )
    )
    assert _inbound(snap, _proxy(snap)) == {
        "ports": {8080: "STRICT", 9000: "PERMISSIVE"},
        "passthrough": "STRICT",
        "inspector": True,
    }


def test_no_sds_means_no_tls_anywhere() -> None:
    """Until the proxy's agent serves SDS, STRICT and ISTIO_MUTUAL cannot be honoured: plaintext only."""
    snap = _snapshot(
        _pa("mesh", "istio-system", "  mtls: {mode: STRICT}")
        + """---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tcp-echo}
spec:
  host: tcp-echo
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
"""
    )
    proxy = _proxy(snap, sds=False)
    assert _inbound(snap, proxy) == {"ports": {8080: "", 9000: ""}, "passthrough": "", "inspector": False}
    resources = build_resources(translate_proxy(snap, proxy))
    for cluster in resources[CLUSTER].values():
        assert not cluster.HasField("transport_socket") and not cluster.transport_socket_matches
    for listener in resources[LISTENER].values():
        chains = [*listener.filter_chains, listener.default_filter_chain]
        assert not any(c.HasField("transport_socket") for c in chains)


def test_proxy_from_node_reads_sds_flag() -> None:
    from envoy.config.core.v3 import base_pb2 as core

    node = core.Node(id="sidecar~10.244.0.5~httpbin-0.default~default.svc.cluster.local")
    node.metadata.update({"NAMESPACE": "default", "LABELS": {"app": "httpbin"}, "GOSSAMER_SDS": "true"})
    proxy = proxy_from_node(node)
    assert proxy.has_sds and proxy.group.endswith("/sds")
    node.metadata.update({"GOSSAMER_SDS": "false"})
    assert not proxy_from_node(node).has_sds


# ---------------------------------------------------------------------------------------- outbound mTLS


def test_disable_on_the_server_turns_auto_mtls_off_for_its_endpoints() -> None:
    snap = _snapshot(_pa("wl", "default", "  selector: {matchLabels: {app: httpbin}}\n  mtls: {mode: DISABLE}"))
    tls = {
        e.address: e.tls_mode
        for s in translate_endpoints(snap, "default")
        for e in s.endpoints
        if "|httpbin." in s.cluster
    }
    assert tls and set(tls.values()) == {""}, tls
    tls = {
        e.address: e.tls_mode
        for s in translate_endpoints(_snapshot(""), "default")
        for e in s.endpoints
        if "|httpbin." in s.cluster
    }
    assert tls and set(tls.values()) == {"istio"}, tls


def test_endpoint_tls_mode() -> None:
    pod = Workload("p", "default", "10.244.0.9", (), "sa", True)
    assert endpoint_tls_mode(pod) == "istio"
    assert endpoint_tls_mode(replace(pod, has_sidecar=False)) == ""
    vm = replace(pod, workload_entry=True)
    assert endpoint_tls_mode(vm) == ""
    assert endpoint_tls_mode(replace(vm, labels=(("security.istio.io/tlsMode", "istio"),))) == "istio"
    # Istio's mtlsChecker: a server whose PeerAuthentication is DISABLE (workload or port) gets plaintext.
    assert endpoint_tls_mode(pod, ("DISABLE", {}), 9080) == ""
    assert endpoint_tls_mode(pod, ("STRICT", {9080: "DISABLE"}), 9080) == ""
    assert endpoint_tls_mode(pod, ("STRICT", {9080: "DISABLE"}), 9081) == "istio"
    assert endpoint_tls_mode(pod, ("DISABLE", {9080: "PERMISSIVE"}), 9080) == "istio"
    lb = build_load_assignment("c", (Endpoint("10.244.0.9", 80, tls_mode="istio"), Endpoint("10.244.0.10", 80)))
    first, second = lb.endpoints[0].lb_endpoints
    assert first.metadata.filter_metadata["envoy.transport_socket_match"]["tlsMode"] == "istio"
    assert "envoy.transport_socket_match" not in second.metadata.filter_metadata


def test_auto_mtls_clusters_and_dr_overrides() -> None:
    snap = _snapshot("""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  trafficPolicy:
    tls: {mode: DISABLE}
    portLevelSettings:
    - port: {number: 9000}
      tls: {mode: ISTIO_MUTUAL, sni: custom.sni}
""")
    config = translate_proxy(snap, _proxy(snap, "sleep"))
    clusters = {c.name: c for c in config.clusters}
    echo = clusters["outbound|9000||tcp-echo.default.svc.cluster.local"]
    assert echo.tls is None and echo.auto_mtls is not None
    assert echo.auto_mtls.sni == "outbound_.9000_._.tcp-echo.default.svc.cluster.local"
    assert echo.auto_mtls.subject_alt_names == ("spiffe://cluster.local/ns/default/sa/tcp-echo",)
    assert echo.auto_mtls.alpn == ("istio-peer-exchange", "istio")
    http = clusters["outbound|8000||httpbin.default.svc.cluster.local"]
    assert http.tls is None and http.auto_mtls is None
    port_level = clusters["outbound|9000||httpbin.default.svc.cluster.local"]
    assert port_level.tls is not None and port_level.tls.sni == "custom.sni" and port_level.auto_mtls is None
    # Passthrough clusters never get TLS.
    assert clusters["PassthroughCluster"].tls is None and clusters["PassthroughCluster"].auto_mtls is None


def test_auto_mtls_transport_socket_matches() -> None:
    snap = _snapshot("")
    resources = build_resources(translate_proxy(snap, _proxy(snap, "sleep")))
    cluster = resources[CLUSTER]["outbound|9000||tcp-echo.default.svc.cluster.local"]
    matches = cluster.transport_socket_matches
    assert [m.name for m in matches] == ["tlsMode-istio", "tlsMode-disabled"]
    assert dict(matches[0].match) == {"tlsMode": "istio"} and matches[1].match == struct_pb2.Struct()
    assert matches[0].transport_socket.name == "envoy.transport_sockets.tls"
    assert matches[1].transport_socket.name == "envoy.transport_sockets.raw_buffer"
    assert isinstance(matches[0].transport_socket, base_pb2.TransportSocket)


# ---------------------------------------------------------------------------------------- AuthorizationPolicy


def _ap(name: str, namespace: str, body: str) -> str:
    return (
        f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, "
        f"namespace: {namespace}}}\nspec:\n{body}\n"
    )


def test_policy_selection() -> None:
    snap = _snapshot(
        "---\n".join(
            [
                _ap("mesh", "istio-system", "  action: DENY\n  rules: [{}]"),
                _ap("mesh-selected", "istio-system", "  selector: {matchLabels: {app: httpbin}}\n  rules: [{}]"),
                _ap("ns", "default", "  {}"),
                _ap("other-ns", "other", "  {}"),
                _ap("echo-only", "default", "  selector: {matchLabels: {app: tcp-echo}}"),
                _ap("custom", "default", "  action: CUSTOM\n  provider: {name: ext}\n  rules: [{}]"),
                _ap("target", "default", "  targetRef: {kind: Gateway, group: gateway.networking.k8s.io, name: gw}"),
            ]
        )
    )
    names = [p.name for p in authorization_policies(snap, _proxy(snap))]
    assert names == ["istio-system/mesh", "istio-system/mesh-selected", "default/ns"]
    assert [p.name for p in authorization_policies(snap, _proxy(snap, "tcp-echo"))] == [
        "istio-system/mesh",
        "default/ns",
        "default/echo-only",
    ]


def test_rule_translation() -> None:
    snap = _snapshot(
        _ap(
            "p",
            "default",
            """  selector: {matchLabels: {app: httpbin}}
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/default/sa/sleep"], notNamespaces: ["test"]}
    - source: {serviceAccounts: ["sleep", "foo/bar"]}
    to:
    - operation: {methods: ["GET", "HEAD"], paths: ["/info*"], notPorts: ["9000"]}
    when:
    - key: request.headers[x-token]
      values: ["abc"]
    - key: destination.port
      values: ["8080"]
    - key: experimental.envoy.filters.whatever
      values: ["x"]""",
        )
    )
    (policy,) = authorization_policies(snap, _proxy(snap))
    (rule,) = policy.rules
    assert rule.sources == (
        (AuthzField("principal", ("cluster.local/ns/default/sa/sleep",)), AuthzField("namespace", ("test",), True)),
        (AuthzField("principal", ("cluster.local/ns/default/sa/sleep", "cluster.local/ns/foo/sa/bar")),),
    )
    assert rule.operations == (
        (AuthzField("port", ("9000",), True), AuthzField("method", ("GET", "HEAD")), AuthzField("path", ("/info*",))),
    )
    assert rule.conditions == (
        AuthzField("header:x-token", ("abc",)),
        AuthzField("port", ("8080",)),
        AuthzField("unsupported:experimental.envoy.filters.whatever", ("x",)),
    )
    envoy = rbac_policy(rule)
    (permission,) = envoy.permissions
    assert len(permission.and_rules.rules) == 4  # notPorts, methods, paths, destination.port
    assert permission.and_rules.rules[0].not_rule.destination_port == 9000
    assert permission.and_rules.rules[2].url_path.path.prefix == "/info"
    first = envoy.principals[0].and_ids.ids
    assert first[0].authenticated.principal_name.exact == "spiffe://cluster.local/ns/default/sa/sleep"
    assert first[1].not_id.authenticated.principal_name.safe_regex.regex == ".*/ns/test/.*"
    assert first[2].header.string_match.exact == "abc"
    assert first[3] == rbac_pb2.Principal(not_id=rbac_pb2.Principal(any=True))  # unsupported: never holds


def test_empty_policies() -> None:
    deny_all = AuthzPolicy("default/deny-all", "ALLOW")
    allow_all = AuthzPolicy("default/allow-all", "ALLOW", (AuthzRule(),))
    (config,) = rbac_configs((deny_all,), tcp=False)
    assert config.action == rbac_pb2.RBAC.ALLOW and not config.policies  # Envoy: nothing matches -> 403
    (config,) = rbac_configs((allow_all,), tcp=False)
    policy = config.policies["ns[default]-policy[allow-all]-rule[0]"]
    assert policy.permissions[0].any and policy.principals[0].any
    # A DENY policy without rules matches nothing.
    (config,) = rbac_configs((AuthzPolicy("default/d", "DENY"),), tcp=False)
    assert config.action == rbac_pb2.RBAC.DENY and not config.policies


def test_action_order_and_tcp_rules() -> None:
    http_rule = AuthzRule(
        sources=((AuthzField("namespace", ("default",)),),), operations=((AuthzField("method", ("GET",)),),)
    )
    allow = AuthzPolicy("default/a", "ALLOW", (http_rule, AuthzRule(operations=((AuthzField("port", ("9000",)),),))))
    deny = AuthzPolicy("default/d", "DENY", (http_rule,))
    deny = replace(deny, tcp_rules=tcp_rules(deny.action, deny.rules))
    audit = AuthzPolicy("default/au", "AUDIT", (AuthzRule(),))
    configs = rbac_configs((allow, deny, audit), tcp=False)
    assert [c.action for c in configs] == [rbac_pb2.RBAC.LOG, rbac_pb2.RBAC.DENY, rbac_pb2.RBAC.ALLOW]
    # TCP: the ALLOW rule with methods is dropped; the DENY rule loses its methods (denies more).
    assert tcp_rules(allow.action, allow.rules) == (allow.rules[1],)
    assert tcp_rules(deny.action, deny.rules) == (
        AuthzRule(sources=((AuthzField("namespace", ("default",)),),), operations=((),)),
    )
    tcp_deny = rbac_configs((deny,), tcp=True)[0].policies["ns[default]-policy[d]-rule[0]"]
    assert tcp_deny.permissions[0].any


def test_golden_authz_filters_are_placed_before_the_router() -> None:
    from tests.golden.test_golden import CASES, build_case

    case = next(c for c in CASES if c.name == "authz-allow-deny")
    listener = build_case(case)[LISTENER]["virtualInbound"]
    from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

    by_name = {c.name: c for c in listener.filter_chains}
    hcm = hcm_pb2.HttpConnectionManager()
    by_name["0.0.0.0_8080_mtls"].filters[0].typed_config.Unpack(hcm)
    # (after the peer metadata filter, which decides nothing, and the removal of its header)
    assert [f.name for f in hcm.http_filters][:4] == [
        "gossamer.peer_metadata",
        "gossamer.peer_metadata_removal",
        *["envoy.filters.http.rbac"] * 2,
    ]
    assert hcm.http_filters[-1].name == "envoy.filters.http.router"
    tcp_filters = [f.name for f in by_name["0.0.0.0_9000_mtls"].filters]
    assert tcp_filters == [
        "envoy.filters.network.rbac",
        "envoy.filters.network.rbac",
        "envoy.filters.network.tcp_proxy",
    ]


# ---------------------------------------------------------------------------------------- enforcement


def test_enforcement_reports() -> None:
    resources, issues = parse_documents(
        """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: a}
spec:
  action: CUSTOM
  provider: {name: ext}
  rules:
  - from:
    - source: {requestPrincipals: ["*"], principals: ["x"]}
    when:
    - {key: "request.auth.claims[iss]", values: ["me"]}
    - {key: source.ip, values: ["10.0.0.0/8"]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: p}
spec:
  mtls: {mode: STRICT}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: d}
spec:
  host: x
  trafficPolicy:
    tls: {mode: SIMPLE, credentialName: cred, sni: x}
""",
        "s.yaml",
    )
    assert not [i for i in issues if i.level == "error"]
    authz, peer, dr = resources
    # requestPrincipals and request.auth.claims[...] are enforced (JWT: tests/unit/test_jwt_translation.py).
    assert not_enforced_fields(authz) == ["spec.provider", "spec.action"]
    assert not_enforced_fields(peer) == []
    assert not_enforced_fields(dr) == ["spec.trafficPolicy.tls.credentialName"]


# ---------------------------------------------------------------------------------------- simulation


SLEEP = "spiffe://cluster.local/ns/default/sa/sleep"
OTHER = "spiffe://cluster.local/ns/test/sa/client"


def _golden(name: str) -> dict[str, Any]:
    from tests.golden.test_golden import CASES, build_case

    return build_case(next(c for c in CASES if c.name == name))


def _inbound_request(port: int, path: str = "/", peer: str = "", **kw: Any) -> object:
    from gossamer.debug.simulate import Request

    return Request(
        host="httpbin:8000",
        path=path,
        port=port,
        address="10.244.1.11",
        inbound=True,
        peer_principal=peer,
        source_ip="10.244.1.13",
        **kw,
    )


def test_simulated_authorization() -> None:
    import pytest

    from gossamer.debug.simulate import SimulationError, simulate

    resources = _golden("authz-allow-deny")

    def run(port: int, path: str = "/", peer: str = "", **kw: object):  # type: ignore[no-untyped-def]
        return simulate(resources, _inbound_request(port, path, peer, **kw))  # type: ignore[arg-type]

    ok = run(8080, "/headers", SLEEP)
    assert ok.status is None and ok.cluster == "inbound|8080||" and ok.filter_chain == "0.0.0.0_8080_mtls"
    assert run(8080, "/status/418", SLEEP).cluster == "inbound|8080||"
    assert run(8080, "/ip", SLEEP).status == 403  # not an allowed path
    assert run(8080, "/headers", SLEEP, method="POST").status == 403  # not an allowed method
    assert run(8080, "/headers", OTHER).status == 403  # not sleep
    assert run(8080, "/headers", SLEEP, headers={"x-deny": "1"}).status == 403  # mesh-wide DENY
    # Plaintext (PERMISSIVE): no peer identity, so the principal rule cannot match.
    plain = run(8080, "/headers")
    assert plain.filter_chain == "0.0.0.0_8080" and plain.status == 403
    # TCP port 9000: Istio applies DENY rules without their HTTP-only fields, so the mesh-wide
    # x-deny header rule becomes "deny every TCP connection" (as Istio's authz-tcp task shows).
    denied = run(9000, peer=SLEEP)
    assert denied.clusters == () and "DENY: matched ns[istio-system]-policy[deny-header]" in denied.explanation[-1]
    with pytest.raises(SimulationError):
        simulate(_golden("peer-authn-strict"), _inbound_request(8080, "/headers"))  # type: ignore[arg-type]


def test_simulated_peer_authentication_chains() -> None:
    from gossamer.debug.simulate import simulate

    permissive = _golden("peer-authn-permissive-port-level")
    assert simulate(permissive, _inbound_request(8080, "/", SLEEP)).filter_chain == "0.0.0.0_8080_mtls"  # type: ignore[arg-type]
    assert simulate(permissive, _inbound_request(8080, "/")).filter_chain == "0.0.0.0_8080"  # type: ignore[arg-type]
    # Port 9000 is DISABLE: plaintext chain; an unknown port falls to the workload's STRICT passthrough.
    assert simulate(permissive, _inbound_request(9000)).cluster == "inbound|9000||"  # type: ignore[arg-type]
    strict = _golden("peer-authn-strict")
    result = simulate(strict, _inbound_request(8080, "/", SLEEP))  # type: ignore[arg-type]
    assert result.filter_chain == "0.0.0.0_8080" and result.cluster == "inbound|8080||"


def test_simulated_tcp_authorization_without_http_deny() -> None:
    from gossamer.debug.simulate import simulate

    snap = _snapshot(
        _ap(
            "tcp",
            "default",
            """  selector: {matchLabels: {app: httpbin}}
  rules:
  - from: [{source: {namespaces: ["default"]}}]
    to: [{operation: {ports: ["9000"]}}]
  - to: [{operation: {methods: ["GET"]}}]""",
        )
    )
    resources = build_resources(translate_proxy(snap, _proxy(snap)))
    assert simulate(resources, _inbound_request(9000, peer=SLEEP)).cluster == "inbound|9000||"  # type: ignore[arg-type]
    # The methods rule is dropped on TCP (ALLOW): another namespace matches nothing.
    assert simulate(resources, _inbound_request(9000, peer=OTHER)).clusters == ()  # type: ignore[arg-type]
    # HTTP: the methods rule allows any GET, with or without mTLS.
    assert simulate(resources, _inbound_request(8080, "/x")).cluster == "inbound|8080||"  # type: ignore[arg-type]
