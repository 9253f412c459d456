"""Istio's mesh-wide options: the `mesh` key of `ConfigMap istio-system/istio` (MeshConfig YAML).

Istio reads its MeshConfig from that ConfigMap and applies the user's YAML over its defaults;
so does Gossamer. The fields Gossamer acts on are typed here; every other MeshConfig field Istio
knows is accepted and kept (`MeshConfig.model_extra`), so an Istio ConfigMap applies unchanged.

    config, problems = parse_mesh_config(text)      # validation (path and line per field)
    snapshot.mesh_config                            # translation (pure, per snapshot)

Gossamer's defaults are those of Istio's default install profile: no text access log
(`accessLogFile: ""`; only the demo profile sets `/dev/stdout`). Turn it on as with Istio: the mesh
config's `accessLogFile: /dev/stdout`, or a Telemetry `accessLogging` entry with the `envoy`
provider (samples/telemetry/access-logging.yaml).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from gossamer.mesh import ROOT_NAMESPACE, TRUST_DOMAIN
from gossamer.resources.base import FieldPath, Model
from gossamer.resources.core import configmap_data

MESH_CONFIGMAP_NAMESPACE = ROOT_NAMESPACE
MESH_CONFIGMAP_NAME = "istio"
MESH_CONFIGMAP_KEY = "mesh"

PathNormalizationMode = Literal["DEFAULT", "NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"]
OutboundMode = Literal["ALLOW_ANY", "REGISTRY_ONLY"]

# The top-level fields of Istio's MeshConfig (istio/api mesh/v1alpha1/config.proto, with its reserved
# names): Istio accepts and ignores unknown fields; Gossamer accepts these and warns about others.
ISTIO_MESH_FIELDS = frozenset(
    (
        "accessLogEncoding",
        "accessLogFile",
        "accessLogFormat",
        "authPolicy",
        "ca",
        "caCertificates",
        "certificates",
        "configSources",
        "connectTimeout",
        "defaultConfig",
        "defaultDestinationRuleExportTo",
        "defaultHttpRetryPolicy",
        "defaultProviders",
        "defaultServiceExportTo",
        "defaultTrafficPolicy",
        "defaultVirtualServiceExportTo",
        "disableEnvoyListenerLog",
        "disableMixerHttpReports",
        "disablePolicyChecks",
        "disableReportBatch",
        "discoverySelectors",
        "dnsRefreshRate",
        "enableAutoMtls",
        "enableClientSidePolicyCheck",
        "enableEnvoyAccessLogService",
        "enablePrometheusMerge",
        "enableSdsTokenMount",
        "enableTracing",
        "extensionProviders",
        "fileFlushInterval",
        "fileFlushMinSize",
        "h2UpgradePolicy",
        "hboneIdleTimeout",
        "inboundClusterStatName",
        "inboundTrafficPolicy",
        "ingressClass",
        "ingressControllerMode",
        "ingressSelector",
        "ingressService",
        "localityLbSetting",
        "meshMTLS",
        "mixerAddress",
        "mixerCheckServer",
        "mixerReportServer",
        "outboundClusterStatName",
        "outboundTrafficPolicy",
        "pathNormalization",
        "policyCheckFailOpen",
        "protocolDetectionTimeout",
        "proxyHttpPort",
        "proxyInboundListenPort",
        "proxyListenPort",
        "rdsRefreshDelay",
        "reportBatchMaxEntries",
        "reportBatchMaxTime",
        "rootNamespace",
        "sdsRefreshDelay",
        "sdsUdsPath",
        "sdsUseK8sSaJwt",
        "serviceEntryVisibility",
        "serviceScopeConfigs",
        "serviceSettings",
        "sidecarToTelemetrySessionAffinity",
        "tcpKeepalive",
        "terminationDrainDuration",
        "thriftConfig",
        "tlsDefaults",
        "trustDomain",
        "trustDomainAliases",
        "verifyCertificateAtClient",
        "zoneAwareLbSetting",
    )
)

# Istio's extensionProviders kinds (one per provider entry).
EXTENSION_PROVIDER_KINDS = (
    "envoyExtAuthzHttp",
    "envoyExtAuthzGrpc",
    "zipkin",
    "lightstep",
    "datadog",
    "stackdriver",
    "opencensus",
    "skywalking",
    "opentelemetry",
    "prometheus",
    "envoyFileAccessLog",
    "envoyHttpAls",
    "envoyTcpAls",
    "envoyOtelAls",
    "sds",
)


class _Open(Model):
    """A MeshConfig message with many Istio fields: the typed ones checked, the others kept."""

    model_config = Model.model_config | ConfigDict(extra="allow")


class OutboundTrafficPolicy(Model):
    mode: OutboundMode = "ALLOW_ANY"


class PathNormalization(Model):
    normalization: PathNormalizationMode = "DEFAULT"


class TracingConfig(_Open):
    # Percent of requests that start a trace at this proxy (0-100, Istio's default 1).
    sampling: float | None = Field(default=None, ge=0, le=100)


class ProxyConfigDefaults(_Open):
    """`defaultConfig`: Istio's ProxyConfig for every proxy (drain durations, addresses, ...)."""

    tracing: TracingConfig | None = None
    hold_application_until_proxy_starts: bool = False


