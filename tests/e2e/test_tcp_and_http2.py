"""TCP traffic shifting and HTTP/2 end to end, on a mesh of its own (curl, tcp-echo, two HTTP apps).

* Istio's "TCP Traffic Shifting" task in its mesh-internal form: round robin over tcp-echo v1/v2
  without a VirtualService, then all of it to v1, then 80/20 — picked per TCP connection.
* Protocol selection by Service port: a port named `http` carries h2c from the client (the client
  sidecar's HTTP connection manager detects the HTTP/2 preface) to an HTTP/1.1 app; a port named
  `http2` (and one with `appProtocol: http2`) makes the sidecars speak HTTP/2 all the way to the
  app, which is a small Envoy answering directly and telling which protocol reached it; the same
  app behind a port named `http` gets HTTP/1.1 (the control).
* `gossamer proxy-config` shows the TCP listener and the subset cluster.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gossamer.agent.envoy import envoy_binary
from tests.e2e.mesh import REPO, Mesh, own_mesh, skip_without_root, wait_until

pytestmark = pytest.mark.e2e

CURL = REPO / "samples" / "curl"
TCP_ECHO = REPO / "samples" / "tcp-echo"
ALL_V1 = TCP_ECHO / "networking" / "tcp-echo-mesh-all-v1.yaml"
V2_20 = TCP_ECHO / "networking" / "tcp-echo-mesh-20-v2.yaml"
RUN_DIR = Path("/run/gsm-e2e-tcp")

# An Envoy as the app: answers every request itself and says which protocol reached it.
APP_LISTENER = """
  - name: app-{port}
    address: {{socket_address: {{address: 0.0.0.0, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: app_{port}
          codec_type: AUTO
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
          route_config:
            virtual_hosts:
            - name: app
              domains: ["*"]
              routes:
              - match: {{prefix: /}}
                direct_response: {{status: 200, body: {{inline_string: "h2-app\\n"}}}}
              response_headers_to_add:
              - header: {{key: x-app-protocol, value: "%PROTOCOL%"}}
"""
# 8080 is behind http2 ports, 8081 behind an http port: a pod port has one protocol on the inbound
# side (the first Service's, as in Istio), so the control needs a port of its own.
APP_ENVOY = "static_resources:\n  listeners:" + APP_LISTENER.format(port=8080) + APP_LISTENER.format(port=8081)


def app_manifests(envoy: str) -> str:
    return f"""
apiVersion: v1
kind: Service
metadata: {{name: h2-app, labels: {{app: h2-app}}}}
spec:
  ports:
  - {{name: http2, port: 8080}}
  selector: {{app: h2-app}}
---
apiVersion: v1
kind: Service
metadata: {{name: h2-app-proto, labels: {{app: h2-app}}}}
spec:
  ports:
  - {{name: web, port: 8080, appProtocol: http2}}
  selector: {{app: h2-app}}
---
apiVersion: v1
kind: Service
metadata: {{name: h2-app-http, labels: {{app: h2-app}}}}
spec:
  ports:
  - {{name: http, port: 8081}}
  selector: {{app: h2-app}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: h2-app}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: h2-app}}}}
  template:
    metadata: {{labels: {{app: h2-app, version: v1}}}}
    spec:
      containers:
      - name: h2-app
        image: envoyproxy/envoy
        command: ["{envoy}", "-c", "app-envoy.yaml", "--disable-hot-restart", "--concurrency", "1",
                  "-l", "warning"]
        ports: [{{containerPort: 8080}}, {{containerPort: 8081}}]
        readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, labels: {{app: web}}}}
spec:
  ports:
  - {{name: http, port: 8000}}
  selector: {{app: web}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web, version: v1}}}}
    spec:
      containers:
      - name: web
        image: python
        command: ["python3", "-m", "http.server", "8000", "--bind", "0.0.0.0"]
        ports: [{{containerPort: 8000}}]
        readinessProbe: {{httpGet: {{path: /, port: 8000}}, periodSeconds: 1}}
"""


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    skip_without_root()  # before envoy_binary()
    tmp = Path(tempfile.mkdtemp(prefix="gsm-e2e-tcp-"))
    (tmp / "config").mkdir()
    (tmp / "config" / "apps.yaml").write_text(app_manifests(str(envoy_binary())))
    (tmp / "config" / "app-envoy.yaml").write_text(APP_ENVOY)
    try:
        # app-envoy.yaml is not a manifest: load apps.yaml by file, not the folder.
        # --ingress-port-map: a second TCP server (test_a_mapped_gateway_port...) is on the host elsewhere.
        with own_mesh(
            RUN_DIR,
            tmp / "state",
            CURL,
            TCP_ECHO,
            tmp / "config" / "apps.yaml",
            up_args=("--ingress-port-map", f"{MAPPED_HOST_PORT}:{MAPPED_GATEWAY_PORT}"),
        ) as m:
            yield m
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# Opens N connections one after another (a new TCP connection each), sends "hello" and prints the
# first word of each answer, or ERR:<what> — one `gossamer exec` for all N.
TCP_CLIENT = """
import socket, sys
for _ in range(int(sys.argv[1])):
    try:
        with socket.create_connection(("tcp-echo", 9000), timeout=5) as s:
            s.sendall(b"hello\\n")
            data = b""
            while not data.endswith(b"\\n"):
                chunk = s.recv(1024)
                if not chunk:
                    break
                data += chunk
        print((data.split() or [b"ERR:empty"])[0].decode())
    except OSError as e:
        print("ERR:" + type(e).__name__)
