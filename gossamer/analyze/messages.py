"""The analysis messages: Istio's codes, names and levels (Istio's "Configuration Analysis Messages"
reference), our own wording, and where each message points (file:line of the field)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gossamer.resources.issues import Issue

Level = Literal["Error", "Warning", "Info"]
LEVEL_RANK: dict[str, int] = {"Info": 0, "Warning": 1, "Error": 2}


@dataclass(frozen=True)
class MessageType:
    code: str
    name: str
    level: Level


_TYPES = (
    ("IST0001", "InternalError", "Error"),
    ("IST0002", "Deprecated", "Warning"),
    ("IST0101", "ReferencedResourceNotFound", "Error"),
    ("IST0102", "NamespaceNotInjected", "Info"),
    ("IST0103", "PodMissingProxy", "Warning"),
    ("IST0106", "SchemaValidationError", "Error"),
    ("IST0107", "MisplacedAnnotation", "Warning"),
    ("IST0108", "UnknownAnnotation", "Warning"),
    ("IST0109", "ConflictingMeshGatewayVirtualServiceHosts", "Error"),
    ("IST0110", "ConflictingSidecarWorkloadSelectors", "Error"),
    ("IST0111", "MultipleSidecarsWithoutWorkloadSelectors", "Error"),
    ("IST0112", "VirtualServiceDestinationPortSelectorRequired", "Error"),
    ("IST0116", "DeploymentAssociatedToMultipleServices", "Warning"),
    ("IST0118", "PortNameIsNotUnderNamingConvention", "Info"),
    ("IST0123", "NamespaceMultipleInjectionLabels", "Warning"),
    ("IST0125", "InvalidAnnotation", "Warning"),
    ("IST0126", "UnknownMeshNetworksServiceRegistry", "Error"),
    ("IST0127", "NoMatchingWorkloadsFound", "Warning"),
    ("IST0128", "NoServerCertificateVerificationDestinationLevel", "Warning"),
    ("IST0129", "NoServerCertificateVerificationPortLevel", "Warning"),
    ("IST0130", "VirtualServiceUnreachableRule", "Warning"),
    ("IST0131", "VirtualServiceIneffectiveMatch", "Info"),
    ("IST0132", "VirtualServiceHostNotFoundInGateway", "Warning"),
    ("IST0133", "SchemaWarning", "Warning"),
    ("IST0134", "ServiceEntryAddressesRequired", "Warning"),
    ("IST0135", "DeprecatedAnnotation", "Info"),
    ("IST0136", "AlphaAnnotation", "Info"),
    ("IST0137", "DeploymentConflictingPorts", "Warning"),
    ("IST0138", "GatewayDuplicateCertificate", "Warning"),
    ("IST0139", "InvalidWebhook", "Error"),
    ("IST0140", "IngressRouteRulesNotAffected", "Warning"),
    ("IST0141", "InsufficientPermissions", "Error"),
    ("IST0142", "UnsupportedKubernetesVersion", "Error"),
    ("IST0143", "LocalhostListener", "Error"),
    ("IST0144", "InvalidApplicationUID", "Warning"),
    ("IST0145", "ConflictingGateways", "Error"),
    ("IST0146", "ImageAutoWithoutInjectionWarning", "Warning"),
    ("IST0147", "ImageAutoWithoutInjectionError", "Error"),
    ("IST0148", "NamespaceInjectionEnabledByDefault", "Info"),
    ("IST0149", "JwtClaimBasedRoutingWithoutRequestAuthN", "Error"),
    ("IST0150", "ExternalNameServiceTypeInvalidPortName", "Warning"),
    ("IST0151", "EnvoyFilterUsesRelativeOperation", "Warning"),
    ("IST0152", "EnvoyFilterUsesReplaceOperationIncorrectly", "Error"),
    ("IST0153", "EnvoyFilterUsesAddOperationIncorrectly", "Error"),
    ("IST0154", "EnvoyFilterUsesRemoveOperationIncorrectly", "Error"),
    ("IST0155", "EnvoyFilterUsesRelativeOperationWithProxyVersion", "Warning"),
    ("IST0156", "UnsupportedGatewayAPIVersion", "Error"),
    ("IST0172", "FutureUnsupportedGatewayAPIVersion", "Warning"),
    ("IST0157", "InvalidTelemetryProvider", "Warning"),
    ("IST0158", "PodsIstioProxyImageMismatchInNamespace", "Warning"),
    ("IST0159", "ConflictingTelemetryWorkloadSelectors", "Error"),
    ("IST0160", "MultipleTelemetriesWithoutWorkloadSelectors", "Error"),
    ("IST0161", "InvalidGatewayCredential", "Error"),
    ("IST0162", "GatewayPortNotDefinedOnService", "Warning"),
    ("IST0163", "InvalidExternalControlPlaneConfig", "Warning"),
    ("IST0164", "ExternalControlPlaneAddressIsNotAHostname", "Info"),
    ("IST0165", "ReferencedInternalGateway", "Warning"),
    ("IST0166", "IneffectiveSelector", "Warning"),
    ("IST0167", "IneffectivePolicy", "Warning"),
    ("IST0168", "UnknownUpgradeCompatibility", "Warning"),
    ("IST0169", "UpdateIncompatibility", "Warning"),
    ("IST0170", "MultiClusterInconsistentService", "Warning"),
    ("IST0171", "NegativeConditionStatus", "Warning"),
    ("IST0173", "DestinationRuleSubsetNotSelectPods", "Error"),
    ("IST0174", "UnknownDestinationRuleHost", "Warning"),
    ("IST0175", "JwksUriFetchUnrestricted", "Warning"),
    ("IST0176", "GatewayAPICRDVersionBelowMinimum", "Warning"),
    ("IST0177", "ConflictingServiceEntryProtocol", "Warning"),
    # Gossamer's own: Envoy would reject what this builds (a NACK in production)
    ("GSM0001", "EnvoyWouldRejectConfig", "Error"),
    # Gossamer's own (no Istio code): the local runtime runs apps as root only when their spec asks.
    ("GSM0002", "RunsAsRoot", "Warning"),
)

TYPES: dict[str, MessageType] = {code: MessageType(code, name, level) for code, name, level in _TYPES}  # type: ignore[arg-type]


@dataclass(frozen=True)
class Message:
    """One finding about one object. ``str()`` reads like istioctl's line with the file first:
    ``vs.yaml:25: Error [IST0101] (VirtualService default/reviews) spec.http[0]...host: text``."""

    type: MessageType
    kind: str
    namespace: str
    name: str
    file: str
    line: int
    field: str
    text: str

    @property
    def code(self) -> str:
        return self.type.code

    @property
    def level(self) -> Level:
        return self.type.level

    @property
    def resource_name(self) -> str:
        """Istio's friendly name: "Kind namespace/name" (cluster-scoped: "Kind name")."""
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    def __str__(self) -> str:
        location = self.file or "<input>"
        if self.line:
            location += f":{self.line}"
        field = f" {self.field}:" if self.field else ""
        return f"{location}: {self.level} [{self.code}] ({self.resource_name}){field} {self.text}"

    def to_issue(self) -> Issue:
        """As an apply-time warning (analysis never rejects config, whatever Istio's level)."""
        return Issue(
            "warning",
            self.file,
            self.line,
            self.kind,
            self.name,
            self.field,
            f"{self.text} ({self.code} {self.type.name})",
        )

    def to_json(self) -> dict[str, object]:
        return {
            "code": self.code,
            "name": self.type.name,
            "level": self.level,
            "kind": self.kind,
            "namespace": self.namespace,
            "resource": self.name,
            "file": self.file,
            "line": self.line,
            "field": self.field,
            "message": self.text,
            "text": str(self),
        }