class ExtensionProvider(Model):
    """One `extensionProviders` entry: a `name` and exactly one provider kind (e.g. `zipkin:`),
    whose settings are kept as given for the features that use them (Telemetry, CUSTOM authz)."""

    model_config = Model.model_config | ConfigDict(extra="allow")

    name: str = Field(min_length=1)

    @property
    def kind(self) -> str:
        return next(iter(self.model_extra or {}), "")

    @property
    def settings(self) -> dict[str, Any]:
        value = (self.model_extra or {}).get(self.kind)
        return value if isinstance(value, dict) else {}


class MeshConfig(_Open):
    """The typed part of Istio's MeshConfig, with Istio's defaults (see the module doc)."""

    outbound_traffic_policy: OutboundTrafficPolicy = OutboundTrafficPolicy()
    access_log_file: str = ""  # Istio's default profile: no access log
    access_log_encoding: Literal["TEXT", "JSON"] = "TEXT"
    access_log_format: str = ""
    enable_tracing: bool = True
    default_config: ProxyConfigDefaults = ProxyConfigDefaults()
    trust_domain: str = TRUST_DOMAIN
    # Identities of these trust domains are the same workloads as the trust domain's (Istio's migration).
    trust_domain_aliases: tuple[str, ...] = ()
    root_namespace: str = ROOT_NAMESPACE
    path_normalization: PathNormalization = PathNormalization()
    extension_providers: tuple[ExtensionProvider, ...] = ()
    default_providers: dict[str, Any] = Field(default_factory=dict)

    @field_validator("trust_domain")
    @classmethod
    def _trust_domain(cls, v: str) -> str:
        if not _is_trust_domain(v):
            raise ValueError("trustDomain must be a DNS name like cluster.local")
        return v

    @field_validator("trust_domain_aliases")
    @classmethod
    def _trust_domain_aliases(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for alias in v:
            if not _is_trust_domain(alias):
                raise ValueError(f"{_short(alias)} is not a trust domain (a DNS name like old-td.example)")
        return v

    @field_validator("access_log_format")
    @classmethod
    def _json_format(cls, v: str, info: ValidationInfo) -> str:
        if info.data.get("access_log_encoding") == "JSON" and v:
            try:
                fields = json.loads(v)
            except ValueError as e:
                raise ValueError(f"with accessLogEncoding JSON, a JSON object of log keys: {e}") from None
            if not isinstance(fields, dict):
                raise ValueError("with accessLogEncoding JSON, a JSON object of log keys")
        return v

    # ------------------------------------------------------------------ effective values

    @property
    def registry_only(self) -> bool:
        return self.outbound_traffic_policy.mode == "REGISTRY_ONLY"

    @property
    def path_normalization_mode(self) -> str:
        """Istio's DEFAULT is BASE."""
        mode = self.path_normalization.normalization
        return "BASE" if mode == "DEFAULT" else mode

    @property
    def trace_sampling(self) -> float:
        """`defaultConfig.tracing.sampling`, else Istio's default 1% (as Istio, 0 means unset)."""
        tracing = self.default_config.tracing
        return tracing.sampling if tracing is not None and tracing.sampling else 1.0

    @property
    def hold_application_until_proxy_starts(self) -> bool:
        return self.default_config.hold_application_until_proxy_starts

    def extension_provider(self, name: str) -> ExtensionProvider | None:
        return next((p for p in self.extension_providers if p.name == name), None)

    def summary(self) -> dict[str, Any]:
        """The options Gossamer acts on, with their effective values (for `describe`)."""
        return {
            "outboundTrafficPolicy.mode": self.outbound_traffic_policy.mode,
            "accessLogFile": self.access_log_file,
            "accessLogEncoding": self.access_log_encoding,
            "enableTracing": self.enable_tracing,
            "defaultConfig.tracing.sampling": self.trace_sampling,
            "defaultConfig.holdApplicationUntilProxyStarts": self.hold_application_until_proxy_starts,
            "trustDomain": self.trust_domain,
            "trustDomainAliases": list(self.trust_domain_aliases),
            "pathNormalization.normalization": self.path_normalization_mode,
            "extensionProviders": [p.name for p in self.extension_providers],
        }


def _is_trust_domain(value: str) -> bool:
    return len(value) <= 255 and re.fullmatch(r"[a-zA-Z0-9]([-a-zA-Z0-9._]*[a-zA-Z0-9])?", value) is not None


DEFAULT_MESH_CONFIG = MeshConfig()


# ---------------------------------------------------------------------------- parsing


class MeshConfigProblem:
    """One problem in the mesh text: the path below `mesh`, the line in the mesh text (1-based);
    warnings leave the config usable."""

    __slots__ = ("path", "line", "message", "level")

    def __init__(self, path: FieldPath, line: int, message: str, level: str = "error") -> None:
        self.path, self.line, self.message, self.level = path, line, message, level

    def __repr__(self) -> str:
        return f"MeshConfigProblem({self.path!r}, {self.line}, {self.message!r}, {self.level!r})"


_MAX_NODES = 20_000  # aliases may repeat nodes: the walk below is bounded, as Kubernetes bounds aliases


class _TooLarge(ValueError):
    pass


def _lines(node: yaml.Node, path: FieldPath, out: dict[FieldPath, int], budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLarge
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                out[path + (str(key_node.value),)] = key_node.start_mark.line + 1
                _lines(value_node, path + (str(key_node.value),), out, budget)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[path + (i,)] = item.start_mark.line + 1
            _lines(item, path + (i,), out, budget)


def _line_of(lines: dict[FieldPath, int], path: FieldPath) -> int:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return 1


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_mesh_config(text: str) -> tuple[MeshConfig | None, list[MeshConfigProblem]]:
    """The MeshConfig of a `mesh:` text over Gossamer's defaults, or None and the problems
    (path below `mesh`, line within `text`)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        return None, [MeshConfigProblem((), mark.line + 1 if mark else 1, f"invalid YAML: {e.problem}")]
    except yaml.YAMLError as e:
        return None, [MeshConfigProblem((), 1, f"invalid YAML: {e}")]
    if node is None:
        return MeshConfig(), []
    lines: dict[FieldPath, int] = {}
    try:
        _lines(node, (), lines, [_MAX_NODES])
    except _TooLarge:
        return None, [MeshConfigProblem((), 1, f"more than {_MAX_NODES} YAML nodes (aliases?)")]
    try:
        raw = yaml.SafeLoader(text).get_single_data()
    except yaml.YAMLError as e:
        return None, [MeshConfigProblem((), 1, f"invalid YAML: {e}")]
    if not isinstance(raw, dict):
        return None, [
            MeshConfigProblem((), 1, f"mesh must be a mapping of MeshConfig fields, got {type(raw).__name__}")
        ]
    problems = _provider_problems(raw.get("extensionProviders"), lines)
    warnings = list(_unknown_fields(raw, lines))
    try:
        config = MeshConfig.model_validate(raw)
    except ValidationError as err:
        return None, problems + list(_pydantic_problems(err, raw, lines)) + warnings
    if problems:
        return None, problems + warnings
    return config, warnings


def _unknown_fields(raw: dict[Any, Any], lines: dict[FieldPath, int]) -> Iterable[MeshConfigProblem]:
    import difflib

    for key in raw:
        if isinstance(key, str) and key not in ISTIO_MESH_FIELDS:
            close = difflib.get_close_matches(key, sorted(ISTIO_MESH_FIELDS), n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            yield MeshConfigProblem(
                (),
                _line_of(lines, (key,)),
                f"unknown field {_short(key)}: not a field of Istio's MeshConfig, ignored{hint}",
                level="warning",
            )


def _provider_problems(providers: Any, lines: dict[FieldPath, int]) -> list[MeshConfigProblem]:
    out: list[MeshConfigProblem] = []
    if not isinstance(providers, list):
        return out
    seen: set[str] = set()
    for i, entry in enumerate(providers):
        path: FieldPath = ("extensionProviders", i)
        if not isinstance(entry, dict):
            continue
        name = entry.get("name")
        if isinstance(name, str):
            if name in seen:
                out.append(
                    MeshConfigProblem(
                        path + ("name",),
                        _line_of(lines, path + ("name",)),
                        f"duplicate extension provider name {_short(name)}",
                    )
                )
            seen.add(name)
        kinds = [k for k in entry if k != "name"]
        if len(kinds) != 1:
            out.append(
                MeshConfigProblem(
                    path,
                    _line_of(lines, path),
                    f"an extension provider has a name and exactly one of {', '.join(EXTENSION_PROVIDER_KINDS)}",
                )
            )
        elif kinds[0] not in EXTENSION_PROVIDER_KINDS:
            out.append(
                MeshConfigProblem(
                    path + (kinds[0],),
                    _line_of(lines, path + (kinds[0],)),
                    f"unknown extension provider kind {_short(kinds[0])}; one of {', '.join(EXTENSION_PROVIDER_KINDS)}",
                )
            )
        elif not isinstance(entry[kinds[0]], dict | None):
            out.append(
                MeshConfigProblem(
                    path + (kinds[0],), _line_of(lines, path + (kinds[0],)), f"{kinds[0]} must be a mapping of settings"
                )
            )
    return out


def _pydantic_problems(err: ValidationError, raw: Any, lines: dict[FieldPath, int]) -> Iterable[MeshConfigProblem]:
    seen: set[FieldPath] = set()
    for e in err.errors():
        path: list[str | int] = []
        cur = raw
        for part in e["loc"]:  # keep the parts that are in the document (drop union tags)
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
                path.append(part)
            elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
                cur = cur[part]
                path.append(part)
            elif isinstance(part, str) and isinstance(cur, dict) and e["type"] in ("extra_forbidden", "missing"):
                path.append(part)
                break
        key = tuple(path)
        if key in seen:
            continue
        seen.add(key)
        message = str(e["msg"]).removeprefix("Value error, ")
        line = _line_of(lines, key)
        if e["type"] == "extra_forbidden":  # named in the message, at its own line
            message = f"unknown field {_short(path[-1])}"
            key = key[:-1]
        elif e["type"] == "missing":
            message = "required field is missing"
        elif not isinstance(e.get("input"), dict | list):
            message += f" (got {_short(e.get('input'))})"
        yield MeshConfigProblem(key, line, message)


def mesh_config_of(configmaps: Iterable[Any]) -> MeshConfig:
    """The mesh config from the `ConfigMap` resources of a snapshot (Istio's `istio-system/istio`,
    key `mesh`); Gossamer's defaults without one. Applied config was validated, so a problem here
    (never expected) falls back to the defaults rather than stopping translation."""
    for cm in configmaps:
        if cm.metadata.namespace == MESH_CONFIGMAP_NAMESPACE and cm.metadata.name == MESH_CONFIGMAP_NAME:
            text = configmap_data(cm.raw).get(MESH_CONFIGMAP_KEY)
            if text is not None:
                config, _ = parse_mesh_config(text)
                return config or MeshConfig()
    return MeshConfig()  # a value of this snapshot's own (MeshConfig() == DEFAULT_MESH_CONFIG)
