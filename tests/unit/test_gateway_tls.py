"""Secure gateways: the Secret kind (validation with file:line), TLS-terminating gateway servers and
which proxies get which secrets."""

from __future__ import annotations

import base64
import textwrap
from typing import Any

import pytest
import yaml

from gossamer.resources import Issue, parse_documents
from gossamer.translate import translate_proxy
from gossamer.xds.build import build_resources
from gossamer.xds.types import SECRET
from tests.support.certs import TestCA, tls_secret
from tests.support.offline import gateway_proxy, proxy_for, snapshot_from_yaml


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


def _errors(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.level == "error"]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_tls_secret_parses(ca: TestCA) -> None:
    issued = ca.issue("a.example.com", ("a.example.com",))
    resources, issues = parse_documents(
        yaml.safe_dump(tls_secret("cred", "istio-system", issued, ca.cert_pem)), "s.yaml"
    )
    assert not _errors(issues), [str(i) for i in issues]
    assert resources[0].kind == "Secret" and resources[0].namespace == "istio-system"


def test_secret_with_string_data_and_opaque_type(ca: TestCA) -> None:
    issued = ca.issue("a.example.com")
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "x"},
        "type": "Opaque",
        "stringData": {"cert": issued.cert_pem, "key": issued.key_pem, "other": "hello"},
    }
    _, issues = parse_documents(yaml.safe_dump(doc), "s.yaml")
    assert not _errors(issues)


def test_bad_certificate_points_at_its_line(ca: TestCA) -> None:
    issued = ca.issue("a.example.com")
    text = textwrap.dedent(f"""\
        apiVersion: v1
        kind: Secret
        metadata:
          name: cred
          namespace: istio-system
        type: kubernetes.io/tls
        data:
          tls.key: {_b64(issued.key_pem)}
          tls.crt: {_b64("not a certificate")}
        """)
    _, issues = parse_documents(text, "s.yaml")
    errs = _errors(issues)
    assert len(errs) == 1 and errs[0].line == 9 and errs[0].file == "s.yaml", [str(i) for i in issues]
    assert "tls.crt" in errs[0].message


def test_bad_key_and_bad_base64_and_missing_key(ca: TestCA) -> None:
    issued = ca.issue("a.example.com")
    bad_key = _b64("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    text = textwrap.dedent(f"""\
        apiVersion: v1
        kind: Secret
        metadata: {{name: cred}}
        type: kubernetes.io/tls
        data:
          tls.crt: {_b64(issued.cert_pem)}
          tls.key: {bad_key}
        """)
    errs = _errors(parse_documents(text, "s.yaml")[1])
    assert [(e.line, "tls.key" in e.message) for e in errs] == [(7, True)], [str(i) for i in errs]

    text = "apiVersion: v1\nkind: Secret\nmetadata: {name: cred}\ndata:\n  x: '%%%'\n"
    errs = _errors(parse_documents(text, "s.yaml")[1])
    assert [e.line for e in errs] == [5] and "base64" in errs[0].message

    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "c"},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": issued.cert_pem},
    }
    errs = _errors(parse_documents(yaml.safe_dump(doc), "s.yaml")[1])
    assert any("tls.key" in e.message for e in errs)


def test_unknown_top_level_field_is_rejected() -> None:
    text = "apiVersion: v1\nkind: Secret\nmetadata: {name: c}\nspec: {}\n"
    errs = _errors(parse_documents(text, "s.yaml")[1])
    assert errs and errs[0].line == 4


GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [a.example.com]
    tls: {mode: SIMPLE, credentialName: a-cred}
  - port: {number: 443, name: https-b, protocol: HTTPS}
    hosts: [b.example.com]
    tls: {mode: MUTUAL, credentialName: b-cred}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: web}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [a.example.com, b.example.com]
  gateways: [istio-system/gw]
  http:
  - route: [{destination: {host: web.default.svc.cluster.local}}]
"""


def _mesh(ca: TestCA, *secrets: dict[str, Any]) -> str:
    return GATEWAY + "".join("---\n" + yaml.safe_dump(s) for s in secrets)


def test_only_referenced_secrets_reach_the_gateway(ca: TestCA) -> None:
    a = ca.issue("a.example.com", ("a.example.com",))
    b = ca.issue("b.example.com", ("b.example.com",))
    text = _mesh(
        ca,
        tls_secret("a-cred", "istio-system", a),
        tls_secret("b-cred", "istio-system", b, ca.cert_pem),
        tls_secret("unused", "istio-system", a),
        tls_secret("a-cred", "default", b),
    )
    snapshot = snapshot_from_yaml(text)
    gateway = build_resources(translate_proxy(snapshot, gateway_proxy(snapshot)))
    assert sorted(gateway[SECRET]) == ["kubernetes://a-cred", "kubernetes://b-cred", "kubernetes://b-cred-cacert"]
    cert = gateway[SECRET]["kubernetes://a-cred"]
    assert cert.tls_certificate.certificate_chain.inline_bytes.decode() == a.cert_pem  # istio-system's, not default's
    # A sidecar gets no secrets at all.
    sidecar = build_resources(translate_proxy(snapshot, proxy_for(snapshot, "web")))
    assert not sidecar.get(SECRET)


def test_missing_credential_drops_the_server_and_cacert_secret_is_used(ca: TestCA) -> None:
    a = ca.issue("a.example.com")
    b = ca.issue("b.example.com")
    ca_only = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "b-cred-cacert", "namespace": "istio-system"},
        "stringData": {"ca.crt": ca.cert_pem},
    }
    snapshot = snapshot_from_yaml(_mesh(ca, tls_secret("b-cred", "istio-system", b), ca_only))
    config = translate_proxy(snapshot, gateway_proxy(snapshot))
    listener = next(x for x in config.listeners if x.name == "0.0.0.0_8443")
    assert [s.server_names for s in listener.tls_servers] == [("b.example.com",)]
    assert listener.tls_servers[0].validation == "kubernetes://b-cred-cacert"
    assert {s.name for s in config.secrets} == {"kubernetes://b-cred", "kubernetes://b-cred-cacert"}
    assert "a-cred" not in str(config.secrets) and a.serial  # a-cred is absent: no chain, no secret


def test_https_redirect_requires_tls() -> None:
    text = GATEWAY.replace(
        """  - port: {number: 443, name: https-b, protocol: HTTPS}
    hosts: [b.example.com]
    tls: {mode: MUTUAL, credentialName: b-cred}""",
        """  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [a.example.com]
    tls: {httpsRedirect: true}""",
    )
    snapshot = snapshot_from_yaml(text)
    config = translate_proxy(snapshot, gateway_proxy(snapshot))
    table = next(t for t in config.route_tables if t.name == "http.8080")
    assert [(v.domains[0], v.require_tls) for v in table.virtual_hosts] == [("a.example.com", True)]
    assert not config.secrets  # the HTTPS server's credential does not exist
