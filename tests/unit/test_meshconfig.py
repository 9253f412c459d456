"""ConfigMap (core v1) and Istio's mesh config from `ConfigMap istio-system/istio` (key `mesh`)."""

from __future__ import annotations

import textwrap

from gossamer.registry.snapshot import MeshSnapshot
from gossamer.resources import parse_documents
from gossamer.resources.apps import Deployment
from gossamer.resources.meshconfig import DEFAULT_MESH_CONFIG, parse_mesh_config

ISTIO_CM = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: istio
  namespace: istio-system
data:
  meshNetworks: 'networks: {}'
  mesh: |-
    accessLogFile: /dev/stdout
    accessLogEncoding: JSON
    enableTracing: false
    defaultConfig:
      discoveryAddress: istiod.istio-system.svc:15012
      holdApplicationUntilProxyStarts: true
      tracing:
        sampling: 25
    enablePrometheusMerge: true
    outboundTrafficPolicy:
      mode: REGISTRY_ONLY
    pathNormalization:
      normalization: DECODE_AND_MERGE_SLASHES
    trustDomain: example.org
    extensionProviders:
    - name: otel
      opentelemetry:
        service: otel.observability.svc.cluster.local
        port: 4317
"""


def _errors(text: str) -> list[str]:
    _, issues = parse_documents(textwrap.dedent(text), "mesh.yaml")
    return [str(i) for i in issues if i.level == "error"]


def test_istio_configmap_parses_into_the_snapshot_mesh_config() -> None:
    resources, issues = parse_documents(ISTIO_CM, "mesh.yaml")
    assert [str(i) for i in issues] == []  # trustDomain is enforced (certificates, principals, ADS)
    mesh = MeshSnapshot(1, resources={"ConfigMap": tuple(resources)}).mesh_config
    assert mesh.registry_only
    assert (mesh.access_log_file, mesh.access_log_encoding, mesh.enable_tracing) == ("/dev/stdout", "JSON", False)
    assert mesh.trace_sampling == 25
    assert mesh.hold_application_until_proxy_starts
    assert mesh.trust_domain == "example.org"
    assert mesh.path_normalization_mode == "DECODE_AND_MERGE_SLASHES"
    provider = mesh.extension_provider("otel")
    assert provider is not None and provider.kind == "opentelemetry" and provider.settings["port"] == 4317
    # Istio fields Gossamer does not act on are accepted and kept.
    assert (mesh.model_extra or {})["enablePrometheusMerge"] is True
    assert mesh.default_config.model_extra == {"discoveryAddress": "istiod.istio-system.svc:15012"}


def test_defaults_without_configmap_or_in_another_namespace() -> None:
    assert MeshSnapshot(1).mesh_config == DEFAULT_MESH_CONFIG
    other, _ = parse_documents(ISTIO_CM.replace("namespace: istio-system", "namespace: default"), "m.yaml")
    mesh = MeshSnapshot(1, resources={"ConfigMap": tuple(other)}).mesh_config
    assert not mesh.registry_only and mesh.path_normalization_mode == "BASE"
    assert mesh.trace_sampling == 1.0 and mesh.enable_tracing and mesh.trust_domain == "cluster.local"


def test_bad_mesh_field_is_reported_at_its_line_inside_the_embedded_yaml() -> None:
    text = ISTIO_CM.replace("mode: REGISTRY_ONLY", "mode: REGISTRY_ONLI")
    assert _errors(text) == [
        "mesh.yaml:19: ConfigMap/istio: data.mesh.outboundTrafficPolicy.mode: "
        "Input should be 'ALLOW_ANY' or 'REGISTRY_ONLY' (got 'REGISTRY_ONLI')"
    ]
    text = ISTIO_CM.replace("sampling: 25", "sampling: 250")
    assert _errors(text) == [
        "mesh.yaml:16: ConfigMap/istio: data.mesh.defaultConfig.tracing.sampling: "
        "Input should be less than or equal to 100 (got 250)"
    ]
    text = ISTIO_CM.replace("  normalization:", "  normalisation:")
    assert _errors(text) == [
        "mesh.yaml:21: ConfigMap/istio: data.mesh.pathNormalization: unknown field 'normalisation'"
    ]


def test_bad_mesh_yaml_and_providers() -> None:
    assert _errors(ISTIO_CM.replace("enableTracing: false", "enableTracing: [")) == [
        "mesh.yaml:13: ConfigMap/istio: data.mesh: invalid YAML: expected ',' or ']', but got ':'"
    ]
    dup = ISTIO_CM + "    - name: otel\n      zipkin: {service: z, port: 9411}\n"
    assert _errors(dup) == [
        "mesh.yaml:28: ConfigMap/istio: data.mesh.extensionProviders[1].name: duplicate extension provider name 'otel'"
    ]
    # Only Istio's ConfigMap carries a mesh config: another ConfigMap's `mesh` key is plain data.
    assert _errors(ISTIO_CM.replace("name: istio\n", "name: other\n").replace("mode: REGISTRY_ONLY", "mode: X")) == []


def test_configmap_fields() -> None:
    assert _errors("""\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: c}
        data:
          a b: x
          n: 5
          both: x
        binaryData:
          both: eA==
          bad: '!!'
        immutable: "yes"
        """) == [
        "mesh.yaml:5: ConfigMap/c: data.a b: invalid key: keys are letters, digits, '-', '_' and '.' (at most 253)",
        "mesh.yaml:6: ConfigMap/c: data.n: data.n must be a string",
        "mesh.yaml:9: ConfigMap/c: binaryData.both: key 'both' is in both data and binaryData",
        "mesh.yaml:10: ConfigMap/c: binaryData.bad: binaryData.bad is not valid base64",
        "mesh.yaml:11: ConfigMap/c: immutable: immutable must be true or false",
    ]
    [spec] = _errors("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nspec: {}\n")
    assert spec.startswith("mesh.yaml:4: ConfigMap/c: spec: unknown field 'spec'")


def test_alias_bomb_in_mesh_is_bounded() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefg", "bcdefgh", strict=True)
    )
    config, problems = parse_mesh_config(bomb)
    assert config is None and "aliases" in problems[0].message


def test_a_field_istio_does_not_know_is_a_warning_that_names_it() -> None:
    text = ISTIO_CM.replace("    enableTracing: false\n", "    enableTracng: false\n")
    resources, issues = parse_documents(text, "mesh.yaml")
    assert resources and [str(i) for i in issues if "enableTracng" in str(i)] == [
        "mesh.yaml:11: warning: ConfigMap/istio: data.mesh: unknown field 'enableTracng': not a field of "
        "Istio's MeshConfig, ignored (did you mean 'enableTracing'?)"
    ]
    # Istio's other fields are plain accepted.
    other = ISTIO_CM.replace("enablePrometheusMerge", "enableAutoMtls").replace("example.org", "cluster.local")
    assert not parse_documents(other, "m.yaml")[1]


def test_hold_application_from_the_mesh_config_and_the_pods_proxy_config_annotation() -> None:
    from gossamer.controlplane.kubernetes import deployment_spec

    def deployment(annotation: str = "") -> Deployment:
        ann = f"\n      annotations:\n        proxy.istio.io/config: '{annotation}'" if annotation else ""
        text = (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n"
            "  selector: {matchLabels: {app: web}}\n  template:\n    metadata:\n"
            f"      labels: {{app: web}}{ann}\n    spec:\n      containers: [{{name: web, command: [sleep]}}]\n"
        )
        [res], issues = parse_documents(text, "web.yaml")
        assert isinstance(res, Deployment)
        return res

    held_cm, _ = parse_documents(
        ISTIO_CM.replace("holdApplicationUntilProxyStarts: true", "holdApplicationUntilProxyStarts: true  # held"),
        "m.yaml",
    )
    held = MeshSnapshot(1, resources={"ConfigMap": tuple(held_cm)})
    assert held.mesh_config.hold_application_until_proxy_starts
    assert not deployment_spec(deployment()).hold_application_until_proxy_starts
    assert deployment_spec(deployment(), held).hold_application_until_proxy_starts
    assert deployment_spec(deployment("holdApplicationUntilProxyStarts: true")).hold_application_until_proxy_starts
    assert not deployment_spec(
        deployment("{holdApplicationUntilProxyStarts: false}"), held
    ).hold_application_until_proxy_starts
    # Not a rollout: pods made before keep running as they are.
    assert deployment_spec(deployment(), held).template_hash == deployment_spec(deployment()).template_hash


def test_trust_domain_aliases_are_typed_and_checked() -> None:
    text = ISTIO_CM.replace(
        "trustDomain: example.org", "trustDomain: new-td\n    trustDomainAliases: [old-td, cluster.local]"
    )
    resources, issues = parse_documents(text, "mesh.yaml")
    assert [str(i) for i in issues] == []
    mesh = MeshSnapshot(1, resources={"ConfigMap": tuple(resources)}).mesh_config
    assert (mesh.trust_domain, mesh.trust_domain_aliases) == ("new-td", ("old-td", "cluster.local"))
    assert mesh.summary()["trustDomainAliases"] == ["old-td", "cluster.local"]
    bad = ISTIO_CM.replace("trustDomain: example.org", "trustDomain: new-td\n    trustDomainAliases: [old/td]")
    (error,) = _errors(bad)
    assert error.startswith("mesh.yaml:23: ConfigMap/istio: data.mesh.trustDomainAliases"), error
    assert "'old/td' is not a trust domain" in error, error
