"""Analyzers of rate limiting and pod references (gossamer/analyze/analyzers/ratelimit.py): a rate limit
EnvoyFilter whose service cluster will not exist, a pod using a ConfigMap/Secret (or key) that does not."""

from __future__ import annotations

from pathlib import Path

from gossamer.analyze import load_for_analysis, run_analyzers
from tests.support.manifests import deployment, line_of, manifest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "tests/data/istio-docs/rate-limit"
SAMPLE = REPO / "samples/ratelimit/rate-limit-service.yaml"


def messages(*files: Path | tuple[str, str]) -> list[str]:
    loaded = load_for_analysis(
        [f if isinstance(f, tuple) else (str(f.relative_to(REPO)), f.read_text()) for f in files]
    )
    return [str(m) for m in run_analyzers(loaded.resources, namespace=None) if m.type.code == "IST0101"]


def test_rate_limit_service_cluster_missing_points_at_the_field() -> None:
    [found] = messages(DOCS / "filter-ratelimit.yaml")
    line = next(
        i for i, t in enumerate((DOCS / "filter-ratelimit.yaml").read_text().splitlines(), 1) if "cluster_name:" in t
    )
    assert found.startswith(
        f"tests/data/istio-docs/rate-limit/filter-ratelimit.yaml:{line}: Error [IST0101] "
        "(EnvoyFilter istio-system/filter-ratelimit) spec.configPatches[0].patch.value.typed_config"
        ".rate_limit_service.grpc_service.envoy_grpc.cluster_name: rate limit service cluster "
        "'outbound|8081||ratelimit.default.svc.cluster.local': service "
        "'ratelimit.default.svc.cluster.local' not found"
    ), found


def test_the_task_as_written_is_clean() -> None:
    assert (
        messages(
            DOCS / "ratelimit-config.yaml", SAMPLE, DOCS / "filter-ratelimit.yaml", DOCS / "filter-ratelimit-svc.yaml"
        )
        == []
    )


def test_wrong_port_and_unknown_cluster_name() -> None:
    text = (DOCS / "filter-ratelimit.yaml").read_text()
    wrong_port = ("ef.yaml", text.replace("outbound|8081||", "outbound|9999||"))
    [found] = messages(wrong_port, DOCS / "ratelimit-config.yaml", SAMPLE)
    assert "has no port 9999" in found
    named = (
        "ef.yaml",
        text.replace(
            "cluster_name: outbound|8081||ratelimit.default.svc.cluster.local", "cluster_name: rate_limit_cluster"
        ),
    )
    [found] = messages(named)
    assert "'rate_limit_cluster' not found: it is neither" in found
    # the older page's way: the same EnvoyFilter ADDs that cluster
    added = (
        named[1]
        + """\
    - applyTo: CLUSTER
      match:
        cluster:
          service: ratelimit.default.svc.cluster.local
      patch:
        operation: ADD
        value:
          name: rate_limit_cluster
          type: STRICT_DNS
          connect_timeout: 10s
          load_assignment:
            cluster_name: rate_limit_cluster
"""
    )
    assert messages(("ef.yaml", added)) == []


def test_pod_references_to_configmaps_and_secrets() -> None:
    [found] = messages(SAMPLE)
    assert (
        "(Deployment default/ratelimit) spec.template.spec.volumes[0].configMap.name: ConfigMap "
        "'ratelimit-config' not found" in found
    )
    app = manifest(
        deployment(
            "app",
            command=["sleep", "1"],
            image="busybox",
            env=[
                {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "missing"}}},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "nosecret", "key": "k", "optional": True}}},
            ],
            envFrom=[{"secretRef": {"name": "sec"}}],
        ),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"present": "1"}},
    )
    found_all = messages(("app.yaml", app))
    assert found_all == [
        f"app.yaml:{line_of(app, 'configMapKeyRef')}: Error [IST0101] (Deployment default/app) "
        "spec.template.spec.containers[0].env[0].valueFrom.configMapKeyRef: ConfigMap 'cfg' has no key 'missing'",
        f"app.yaml:{line_of(app, 'name: sec')}: Error [IST0101] (Deployment default/app) "
        "spec.template.spec.containers[0].envFrom[0].secretRef.name: Secret 'sec' not found: the pod's containers "
        "do not start until it exists",
    ], found
