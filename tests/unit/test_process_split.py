"""The pieces of the control plane / runtime split that need no root: the wire format of the desired
state and pod reports, the control plane's view of the reported pods, which CSRs it signs, and what a
restarted runtime adopts or cleans up."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
from cryptography import x509

from gossamer.controlplane.csr import PodUnknown, sign_pod_csr
from gossamer.controlplane.runtime_view import RuntimeView, StaleReport
from gossamer.runtime.local import _not_adopted
from gossamer.runtime.types import ContainerSpec, DeploymentSpec, PodStatus, Probe
from gossamer.runtime.wire import deployments_from_json, deployments_to_json, pods_to_json
from gossamer.security import CertificateAuthority, CsrRejected
from tests.unit.test_ca import make_csr

SPEC = DeploymentSpec(
    name="reviews-v1",
    namespace="default",
    replicas=2,
    labels=(("app", "reviews"), ("version", "v1")),
    annotations=(("sidecar.istio.io/inject", "true"),),
    service_account="bookinfo-reviews",
    containers=(
        ContainerSpec(
            "reviews",
            ("python3", "reviews.py", "9080"),
            (("PORT", "9080"),),
            (9080,),
            Probe("http", 9080, "/health", 1.0, 2.0),
            Path("/srv/bookinfo"),
        ),
    ),
)


def status(
    name: str,
    *,
    sa: str = "bookinfo-reviews",
    phase: Literal["Pending", "Running", "Terminating"] = "Running",
    ready: bool = True,
) -> PodStatus:
    return PodStatus(
        name=name,
        namespace="default",
        deployment="reviews-v1",
        ip="10.244.0.9",
        labels=SPEC.labels,
        service_account=sa,
        has_sidecar=True,
        proxy_type="sidecar",
        phase=phase,
        app_ready=ready,
        proxy_ready=ready,
    )


def report(*pods: PodStatus) -> dict[str, Any]:
    body = {
        "runtime": {"pid": 4243, "pidStart": 1, "startedAt": 1.0},
        "pods": [
            {
                "status": s,
                "netns": f"gsm-{i}",
                "adminSocket": f"/run/x/{i}/admin.sock",
                "logs": {"reviews": f"/logs/{i}.log"},
            }
            for i, s in enumerate(pods_to_json(list(pods)))
        ],
    }
    crossed: dict[str, Any] = json.loads(json.dumps(body))  # as it crosses the socket
    return crossed


def test_a_spec_survives_the_wire_with_the_same_template_hash() -> None:
    back = deployments_from_json(json.loads(json.dumps(deployments_to_json([SPEC]))))
    assert back == [SPEC] and back[0].template_hash == SPEC.template_hash


def test_the_view_knows_the_pods_only_once_reported_and_answers_lookups() -> None:
    changes: list[int] = []
    view = RuntimeView(Path("/nonexistent/runtime.sock"), on_change=lambda: changes.append(1))
    assert not view.known.is_set() and view.pods() == []
    view.report(report(status("reviews-v1-a"), status("reviews-v1-b", ready=False)))
    assert view.known.is_set() and len(changes) == 1
    assert [p.name for p in view.pods()] == ["reviews-v1-a", "reviews-v1-b"]
    assert view.pod("deploy/reviews-v1").name == "reviews-v1-a"  # the ready one
    assert view.netns_name("reviews-v1-b", "default") == "gsm-1"
    assert view.log_paths("reviews-v1-a", "default") == {"reviews": "/logs/0.log"}
    view.report(report(status("reviews-v1-a"), status("reviews-v1-b", ready=False)))
    assert len(changes) == 1, "an unchanged report is no change"
    view.report(report(status("reviews-v1-a")))
    assert len(changes) == 2 and [p.name for p in view.pods()] == ["reviews-v1-a"]
    with pytest.raises(KeyError):
        view.pod("reviews-v1-b")


def test_a_csr_is_signed_only_for_a_reported_pod_and_its_own_identity(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "ca")
    view = RuntimeView(Path("/nonexistent"), on_change=lambda: None)
    view.report(report(status("reviews-v1-a"), status("gone", phase="Terminating")))
    own = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
    _, csr = make_csr(own)
    pem = sign_pod_csr(ca, view, namespace="default", pod="reviews-v1-a", identity=own, csr_pem=csr, ttl_seconds=60)
    cert = x509.load_pem_x509_certificate(pem.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [own]
    for pod in ("nope", "gone"):
        with pytest.raises(PodUnknown):
            sign_pod_csr(ca, view, namespace="default", pod=pod, identity=own, csr_pem=csr, ttl_seconds=60)
    other = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
    _, other_csr = make_csr(other)
    with pytest.raises(CsrRejected, match="runs as"):
        sign_pod_csr(
            ca, view, namespace="default", pod="reviews-v1-a", identity=other, csr_pem=other_csr, ttl_seconds=60
        )
    with pytest.raises(CsrRejected):  # the CSR must ask for the pod's identity too
        sign_pod_csr(ca, view, namespace="default", pod="reviews-v1-a", identity=own, csr_pem=other_csr, ttl_seconds=60)


def test_what_a_restarted_runtime_cleans_up_leaves_the_adopted_pods_alone() -> None:
    adopted = {
        "default/a": {
            "netns": "gsm-aaaa",
            "veth": "gsmvaaaa",
            "shortId": "aaaa",
            "proxy": {"pid": 11, "start": 5},
            "containers": {"app": {"pid": 12, "start": 6}},
        }
    }
    record = {
        "owner": None,
        "bridge": "gsm0",
        "host_netns": "gsm-host",
        "processes": [
            {"pid": 11, "start": 5},
            {"pid": 12, "start": 6},
            {"pid": 13, "start": 7},
            {"pid": 12, "start": 99},
        ],
        "netns": ["gsm-aaaa", "gsm-bbbb"],
        "etc_netns": ["gsm-aaaa", "gsm-bbbb"],
        "veths": ["gsmvaaaa", "gsmvbbbb"],
        "dirs": ["/run/g/aaaa", "/run/g/bbbb"],
    }
    garbage = _not_adopted(record, adopted)
    assert garbage["processes"] == [{"pid": 13, "start": 7}, {"pid": 12, "start": 99}]  # pid reused: not ours
    assert garbage["netns"] == ["gsm-bbbb"] and garbage["etc_netns"] == ["gsm-bbbb"]
    assert garbage["veths"] == ["gsmvbbbb"] and garbage["dirs"] == ["/run/g/bbbb"]
    assert garbage["bridge"] is None and garbage["host_netns"] is None
    everything = _not_adopted(record, {})
    assert everything["bridge"] == "gsm0" and len(everything["processes"]) == 4


def test_a_report_parses_only_the_pods_that_changed() -> None:
    view = RuntimeView(Path("/nonexistent"), on_change=lambda: None)
    view.report(report(status("reviews-v1-a"), status("reviews-v1-b", ready=False)))
    a, b = view.find("default", "reviews-v1-a"), view.find("default", "reviews-v1-b")
    view.report(report(status("reviews-v1-a"), status("reviews-v1-b")))
    assert view.find("default", "reviews-v1-a") is a  # the same item: not parsed again
    new_b = view.find("default", "reviews-v1-b")
    assert new_b is not None and new_b is not b and new_b.ready
    with pytest.raises(KeyError):  # a malformed item is still refused (the API answers 400)
        view.report({"runtime": {}, "pods": [{"status": {"name": "x"}}]})


def test_a_report_of_changes_changes_the_last_report_taken_and_nothing_else() -> None:
    changes: list[int] = []
    view = RuntimeView(Path("/nonexistent"), on_change=lambda: changes.append(1))
    full = report(status("reviews-v1-a"), status("reviews-v1-b"), status("reviews-v1-c"))
    with pytest.raises(StaleReport):  # nothing taken yet: there is nothing to change
        view.read_changes({**full, "instance": "cp1", "base": 0}, "cp1")
    view.report(full)
    a, c = view.find("default", "reviews-v1-a"), view.find("default", "reviews-v1-c")
    assert view.reports == 1 and len(changes) == 1
    b_not_ready = report(status("reviews-v1-b", ready=False), status("reviews-v1-d"))["pods"]
    removed = [["default", "reviews-v1-c"]]
    body = {"runtime": full["runtime"], "instance": "cp1", "base": 1, "pods": b_not_ready, "removed": removed}
    # Made against another report (or another control plane): refused, nothing changes.
    for stale in ({**body, "base": 0}, {**body, "instance": "cp0"}):
        with pytest.raises(StaleReport):
            view.take(view.read_changes(stale, "cp1"))
    assert view.reports == 1 and [p.name for p in view.pods()] == ["reviews-v1-a", "reviews-v1-b", "reviews-v1-c"]
    view.take(view.read_changes(body, "cp1"))
    assert view.reports == 2 and len(changes) == 2
    assert [(p.name, p.ready) for p in view.pods()] == [
        ("reviews-v1-a", True),
        ("reviews-v1-b", False),
        ("reviews-v1-d", True),
    ]
    assert view.find("default", "reviews-v1-a") is a and c is not None  # the pods not in it: as they were
    assert view.netns_name("reviews-v1-d", "default") == "gsm-1"


def test_report_items_encode_each_status_once_while_it_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    import gossamer.runtime.daemon as daemon

    encoded: list[str] = []

    def counted(pods: list[PodStatus]) -> list[Any]:
        encoded.extend(p.name for p in pods)
        return pods_to_json(pods)

    monkeypatch.setattr(daemon, "pods_to_json", counted)
    items = daemon.ReportItems()
    a, b = status("reviews-v1-a"), status("reviews-v1-b")
    first = items.of([(a, {"netns": "gsm-a"}), (b, {"netns": "gsm-b"})])
    assert first == {
        ("default", "reviews-v1-a"): {"status": pods_to_json([a])[0], "netns": "gsm-a"},
        ("default", "reviews-v1-b"): {"status": pods_to_json([b])[0], "netns": "gsm-b"},
    }
    b_not_ready = status("reviews-v1-b", ready=False)
    second = items.of([(status("reviews-v1-a"), {"netns": "gsm-a"}), (b_not_ready, {"netns": "gsm-b"})])
    assert encoded == ["reviews-v1-a", "reviews-v1-b", "reviews-v1-b"]  # a (an equal status) not again
    assert second[("default", "reviews-v1-b")]["status"] == pods_to_json([b_not_ready])[0]
