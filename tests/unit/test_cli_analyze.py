"""`gossamer analyze` with no mesh running: files and cluster dumps, Istio's analyzers, istioctl's flags."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NET = REPO / "samples/bookinfo/networking"


def analyze(tmp_path: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gossamer.cli.main",
            "--run-dir",
            str(tmp_path / "run"),
            "--state-dir",
            str(tmp_path / "state"),
            "analyze",
            *map(str, args),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )


def test_consistent_files_have_no_issues(tmp_path: Path) -> None:
    proc = analyze(
        tmp_path,
        REPO / "samples/bookinfo/bookinfo.yaml",
        NET / "destination-rule-reviews.yaml",
        NET / "virtual-service-reviews-v3.yaml",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No validation issues found" in proc.stdout
    assert not (tmp_path / "state").exists()  # offline: nothing started, nothing stored


def test_missing_subset_is_an_error_with_its_line(tmp_path: Path) -> None:
    proc = analyze(tmp_path, REPO / "samples/bookinfo/bookinfo.yaml", NET / "virtual-service-all-v1.yaml")
    assert proc.returncode == 79  # istioctl's exit code: a message at --failure-threshold (Error)
    assert (
        f"{NET / 'virtual-service-all-v1.yaml'}:25: Error [IST0101] (VirtualService default/reviews) "
        "spec.http[0].route[0].destination.subset: referenced host+subset in destinationrule not found: "
        "'reviews+v1'"
    ) in proc.stdout
    quiet = analyze(
        tmp_path,
        "--failure-threshold",
        "Error",
        "--output-threshold",
        "Error",
        "-o",
        "json",
        REPO / "samples/bookinfo/bookinfo.yaml",
        NET / "virtual-service-all-v1.yaml",
    )
    assert {(m["code"], m["kind"], m["resource"]) for m in json.loads(quiet.stdout)} == {
        ("IST0101", "VirtualService", name) for name in ("details", "productpage", "ratings", "reviews")
    }


def test_schema_errors_are_reported_and_the_rest_is_analyzed(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\n"
        "spec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n"
        "      weight: 30\n    - destination: {host: ratings}\n      weight: 30\n---\n"
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: y}\n"
        "spec:\n  hosts: [y]\n  http:\n  - route:\n    - destination: {host: nowhere}\n"
    )
    proc = analyze(tmp_path, bad)
    assert proc.returncode == 79
    assert f"{bad}:7: Error [IST0106] (VirtualService default/x) spec.http[0].route: weights sum to 60" in proc.stdout
    assert f"{bad}:20: Error [IST0101] (VirtualService default/y) spec.http[0].route[0].destination.host" in proc.stdout


DUMP = """apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: shop, annotations: null}
- apiVersion: v1
  kind: Pod
  metadata: {name: cart-1, namespace: shop, labels: {app: cart}}
  spec: {containers: [{name: cart, image: cart}], nodeName: node-1}
  status: {phase: Running}
- apiVersion: v1
  kind: Node
  metadata: {name: node-1}
  spec: {podCIDR: 10.0.0.0/24}
- apiVersion: admissionregistration.k8s.io/v1
  kind: MutatingWebhookConfiguration
  metadata: {name: istio-sidecar-injector}
  webhooks: []
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRole
  metadata: {name: "system:shop-reader"}
  rules: []
- apiVersion: v1
  kind: Service
  metadata: {name: cart, namespace: shop}
  spec: {selector: {app: cart}, ports: [{name: web, port: 80}]}
- apiVersion: networking.istio.io/v1
  kind: VirtualService
  metadata: {name: cart, namespace: shop}
  spec:
    hosts: [cart]
    http: [{route: [{destination: {host: cart, subset: v2}}]}]
- apiVersion: networking.istio.io/v1
  kind: DestinationRule
  metadata: {name: cart}
  spec:
    host: cart.shop.svc.cluster.local
    workloadSelector: {matchLabels: {app: cart}}
"""


def found(proc: subprocess.CompletedProcess[str]) -> set[tuple[str, str, str, str]]:
    return {(m["code"], m["kind"], m["namespace"], m["resource"]) for m in json.loads(proc.stdout)}


def test_a_cluster_dump_list_is_read_whole_and_scoped_by_namespace(tmp_path: Path) -> None:
    dump = tmp_path / "dump.yaml"
    dump.write_text(DUMP)
    shop_ns = ("IST0102", "Namespace", "", "shop")  # cluster-scoped: shown whatever the namespace
    # default namespace: the DestinationRule (no namespace of its own) is there, and fine
    default_ns = analyze(tmp_path, "-o", "json", dump)
    assert found(default_ns) == {shop_ns}
    assert "rbac.authorization.k8s.io/ClusterRole (1)" in default_ns.stderr  # read, listed once, not analyzed
    shop = analyze(tmp_path, "-n", "shop", "-o", "json", dump)
    assert found(shop) == {
        shop_ns,
        ("IST0101", "VirtualService", "shop", "cart"),
        ("IST0118", "Service", "shop", "cart"),
    }
    everything = analyze(tmp_path, "-A", "-o", "json", dump)
    assert found(everything) == found(shop)
    log = analyze(tmp_path, "-n", "shop", dump).stdout
    assert (
        f"{dump}:33: Error [IST0101] (VirtualService shop/cart) spec.http[0].route[0].destination.subset: "
        "referenced host+subset in destinationrule not found: 'cart+v2'"
    ) in log


def test_mesh_config_file(tmp_path: Path) -> None:
    """--meshConfigFile replaces the mesh config: with DNS auto-allocation a TCP ServiceEntry needs no addresses."""
    entry = tmp_path / "se.yaml"
    entry.write_text("""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.example.com]
  ports: [{number: 5432, name: tcp-db, protocol: TCP}]
  resolution: DNS
