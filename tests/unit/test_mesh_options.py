"""Istio's details in what every proxy gets: `server: istio-envoy`, route decorators, path
normalization, STRICT ports that reset plaintext, and the mesh-wide options of
`ConfigMap istio-system/istio` (REGISTRY_ONLY, access log, tracing) applied by translation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from gossamer.debug.simulate import Request, SimulationError, simulate
from gossamer.registry.snapshot import MeshSnapshot
from gossamer.translate import translate_proxy
from gossamer.xds.build import build_resources
from gossamer.xds.types import LISTENER
from tests.support.offline import proxy_for, snapshot_from_yaml

GOLDEN = Path(__file__).parent.parent / "golden"
BASE = (GOLDEN / "authz-allow-deny" / "in.yaml").read_text().split("\n---\n# Mesh")[0]
SLEEP = "spiffe://cluster.local/ns/default/sa/sleep"


def _mesh(body: str) -> str:
    indented = "".join(f"    {line}\n" for line in body.strip().splitlines())
    return (
        f"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\n"
        f"data:\n  mesh: |\n{indented}"
    )


def _resources(extra: str = "", deployment: str = "httpbin") -> dict[str, Any]:
    snap: MeshSnapshot = snapshot_from_yaml(BASE + "\n" + extra)
    return build_resources(translate_proxy(snap, proxy_for(snap, deployment, has_sds=True)))


def _hcms(resources: dict[str, Any]) -> list[hcm_pb2.HttpConnectionManager]:
    out = []
    for listener in resources[LISTENER].values():
        for chain in [*listener.filter_chains, listener.default_filter_chain]:
            for f in chain.filters:
                if f.name == "envoy.filters.network.http_connection_manager":
                    hcm = hcm_pb2.HttpConnectionManager()
                    f.typed_config.Unpack(hcm)
                    out.append(hcm)
    return out


def _outbound(host: str, port: int, path: str = "/") -> Request:
    return Request(host=f"{host}:{port}", path=path, port=port, address="10.96.0.200")


def test_every_connection_manager_says_istio_envoy_and_normalizes_as_istios_base() -> None:
    hcms = _hcms(_resources())
    assert len(hcms) >= 3  # outbound 8000 and 9080-style ports, inbound 8080
    for hcm in hcms:
        assert hcm.server_name == "istio-envoy"
        assert hcm.normalize_path.value and not hcm.merge_slashes
        assert hcm.path_with_escaped_slashes_action == hcm_pb2.HttpConnectionManager.KEEP_UNCHANGED


@pytest.mark.parametrize(
    ("mode", "normalize", "merge", "escaped"),
    [
        ("NONE", False, False, "KEEP_UNCHANGED"),
        ("BASE", True, False, "KEEP_UNCHANGED"),
        ("MERGE_SLASHES", True, True, "KEEP_UNCHANGED"),
        ("DECODE_AND_MERGE_SLASHES", True, True, "UNESCAPE_AND_FORWARD"),
    ],
)
def test_path_normalization_modes(mode: str, normalize: bool, merge: bool, escaped: str) -> None:
    for hcm in _hcms(_resources(_mesh(f"pathNormalization: {{normalization: {mode}}}"))):
        assert (hcm.normalize_path.value, hcm.merge_slashes) == (normalize, merge)
        assert (
            hcm_pb2.HttpConnectionManager.PathWithEscapedSlashesAction.Name(hcm.path_with_escaped_slashes_action)
            == escaped
        )


def test_decorators_follow_istio() -> None:
    vs = """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop}
spec:
  hosts: [httpbin]
  http:
  - match: [{uri: {prefix: /status}}, {uri: {exact: /ip}}]
    route: [{destination: {host: httpbin}}]
  - route:
    - {destination: {host: httpbin}, weight: 50}
    - {destination: {host: tcp-echo, port: {number: 9000}}, weight: 50}
"""
    sleep = _resources(vs, "sleep")
    for path, operation in [
        ("/status/200", "httpbin.default.svc.cluster.local:8000/status*"),
        ("/ip", "httpbin.default.svc.cluster.local:8000/ip"),
        ("/headers", "shop:8000/*"),
    ]:
        assert simulate(sleep, _outbound("httpbin", 8000, path)).operation == operation
    # No VirtualService: Istio's default route, HOST:PORT/*; the route keeps the rule it came from.
    default = simulate(_resources("", "sleep"), _outbound("httpbin", 8000))
    assert (default.operation, default.source) == ("httpbin.default.svc.cluster.local:8000/*", "default")
    # The inbound route names the service (Istio's TraceOperation), not the inbound cluster.
    req = Request(
        host="httpbin:8000",
        port=8080,
        address="10.244.1.11",
        inbound=True,
        peer_principal=SLEEP,
        source_ip="10.244.1.13",
    )
    assert simulate(_resources(), req).operation == "httpbin.default.svc.cluster.local:8000/*"


def test_plaintext_to_a_strict_port_matches_no_chain_even_when_the_workload_is_permissive() -> None:
    strict_port = """---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: httpbin}
