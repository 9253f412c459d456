"""Types shared by the control plane and the local runtime.

The control plane turns Deployments and Services into these plain records; the
runtime turns them into pods (network namespaces, processes, iptables) and
reports pod state back as `PodStatus`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class Probe:
    kind: Literal["http", "tcp"]
    port: int
    path: str = "/"
    initial_delay_seconds: float = 0.0
    period_seconds: float = 1.0


@dataclass(frozen=True)
class VolumeMount:
    name: str
    mount_path: str  # absolute, as the container sees it
    sub_path: str = ""
    read_only: bool = False


@dataclass(frozen=True)
class EnvRef:
    """An environment variable from a ConfigMap or Secret key, or from a pod field (`fieldRef`)."""

    name: str
    kind: Literal["ConfigMap", "Secret", "field"]
    source: str  # the ConfigMap/Secret name, or the field path
    key: str = ""
    optional: bool = False


@dataclass(frozen=True)
class EnvFrom:
    """envFrom: every key of a ConfigMap or Secret as a variable (with a prefix)."""

    kind: Literal["ConfigMap", "Secret"]
    source: str
    prefix: str = ""
    optional: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    command: tuple[str, ...]  # command + args, already joined
    env: tuple[tuple[str, str], ...] = ()
    ports: tuple[int, ...] = ()
    readiness_probe: Probe | None = None
    workdir: Path | None = None  # relative commands (and local image paths) start from the manifest's folder
    # Set when the container has no `command`: it runs this image (runtime/images.py), `command` is then
    # empty and `args` (if any) replace the image's Cmd, as in Kubernetes.
    image: str = ""
    args: tuple[str, ...] = ()
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    mounts: tuple[VolumeMount, ...] = ()
    env_refs: tuple[EnvRef, ...] = ()  # resolved when the container starts (runtime/volumes.py)
    env_from: tuple[EnvFrom, ...] = ()
    # securityContext (container's, else pod's): None = the pod's own unprivileged app user.
    run_as_user: int | None = None
    run_as_group: int | None = None


@dataclass(frozen=True)
class KeyToPath:
    key: str
    path: str
    mode: int | None = None


@dataclass(frozen=True)
class VolumeSpec:
    """A pod volume the runtime provides: a ConfigMap's or Secret's keys as files, or an empty dir."""

    name: str
    kind: Literal["configMap", "secret", "emptyDir", "unsupported"]
    source: str = ""  # ConfigMap / Secret name
    items: tuple[KeyToPath, ...] = ()  # empty: every key
    default_mode: int = 0o644
    optional: bool = False
    medium: str = ""  # emptyDir: "Memory" is a tmpfs


@dataclass(frozen=True)
class SourceData:
    """The current content of a ConfigMap or Secret a pod uses (volumes, env): key -> base64 value.
    `present` False: the object does not exist."""

    kind: Literal["ConfigMap", "Secret"]
    name: str
    present: bool
    data: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class DeploymentSpec:
    """What the runtime must keep running for one Deployment."""

    name: str
    namespace: str
    replicas: int
    labels: tuple[tuple[str, str], ...]  # pod template labels
    annotations: tuple[tuple[str, str], ...]
    service_account: str
    containers: tuple[ContainerSpec, ...]
    inject_sidecar: bool = True
    # "sidecar" gets iptables capture; "router" is a gateway: Envoy only, no capture,
    # and its 8080 listener is also bound on the host's ingress port.
    proxy_type: Literal["sidecar", "router"] = "sidecar"
    volumes: tuple[VolumeSpec, ...] = ()
    # The ConfigMaps and Secrets the pods use, as they are now. Not part of the template: a change
    # updates the running pods' volumes in place (as the kubelet does) instead of replacing them.
    sources: tuple[SourceData, ...] = ()
    # Istio's holdApplicationUntilProxyStarts: start the containers once Envoy is ready. Decided when
    # a pod is made (as Istio's injector), so it is not part of the template hash: no rollout.
    hold_application_until_proxy_starts: bool = False

    @property
    def template_hash(self) -> str:
        import hashlib

        template: tuple[object, ...] = (
            self.labels,
            self.annotations,
            self.service_account,
            self.containers,
            self.inject_sidecar,
            self.proxy_type,
        )
        if self.volumes:
            template += (self.volumes,)
        return hashlib.sha256(repr(template).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class ServiceAddress:
    """A Service's virtual IP and the names that resolve to it inside pods."""

    name: str
    namespace: str
    vip: str
    # ServiceEntry hosts resolve by these names only (no Kubernetes short names).
    hostnames: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceEndpoints:
    """One Service port's VIP and its ready endpoints: what kube-proxy programs in sidecar-less pods."""

    namespace: str
    name: str
    vip: str
    port: int
    endpoints: tuple[tuple[str, int], ...] = ()  # (pod IP, target port) of ready pods


@dataclass(frozen=True)
class PodStatus:
    name: str
    namespace: str
    deployment: str
    ip: str
    labels: tuple[tuple[str, str], ...]
    service_account: str
    has_sidecar: bool
    proxy_type: Literal["sidecar", "router"]
    phase: Literal["Pending", "Running", "Terminating"]
    app_ready: bool  # readiness probe passing (or no probe and process up)
    proxy_ready: bool  # Envoy reports LIVE (initial xDS applied); True when there is no sidecar
    restarts: int = 0
    started_at: float = 0.0
    ports: tuple[int, ...] = field(default=())
    proxy_uid: int | None = None  # the uid the pod's Envoy runs as (None: no Envoy, or root for routers)
    # (container, uid, gid) the pod's containers run as (runtime/sandbox.py).
    run_as: tuple[tuple[str, int, int], ...] = field(default=())
    # Why the containers have not started: "container web: ErrImagePull: cannot pull IMAGE: reason",
    # "container web: ImagePullBackOff: back-off 20s before pulling again (cannot pull IMAGE: reason)", ...
    waiting: tuple[str, ...] = field(default=())

    @property
    def reason(self) -> str:
        """kubectl's STATUS for a pod whose containers wait (ErrImagePull, ...), else its phase."""
        # runtime/image_containers.py's messages; CreateContainerError: the pod could not be made (runtime/local.py)
        for reason in ("ErrImagePull", "ImagePullBackOff", "CreateContainerError"):
            if any(f": {reason}: " in w for w in self.waiting):
                return reason
        return "ContainerCreating" if self.waiting else self.phase

    @property
    def ready(self) -> bool:
        return self.phase == "Running" and self.app_ready and self.proxy_ready
