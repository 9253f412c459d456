"""apps/v1 Deployment and the parts of a pod template that run locally."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from gossamer.resources.base import IntOrString, Model, NonNegInt, NonNegInt32, Port, PosInt32, Resource, StringMap

# Pod/container fields that are accepted but mean nothing for a local process: a warning
# is issued when they are set (see validation/apps.py).
IGNORED_POD_FIELDS = (
    "init_containers",
    "affinity",
    "tolerations",
    "node_selector",
    "node_name",
    "priority_class_name",
    "topology_spread_constraints",
    "host_network",
    "host_aliases",
    "dns_policy",
    "dns_config",
    "image_pull_secrets",
    "runtime_class_name",
)
IGNORED_CONTAINER_FIELDS = ("lifecycle", "startup_probe")
# uid/gid ceiling: ids above it are reserved for the runtime's per-pod proxy and app users.
MAX_RUN_AS_ID = 2**31 - 1


class SecurityContext(Model):
    """Pod- or container-level securityContext. The local runtime enforces `runAsUser`, `runAsGroup`
    (the app's uid/gid; a container's value overrides the pod's) and `runAsNonRoot`; the other fields
    are accepted as Kubernetes defines them."""

    run_as_user: Annotated[int, Field(ge=0, le=MAX_RUN_AS_ID)] | None = None
    run_as_group: Annotated[int, Field(ge=0, le=MAX_RUN_AS_ID)] | None = None
    run_as_non_root: bool | None = None
    fs_group: int | None = None
    fs_group_change_policy: str | None = None
    supplemental_groups: list[int] | None = None
    supplemental_groups_policy: str | None = None
    privileged: bool | None = None
    allow_privilege_escalation: bool | None = None
    read_only_root_filesystem: bool | None = None
    capabilities: dict[str, Any] | None = None
    proc_mount: str | None = None
    se_linux_options: dict[str, Any] | None = Field(default=None, alias="seLinuxOptions")
    seccomp_profile: dict[str, Any] | None = None
    app_armor_profile: dict[str, Any] | None = None
    windows_options: dict[str, Any] | None = None
    sysctls: list[dict[str, Any]] | None = None
    se_linux_change_policy: str | None = Field(default=None, alias="seLinuxChangePolicy")


class LabelSelector(Model):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[dict[str, Any]] | None = None


class ObjectMetaTemplate(Model):
    labels: StringMap = Field(default_factory=dict)
    annotations: StringMap = Field(default_factory=dict)
    name: str | None = None
    namespace: str | None = None
    creation_timestamp: Any = None


class KeySelector(Model):
    """configMapKeyRef / secretKeyRef: one key of a ConfigMap or Secret of the pod's namespace."""

    name: str = ""
    key: str
    optional: bool | None = None


class ObjectFieldSelector(Model):
    field_path: str
    api_version: str | None = None


class EnvVarSource(Model):
    config_map_key_ref: KeySelector | None = None
    secret_key_ref: KeySelector | None = None
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: dict[str, Any] | None = None  # accepted, warned: no resources locally


class EnvVar(Model):
    name: str
    value: str | None = None
    value_from: EnvVarSource | None = None


class LocalObjectRef(Model):
    name: str = ""
    optional: bool | None = None


class EnvFromSource(Model):
    prefix: str | None = None
    config_map_ref: LocalObjectRef | None = None
    secret_ref: LocalObjectRef | None = None


class KeyToPath(Model):
    key: str
    path: str
    mode: int | None = None


class ConfigMapVolumeSource(Model):
    name: str = ""
    items: list[KeyToPath] | None = None
    default_mode: int | None = None
    optional: bool | None = None


class SecretVolumeSource(Model):
    secret_name: str = ""
    items: list[KeyToPath] | None = None
    default_mode: int | None = None
    optional: bool | None = None


class EmptyDirVolumeSource(Model):
    medium: str | None = None
    size_limit: IntOrString | None = None


class Volume(Model):
    """A pod volume: configMap, secret and emptyDir run locally; other types (hostPath, PVCs, projected,
    ...) are accepted and reported as not supported (validation/apps.py)."""

    model_config = Model.model_config | {"extra": "allow"}

    name: str
    config_map: ConfigMapVolumeSource | None = None
    secret: SecretVolumeSource | None = None
    empty_dir: EmptyDirVolumeSource | None = None


class VolumeMount(Model):
    name: str
    mount_path: str
    sub_path: str | None = None
    read_only: bool | None = None
    sub_path_expr: str | None = None
    mount_propagation: str | None = None
    recursive_read_only: str | None = None


class ContainerPort(Model):
    container_port: Port
    name: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    host_port: int | None = None
    host_ip: str | None = Field(default=None, alias="hostIP")


class HTTPHeader(Model):
    name: str
    value: str


class HTTPGetAction(Model):
    path: str = "/"
    port: IntOrString
    host: str | None = None
    scheme: Literal["HTTP", "HTTPS"] = "HTTP"
    http_headers: list[HTTPHeader] | None = None


class TCPSocketAction(Model):
    port: IntOrString
    host: str | None = None


class ExecAction(Model):
    command: list[str] = Field(default_factory=list)


class GRPCAction(Model):
    port: Port
    service: str | None = None


class Probe(Model):
    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    exec: ExecAction | None = None
    grpc: GRPCAction | None = None
    initial_delay_seconds: NonNegInt32 = 0
    period_seconds: PosInt32 = 10
    timeout_seconds: PosInt32 = 1
    failure_threshold: PosInt32 = 3
    success_threshold: PosInt32 = 1
    termination_grace_period_seconds: int | None = None


class ResourceRequirements(Model):
    limits: dict[str, str | int | float] | None = None
    requests: dict[str, str | int | float] | None = None
    claims: list[dict[str, Any]] | None = None


class Container(Model):
    name: str
    image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    env: list[EnvVar] = Field(default_factory=list)
    ports: list[ContainerPort] = Field(default_factory=list)
    readiness_probe: Probe | None = None
    liveness_probe: Probe | None = None
    startup_probe: Probe | None = None
    resources: ResourceRequirements | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    working_dir: str | None = None
    volume_mounts: list[VolumeMount] | None = None
    security_context: SecurityContext | None = None
    lifecycle: dict[str, Any] | None = None
    env_from: list[EnvFromSource] | None = None
    stdin: bool | None = None
    tty: bool | None = None
    termination_message_path: str | None = None
    termination_message_policy: str | None = None
    # further Kubernetes fields a cluster dump carries (read, no local meaning)
    stdin_once: bool | None = None
    restart_policy: str | None = None
    resize_policy: list[dict[str, Any]] | None = None
    volume_devices: list[dict[str, Any]] | None = None


class PodSpec(Model):
    containers: list[Container] = Field(default_factory=list)
    service_account_name: str = "default"
    service_account: str | None = None  # deprecated alias of serviceAccountName
    automount_service_account_token: bool | None = None
    restart_policy: Literal["Always", "OnFailure", "Never"] = "Always"
    termination_grace_period_seconds: NonNegInt | None = None
    hostname: str | None = None
    subdomain: str | None = None
    scheduler_name: str | None = None
    enable_service_links: bool | None = None
    share_process_namespace: bool | None = None
    volumes: list[Volume] | None = None
    security_context: SecurityContext | None = None
    # accepted with a warning (no meaning for local processes)
    init_containers: list[dict[str, Any]] | None = None
    affinity: dict[str, Any] | None = None
    tolerations: list[dict[str, Any]] | None = None
    node_selector: dict[str, str] | None = None
    node_name: str | None = None
    priority_class_name: str | None = None
    topology_spread_constraints: list[dict[str, Any]] | None = None
    host_network: bool | None = None
    host_aliases: list[dict[str, Any]] | None = None
    dns_policy: str | None = None
    dns_config: dict[str, Any] | None = None
    image_pull_secrets: list[dict[str, Any]] | None = None
    runtime_class_name: str | None = None
    # further Kubernetes fields a cluster dump carries (read, no local meaning)
    active_deadline_seconds: int | None = None
    ephemeral_containers: list[dict[str, Any]] | None = None
    host_ipc: bool | None = Field(default=None, alias="hostIPC")
    host_pid: bool | None = Field(default=None, alias="hostPID")
    host_users: bool | None = None
    os: dict[str, Any] | None = None
    overhead: dict[str, Any] | None = None
    preemption_policy: str | None = None
    priority: int | None = None
    readiness_gates: list[dict[str, Any]] | None = None
    resource_claims: list[dict[str, Any]] | None = None
    resources: dict[str, Any] | None = None
    scheduling_gates: list[dict[str, Any]] | None = None
    set_hostname_as_fqdn: bool | None = Field(default=None, alias="setHostnameAsFQDN")


def run_as(pod: PodSpec, container: Container) -> tuple[int | None, int | None]:
    """(runAsUser, runAsGroup) for a container: its own securityContext's, else the pod's, else None."""
    user = group = None
    for ctx in (pod.security_context, container.security_context):
        if ctx is not None:
            user = ctx.run_as_user if ctx.run_as_user is not None else user
            group = ctx.run_as_group if ctx.run_as_group is not None else group
    return user, group


class PodTemplateSpec(Model):
    metadata: ObjectMetaTemplate = Field(default_factory=ObjectMetaTemplate)
    spec: PodSpec


class DeploymentStrategy(Model):
    type: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    rolling_update: dict[str, IntOrString] | None = None


class DeploymentSpec(Model):
    replicas: NonNegInt32 = 1
    selector: LabelSelector
    template: PodTemplateSpec
    strategy: DeploymentStrategy | None = None
    min_ready_seconds: NonNegInt32 | None = None
    revision_history_limit: NonNegInt32 | None = None
    progress_deadline_seconds: NonNegInt32 | None = None
    paused: bool | None = None


# ---------------------------------------------------------------------------- the kinds


class Deployment(Resource[DeploymentSpec]):
    KIND = "Deployment"
