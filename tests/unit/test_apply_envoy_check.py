"""`gossamer apply` builds what every proxy would receive and refuses what Envoy would reject, naming
the applied resource responsible (an EnvoyFilter's patch included) and storing nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gossamer.controlplane.config import apply_files
from gossamer.controlplane.kubernetes import BUILTIN_SOURCE, builtin_documents
from gossamer.store import Store

ROOT = Path(__file__).resolve().parents[2]

EF = """\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: headers, namespace: default}
spec:
  workloadSelector: {labels: {app: reviews}}
  configPatches:
  - applyTo: HTTP_ROUTE
    match: {context: SIDECAR_OUTBOUND}
    patch:
      operation: MERGE
      value: {request_headers_to_add: [{header: {key: x-fine, value: ok}}]}
  - applyTo: HTTP_ROUTE
    match: {context: SIDECAR_OUTBOUND}
    patch:
      operation: MERGE
      value: {request_headers_to_add: [{header: {key: x-broken, value: "a\\u0000b"}}]}
"""


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "store.db")
    apply_files(s, [(BUILTIN_SOURCE, yaml.safe_dump_all(builtin_documents()))])
    bookinfo = [(str(f), f.read_text()) for f in sorted((ROOT / "samples" / "bookinfo").glob("*.yaml"))]
    assert apply_files(s, bookinfo).ok
    return s


def test_an_envoyfilter_patch_envoy_would_reject_is_refused_with_its_line(store: Store) -> None:
    before = store.revision
    vs = (ROOT / "samples/bookinfo/networking/virtual-service-all-v1.yaml").read_text()
    result = apply_files(store, [("vs.yaml", vs), ("ef.yaml", EF)])
    assert [(e.file, e.line, e.kind, e.name, e.field) for e in result.errors] == [
        ("ef.yaml", 12, "EnvoyFilter", "headers", "spec.configPatches[1]")
    ]
    message = result.errors[0].message
    assert "Envoy would reject what this builds for sidecar default/reviews-v" in message
    assert "request_headers_to_add[1].header.value: 'a\\x00b' is not a valid HTTP header value" in message
    assert store.revision == before and not result.changes  # nothing stored, the VirtualService neither
    assert apply_files(store, [("vs.yaml", vs)]).ok  # the VirtualService alone is fine


def test_a_certificate_file_missing_on_this_machine_is_refused(store: Store, tmp_path: Path) -> None:
    dr = (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n"
        "  host: reviews\n  trafficPolicy:\n    tls: {mode: SIMPLE, caCertificates: %s}\n"
    )
    result = apply_files(store, [("dr.yaml", dr % "/no/such/ca.pem")])
    assert [(e.line, e.field) for e in result.errors] == [(7, "spec.trafficPolicy.tls.caCertificates")]
    assert "does not exist on this machine" in result.errors[0].message
    ca = tmp_path / "ca.pem"
    ca.write_text("-")
    assert apply_files(store, [("dr.yaml", dr % ca)]).ok


def test_a_problem_already_there_is_not_blamed_on_a_new_resource(store: Store) -> None:
    """Only what the applied resources bring counts: with a broken EnvoyFilter already stored (by an
    older version, say), another resource still applies."""
    from gossamer.controlplane.config import applied_object, parse_files

    resources, errors, _ = parse_files([("ef.yaml", EF)])
    assert not errors
    store.apply([applied_object(r) for r in resources])  # straight into the store, unchecked
    vs = (ROOT / "samples/bookinfo/networking/virtual-service-all-v1.yaml").read_text()
    result = apply_files(store, [("vs.yaml", vs)])
    assert result.ok, [str(e) for e in result.errors]