"""


def answers(mesh: Mesh, n: int) -> Counter[str]:
    proc = mesh.exec("deploy/curl", "python3", "-c", TCP_CLIENT, str(n))
    words = proc.stdout.split()
    assert len(words) == n, proc.stdout + proc.stderr
    return Counter(words)


def test_tcp_round_robin_without_virtual_service(mesh: Mesh) -> None:
    seen = answers(mesh, 20)
    assert set(seen) == {"one", "two"}, seen


def test_tcp_all_to_v1_then_20_percent_to_v2(mesh: Mesh) -> None:
    mesh.apply(ALL_V1)
    last: list[Counter[str]] = []

    def all_one() -> bool:
        last.append(answers(mesh, 20))
        return last[-1] == Counter(one=20)

    assert wait_until(all_one, timeout=10, interval=0.2), last[-1]

    mesh.apply(V2_20)
    seen = answers(mesh, 100)
    assert set(seen) <= {"one", "two"}, seen
    assert 10 <= seen["two"] <= 32, seen  # 20% expected; binomial(100, 0.2) is within this 99.8% of runs


def test_proxy_config_shows_tcp_listener_and_subset_cluster(mesh: Mesh) -> None:
    mesh.apply(ALL_V1)  # the DestinationRule (again: the test may run alone)
    # The service's address as the pod resolves it (`get svc` shows no allocated clusterIP).
    vip = mesh.exec(
        "deploy/curl", "python3", "-c", "import socket; print(socket.gethostbyname('tcp-echo'))"
    ).stdout.strip()
    listener = f"{vip}_9000"
    listeners = mesh.cli("proxy-config", "listeners", "deploy/curl").stdout
    assert listener in listeners, listeners
    detail = json.loads(mesh.cli("proxy-config", "listeners", "deploy/curl", "-o", "json").stdout)
    [tcp] = [it for it in detail["listeners"]["items"] if it["name"] == listener]
    filters = [f["name"] for chain in tcp["filterChains"] for f in chain["filters"]]
    assert "envoy.filters.network.tcp_proxy" in filters, filters
    cluster = "outbound|9000|v1|tcp-echo.default.svc.cluster.local"
    clusters = mesh.cli("proxy-config", "clusters", "deploy/curl").stdout
    assert cluster in clusters, clusters


def curl_http2() -> str | None:
    features = subprocess.run(["curl", "-V"], capture_output=True, text=True).stdout
    return None if "HTTP2" in features else "this curl has no HTTP/2 support (curl -V lists no HTTP2)"


def curl(mesh: Mesh, *args: str) -> list[str]:
    """curl's `-w` fields, one per line, after the body is discarded."""
    proc = mesh.exec("deploy/curl", "curl", "-sS", "--max-time", "5", "-o", "/dev/null", *args, check=False)
    return proc.stdout.split("\n")


def test_h2c_from_the_client_to_an_http_port(mesh: Mesh) -> None:
    reason = curl_http2()
    if reason:
        pytest.skip(reason)
    out = curl(mesh, "--http2-prior-knowledge", "-w", "%{http_version} %{http_code}", "http://web:8000/")
    assert out[0] == "2 200", out  # h2c to the client sidecar, HTTP/1.1 to the app
    out = curl(mesh, "-w", "%{http_version} %{http_code}", "http://web:8000/")
    assert out[0] == "1.1 200", out


@pytest.mark.parametrize(
    ("url", "app_protocol"),
    [
        ("http://h2-app:8080/", "HTTP/2"),  # port name http2
        ("http://h2-app-proto:8080/", "HTTP/2"),  # appProtocol: http2
        ("http://h2-app-http:8081/", "HTTP/1.1"),  # port name http: the control, the same app with HTTP/1.1
    ],
)
def test_port_protocol_decides_what_reaches_the_app(mesh: Mesh, url: str, app_protocol: str) -> None:
    # An HTTP/1.1 client: only an http2 port makes the sidecars speak HTTP/2 to the app.
    out = curl(mesh, "-w", "%{http_version} %{http_code}\n%header{x-app-protocol}", url)
    assert out[:2] == ["1.1 200", app_protocol], out
    reason = curl_http2()
    if reason:
        pytest.skip(reason)
    # An h2c client: what reaches the app still follows the port, not the client.
    out = curl(mesh, "--http2-prior-knowledge", "-w", "%{http_version} %{http_code}\n%header{x-app-protocol}", url)
    assert out[:2] == ["2 200", app_protocol], out


INGRESS_TCP_PORT = 31400  # Istio's TCP traffic shifting task: the gateway's TCP server, on the host's loopback
# `up --ingress-port-map 31501:31500`: the gateway's TCP server on 31500 is at 31501 on the host.
MAPPED_GATEWAY_PORT, MAPPED_HOST_PORT = 31500, 31501