""")
    default_mesh = analyze(tmp_path, entry)
    assert f"{entry}:6: Warning [IST0134] (ServiceEntry default/db) spec.ports[0].name:" in default_mesh.stdout
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(
        "defaultConfig:\n  proxyMetadata:\n    ISTIO_META_DNS_CAPTURE: 'true'\n"
        "    ISTIO_META_DNS_AUTO_ALLOCATE: 'true'\n"
    )
    auto = analyze(tmp_path, "--meshConfigFile", mesh, entry)
    assert auto.returncode == 0 and "IST0134" not in auto.stdout, auto.stdout
    missing = analyze(tmp_path, "--meshConfigFile", tmp_path / "nope.yaml", entry)
    assert missing.returncode == 1 and "nope.yaml: no such file" in missing.stderr


def test_suppressions(tmp_path: Path) -> None:
    """istioctl's --suppress CODE=RESOURCE (a glob) and the galley.istio.io/analyze-suppress annotation."""
    dump = tmp_path / "dump.yaml"
    dump.write_text(
        DUMP.replace(
            "metadata: {name: cart, namespace: shop}\n  spec:\n    hosts",
            "metadata: {name: cart, namespace: shop, annotations: "
            "{galley.istio.io/analyze-suppress: 'IST0101,IST0999'}}\n  spec:\n    hosts",
        )
    )
    everything = found(analyze(tmp_path, "-n", "shop", "-o", "json", dump))
    assert ("IST0101", "VirtualService", "shop", "cart") not in everything  # the annotation
    quiet = analyze(
        tmp_path, "-n", "shop", "-o", "json", "-S", "IST0118=Service shop/*", "-S", "IST0102=Namespace sh*", dump
    )
    assert found(quiet) == everything - {("IST0118", "Service", "shop", "cart"), ("IST0102", "Namespace", "", "shop")}
    unknown = analyze(tmp_path, "-S", "IST9999=Service x", dump)
    assert "IST9999 is not an analysis code" in unknown.stderr
    assert analyze(tmp_path, "-S", "IST0118", dump).returncode == 1


def test_a_kubernetes_object_that_does_not_parse_is_a_note(tmp_path: Path) -> None:
    bad = tmp_path / "deploy.yaml"
    bad.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n"
        "  selector: {matchLabels: {a: b}}\n"
        "  template:\n    spec: {containers: [{name: a, image: x, bogusField: 1}]}\n"
    )
    proc = analyze(tmp_path, bad)
    assert proc.returncode == 0 and "IST0106" not in proc.stdout  # istioctl does not validate Kubernetes kinds
    assert f"note: not analyzed: {bad}:7: Deployment/x: spec.template.spec.containers[0]: unknown field" in proc.stderr


def test_a_kind_of_another_api_group_is_read_not_analyzed(tmp_path: Path) -> None:
    """A VirtualService of some other group is not Istio's: no analyzer runs on it (they failed on it)."""
    odd = tmp_path / "odd.yaml"
    odd.write_text(
        "apiVersion: foo.example/v1\nkind: VirtualService\nmetadata: {name: odd}\n"
        "spec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n"
    )
    proc = analyze(tmp_path, odd)
    assert proc.returncode == 0 and "IST0001" not in proc.stdout, proc.stdout
    assert "read but not analyzed (no analyzer looks at these kinds): foo.example/VirtualService (1)" in proc.stderr


def test_n_is_the_namespace_of_documents_that_name_none_as_istioctl_means_it(tmp_path: Path) -> None:
    """The seed example names no namespace; its VirtualService routes to simple.simple.svc.cluster.local.
    With -n simple the Service is that host; without, the Service is default's and the host is missing."""
    sample = REPO / "samples/simple"
    scoped = analyze(tmp_path, "-n", "simple", sample)
    assert scoped.returncode == 0, scoped.stdout + scoped.stderr
    assert "No validation issues found when analyzing these files alone" in scoped.stdout
    assert "(namespace: simple)" in scoped.stdout
    unscoped = analyze(tmp_path, sample)
    assert unscoped.returncode == 79
    assert unscoped.stdout.splitlines() == [
        f"{sample}/istio-specs.yaml:15: Error [IST0101] (VirtualService default/simple) "
        "spec.http[0].route[0].destination.host: referenced host not found: 'simple.simple.svc.cluster.local'"
    ]
