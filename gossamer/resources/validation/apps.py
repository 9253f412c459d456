"""Validation of Deployment: the pod template's containers, probes, volumes and security context."""

from __future__ import annotations

from gossamer.mesh import POD_ID_BASE, POD_ID_RANGE, is_reserved_id
from gossamer.resources import apps
from gossamer.resources import volumes as pod_volumes
from gossamer.resources.apps import Deployment
from gossamer.resources.base import FieldPath
from gossamer.resources.validation.common import (
    Finding,
    Report,
    camel,
    check_int_or_name,
    check_labels,
    is_dns1123_label,
    is_dns1123_subdomain,
)


def _check_run_as(
    rep: Report, pod_path: FieldPath, pod: apps.PodSpec, container_path: FieldPath, container: apps.Container
) -> None:
    """securityContext users the local runtime can honour (runtime/sandbox.py)."""
    contexts = [(container_path, container.security_context)]
    if container is pod.containers[0]:  # the pod's own once
        contexts.insert(0, (pod_path, pod.security_context))
    for path, ctx in contexts:
        for field in ("run_as_user", "run_as_group"):
            value = getattr(ctx, field, None) if ctx is not None else None
            if value is not None and is_reserved_id(value):
                rep.error(
                    path + ("securityContext", camel(field)),
                    f"{value} is reserved for the mesh's per-pod users "
                    f"({POD_ID_BASE}..{POD_ID_BASE + POD_ID_RANGE - 1})",
                )
    user, _ = apps.run_as(pod, container)
    non_root = None
    for ctx in (pod.security_context, container.security_context):
        if ctx is not None and ctx.run_as_non_root is not None:
            non_root = ctx.run_as_non_root
    if non_root and user == 0:
        rep.error(container_path + ("securityContext", "runAsUser"), "runAsNonRoot is true but runAsUser is 0")


def validate_deployment(res: Deployment) -> list[Finding]:
    rep = Report()
    spec = res.spec
    sp: FieldPath = ("spec",)
    _check_selector(rep, sp, spec)
    pod = spec.template.spec
    pp = sp + ("template", "spec")
    _check_pod(rep, pp, pod)
    names: dict[str, int] = {}
    for i, c in enumerate(pod.containers):
        cp = pp + ("containers", i)
        if not is_dns1123_label(c.name):
            rep.error(cp + ("name",), f"invalid container name {c.name!r}: must be a DNS-1123 label")
        if c.name in names:
            rep.error(cp + ("name",), f"duplicate container name {c.name!r} (also containers[{names[c.name]}])")
        names.setdefault(c.name, i)
        _check_container(rep, pp, pod, cp, c)
    return rep.findings


def _check_selector(rep: Report, sp: FieldPath, spec: apps.DeploymentSpec) -> None:
    tmpl_labels = spec.template.metadata.labels
    check_labels(rep, sp + ("selector", "matchLabels"), spec.selector.match_labels)
    check_labels(rep, sp + ("template", "metadata", "labels"), tmpl_labels)
    if not spec.selector.match_labels and not spec.selector.match_expressions:
        rep.error(sp + ("selector",), "selector must not be empty")
    if spec.selector.match_expressions:
        rep.warn(sp + ("selector", "matchExpressions"), "matchExpressions are not supported and are ignored")
    mismatched = [k for k, v in spec.selector.match_labels.items() if tmpl_labels.get(k) != v]
    if mismatched:
        rep.error(
            sp + ("selector", "matchLabels"),
            "selector does not match template labels ("
            + ", ".join(f"{k}={spec.selector.match_labels[k]}" for k in mismatched)
            + " not in spec.template.metadata.labels)",
        )


def _check_pod(rep: Report, pp: FieldPath, pod: apps.PodSpec) -> None:
    """The pod template's own fields (not its containers')."""
    if not pod.containers:
        rep.error(pp + ("containers",), "at least one container is required")
    for field in apps.IGNORED_POD_FIELDS:
        if getattr(pod, field) is not None:
            rep.warn(pp + (camel(field),), "ignored: has no meaning for local pods")
    if (
        pod.service_account is not None
        and pod.service_account != pod.service_account_name
        and "service_account_name" in pod.model_fields_set
    ):
        rep.error(pp + ("serviceAccount",), "serviceAccount and serviceAccountName differ")
    elif pod.service_account is not None:
        rep.warn(pp + ("serviceAccount",), "deprecated: use serviceAccountName")
    # "" is what Kubernetes defaults to "default" (Istio's samples/ratelimit sets it so)
    if pod.service_account_name and not is_dns1123_subdomain(pod.service_account_name):
        rep.error(pp + ("serviceAccountName",), f"invalid service account name {pod.service_account_name!r}")
    for problem in pod_volumes.check_pod(pod, pp):  # volumes, volumeMounts, valueFrom, envFrom
        (rep.error if problem.level == "error" else rep.warn)(problem.path, problem.message)


def _check_container(rep: Report, pp: FieldPath, pod: apps.PodSpec, cp: FieldPath, c: apps.Container) -> None:
    for field in apps.IGNORED_CONTAINER_FIELDS:
        if getattr(c, field) is not None:
            rep.warn(cp + (camel(field),), "ignored: has no meaning for local pods")
    _check_run_as(rep, pp, pod, cp, c)
    port_names: set[str] = set()
    for j, port in enumerate(c.ports):
        if port.name is not None:
            check_int_or_name(rep, cp + ("ports", j, "name"), port.name)
            if port.name in port_names:
                rep.error(cp + ("ports", j, "name"), f"duplicate port name {port.name!r}")
            port_names.add(port.name)
    env_names: set[str] = set()
    for j, env in enumerate(c.env):
        if env.name in env_names:
            rep.warn(cp + ("env", j, "name"), f"duplicate environment variable {env.name!r}: the last one wins")
        env_names.add(env.name)
    for probe_field, probe in (
        ("readinessProbe", c.readiness_probe),
        ("livenessProbe", c.liveness_probe),
        ("startupProbe", c.startup_probe),
    ):
        if probe is not None:
            _check_probe(rep, cp + (probe_field,), probe, port_names, probe_field != "readinessProbe")


def _check_probe(rep: Report, prp: FieldPath, probe: apps.Probe, port_names: set[str], single_success: bool) -> None:
    """SINGLE_SUCCESS: liveness and startup probes, whose successThreshold must be 1."""
    handlers = [
        n
        for n, v in (
            ("httpGet", probe.http_get),
            ("tcpSocket", probe.tcp_socket),
            ("exec", probe.exec),
            ("grpc", probe.grpc),
        )
        if v is not None
    ]
    if len(handlers) != 1:
        rep.error(
            prp,
            "exactly one of httpGet, tcpSocket, exec, grpc must be set"
            + (f" (found {', '.join(handlers)})" if handlers else ""),
        )
    for hname, handler in (("httpGet", probe.http_get), ("tcpSocket", probe.tcp_socket)):
        if handler is None:
            continue
        port_value: int | str = handler.port
        check_int_or_name(rep, prp + (hname, "port"), port_value)
        if isinstance(port_value, str) and not port_value.isdigit() and port_value not in port_names:
            rep.error(
                prp + (hname, "port"),
                f"named port {port_value!r} is not one of the container's ports",
            )
    if probe.exec is not None or probe.grpc is not None:
        rep.warn(prp, "exec and grpc probes are not supported locally; the probe always passes")
    if single_success and probe.success_threshold != 1:
        rep.error(prp + ("successThreshold",), "successThreshold must be 1 for liveness and startup probes")