def ingress_answers(n: int, port: int = INGRESS_TCP_PORT) -> Counter[str]:
    """First word of the answer to "hello" on N new connections to the host's loopback PORT."""
    out: Counter[str] = Counter()
    for _ in range(n):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"hello\n")
                data = b""
                while not data.endswith(b"\n"):
                    chunk = s.recv(1024)
                    if not chunk:
                        break
                    data += chunk
            out[(data.split() or [b"ERR:empty"])[0].decode()] += 1
        except OSError as e:
            out["ERR:" + type(e).__name__] += 1
    return out


def test_gateway_tcp_server_is_on_the_hosts_loopback_as_in_istios_tcp_shifting_task(mesh: Mesh) -> None:
    all_v1, v2_20 = TCP_ECHO / "networking" / "tcp-echo-all-v1.yaml", TCP_ECHO / "networking" / "tcp-echo-20-v2.yaml"
    try:
        mesh.apply(all_v1)
        last: list[Counter[str]] = []

        def all_on_v1() -> bool:
            last.append(ingress_answers(10))
            return last[-1] == Counter(one=10)

        assert wait_until(all_on_v1, timeout=10, interval=0.2), last[-1]
        mesh.apply(v2_20)
        seen = ingress_answers(100)
        assert set(seen) <= {"one", "two"}, seen
        assert 10 <= seen["two"] <= 32, seen  # 20% expected
    finally:
        mesh.cli("delete", "-f", str(v2_20), "--wait", check=False)
        mesh.cli("delete", "-f", str(all_v1), "--wait", check=False)


MAPPED = f"""\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: tcp-echo-mapped}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {MAPPED_GATEWAY_PORT}, name: tcp-mapped, protocol: TCP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tcp-echo-mapped}}
spec:
  hosts: ["*"]
  gateways: [tcp-echo-mapped]
  tcp:
  - match: [{{port: {MAPPED_GATEWAY_PORT}}}]
    route: [{{destination: {{host: tcp-echo, port: {{number: 9000}}}}}}]
"""


def test_a_mapped_gateway_port_is_on_the_hosts_loopback_at_its_host_port(mesh: Mesh, tmp_path: Path) -> None:
    manifest = tmp_path / "mapped.yaml"
    manifest.write_text(MAPPED)
    try:
        mesh.apply(manifest)
        last: list[Counter[str]] = []

        def echoed() -> bool:
            last.append(ingress_answers(4, MAPPED_HOST_PORT))
            return set(last[-1]) <= {"one", "two"}

        assert wait_until(echoed, timeout=10, interval=0.2), last[-1]
        # ... and not at its own number.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", MAPPED_GATEWAY_PORT), timeout=5).close()
    finally:
        mesh.cli("delete", "-f", str(manifest), "--wait", check=False)


def test_tcp_connections_are_counted_by_both_proxies_with_istio_labels(mesh: Mesh) -> None:
    """istio_tcp_* computed inside the two Envoys: the client's (reporter=source, the destination from
    the endpoint's metadata) and tcp-echo's (reporter=destination, the client known by its certificate)."""
    from prometheus_client.parser import text_string_to_metric_families

    mesh.apply(ALL_V1)  # the DestinationRule with the subsets (again: the test may run alone or after others)
    assert answers(mesh, 5) == Counter(one=5)

    def samples() -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for family in text_string_to_metric_families(mesh.cli("metrics", "--filter", "istio_tcp").stdout):
            for s in family.samples:
                out.setdefault(s.name, []).append({**s.labels, "value": s.value})
        return out

    def counted(reporter: str, source: str) -> float:
        return sum(
            float(s["value"])
            for s in samples().get("istio_tcp_connections_closed_total", [])
            if s["reporter"] == reporter
            and s["destination_service_name"] == "tcp-echo"
            and s["source_workload"] == source
        )

    # curl's sidecar reports as source; tcp-echo's as destination, knowing curl by its certificate only
    # (TCP has no peer headers), so its source_workload is "unknown".
    assert wait_until(
        lambda: counted("source", "curl") >= 5 and counted("destination", "unknown") >= 5, timeout=20, interval=1
    ), samples()
    scraped = samples()
    source = [
        s
        for s in scraped["istio_tcp_connections_opened_total"]
        if s["reporter"] == "source" and s["destination_service_name"] == "tcp-echo" and s["source_workload"] == "curl"
    ]
    assert {s["destination_workload"] for s in source} <= {"tcp-echo-v1", "tcp-echo-v2"}
    assert {s["request_protocol"] for s in source} == {"tcp"}
    server = [
        s
        for s in scraped["istio_tcp_received_bytes_total"]
        if s["reporter"] == "destination" and s["destination_service_name"] == "tcp-echo"
    ]
    assert sum(float(s["value"]) for s in server) >= 5 * len("hello\n")
    assert {s["connection_security_policy"] for s in server} == {"mutual_tls"}
    assert "spiffe://cluster.local/ns/default/sa/curl" in {str(s["source_principal"]) for s in server}