spec:
  selector: {matchLabels: {app: httpbin}}
  mtls: {mode: PERMISSIVE}
  portLevelMtls:
    8080: {mode: STRICT}
"""
    resources = _resources(strict_port)
    listener = resources[LISTENER]["virtualInbound"]
    assert not listener.HasField("default_filter_chain")  # nothing to fall back to: Envoy resets
    plain = Request(host="httpbin:8000", port=8080, address="10.244.1.11", inbound=True, source_ip="10.244.1.13")
    with pytest.raises(SimulationError):
        simulate(resources, plain)
    mtls = simulate(
        resources,
        Request(
            host="httpbin:8000",
            port=8080,
            address="10.244.1.11",
            inbound=True,
            peer_principal=SLEEP,
            source_ip="10.244.1.13",
        ),
    )
    assert mtls.cluster == "inbound|8080||"
    # A port no service declares still passes through, in plaintext (PERMISSIVE workload).
    other = simulate(
        resources,
        Request(host="x", port=7070, address="10.244.1.11", inbound=True, scheme="tcp", source_ip="10.244.1.13"),
    )
    assert other.cluster == "InboundPassthroughCluster"


def test_registry_only_from_the_mesh_config_and_the_sidecar_overrides_it() -> None:
    unknown = _outbound("example.com", 8000)
    assert simulate(_resources("", "sleep"), unknown).cluster == "PassthroughCluster"
    blocked = simulate(_resources(_mesh("outboundTrafficPolicy: {mode: REGISTRY_ONLY}"), "sleep"), unknown)
    assert (blocked.virtual_host, blocked.status) == ("block_all", 502)
    allow = (
        _mesh("outboundTrafficPolicy: {mode: REGISTRY_ONLY}")
        + """---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default}
spec:
  outboundTrafficPolicy: {mode: ALLOW_ANY}
"""
    )
    assert simulate(_resources(allow, "sleep"), unknown).cluster == "PassthroughCluster"


def _tracing(extra: str) -> list[float | None]:
    return [hcm.tracing.random_sampling.value if hcm.HasField("tracing") else None for hcm in _hcms(_resources(extra))]


def test_tracing_from_the_mesh_config() -> None:
    # Istio since 1.22: no tracer until a Telemetry (or defaultProviders.tracing) names a backend.
    assert set(_tracing("")) == {None}
    on = """---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing: [{providers: [{name: zipkin}]}]
"""
    assert set(_tracing(on)) == {1.0}  # Istio's default 1%
    assert set(_tracing(_mesh("defaultConfig: {tracing: {sampling: 25}}") + on)) == {25.0}
    assert set(_tracing(_mesh("enableTracing: false"))) == {None}
    # A Telemetry that configures tracing wins over enableTracing (as in Istio).
    telemetry = """---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing: [{randomSamplingPercentage: 10}]
"""
    assert set(_tracing(_mesh("enableTracing: false") + telemetry)) == {10.0}


def test_access_log_file_encoding_and_off() -> None:
    def loggers(extra: str) -> list[str]:
        return [a.name for hcm in _hcms(_resources(extra)) for a in hcm.access_log]

    default = loggers("")  # Istio's default profile: accessLogFile "", no text log
    assert "envoy.access_loggers.stdout" not in default and "envoy.access_loggers.stats" in default  # metrics stay
    assert "envoy.access_loggers.stdout" in loggers(_mesh("accessLogFile: /dev/stdout"))
    off = loggers(_mesh('accessLogFile: ""'))
    assert "envoy.access_loggers.stdout" not in off and "envoy.access_loggers.stats" in off
    # A Telemetry that turns access logging on wins over an empty accessLogFile (Istio's envoy provider).
    telemetry = """---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: logs, namespace: default}
spec:
  accessLogging: [{providers: [{name: envoy}]}]
"""
    assert "envoy.access_loggers.stdout" in loggers(_mesh('accessLogFile: ""') + telemetry)
    hcm = _hcms(_resources(_mesh("accessLogFile: /tmp/x.log\naccessLogEncoding: JSON")))[0]
    file_log = next(a for a in hcm.access_log if a.name == "envoy.access_loggers.file")
    config = file_pb2.FileAccessLog()
    file_log.typed_config.Unpack(config)
    assert config.path == "/tmp/x.log"
    assert config.log_format.json_format.fields["path"].string_value == "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"
