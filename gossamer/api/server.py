"""The control plane's REST API (aiohttp on a unix socket): what the CLI talks to."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gossamer.controlplane.csr import PodUnknown
from gossamer.controlplane.daemon import ControlPlane
from gossamer.controlplane.facade import ControlPlaneFacade, NoPrometheus
from gossamer.controlplane.runtime_view import StaleReport
from gossamer.debug import explain
from gossamer.debug.describe import DescribeError
from gossamer.resources.kinds import lookup_kind
from gossamer.runtime.types import PodStatus
from gossamer.security import CsrRejected
from gossamer.telemetry.controlplane import PILOT
from gossamer.telemetry.prometheus import PrometheusError
from gossamer.telemetry.tracing import summary
from gossamer.xds.proxy_status import ProxyStatus
from gossamer.xds.types import CLUSTER, ENDPOINT, LISTENER, ROUTE, short_name

CONFIG_TYPES = {"listeners": LISTENER, "routes": ROUTE, "clusters": CLUSTER, "endpoints": ENDPOINT}


def pod_json(pod: PodStatus, netns: str) -> dict[str, Any]:
    return {
        "name": pod.name,
        "namespace": pod.namespace,
        "deployment": pod.deployment,
        "ip": pod.ip,
        "labels": dict(pod.labels),
        "serviceAccount": pod.service_account,
        "phase": pod.phase,
        "ready": pod.ready,
        "appReady": pod.app_ready,
        "proxyReady": pod.proxy_ready,
        "hasSidecar": pod.has_sidecar,
        "proxyType": pod.proxy_type,
        "restarts": pod.restarts,
        "startedAt": pod.started_at,
        "netns": netns,
        "proxyUid": pod.proxy_uid,
        "runAs": [{"container": name, "uid": uid, "gid": gid} for name, uid, gid in pod.run_as],
        "reason": pod.reason,
        "waiting": list(pod.waiting),
    }


async def _files_body(request: web.Request) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
    """The JSON body and its files as (name, text), or None when the body is not that shape (a 400, not a
    traceback: the API takes what any client sends)."""
    try:
        body = await request.json()
    except ValueError:
        return {}, None
    files = body.get("files", []) if isinstance(body, dict) else None
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and isinstance(f.get("name"), str) and isinstance(f.get("text"), str) for f in files
    ):
        return {}, None
    return body, [(f["name"], f["text"]) for f in files]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]"})


def loopback_host(host: str) -> bool:
    name = host[: host.find("]") + 1] if host.startswith("[") else host.split(":", 1)[0]
    return name.lower() in LOOPBACK_HOSTS


@web.middleware
async def loopback_host_only(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if not loopback_host(request.host or ""):
        return web.Response(status=403, text="only loopback Host names (127.0.0.1, localhost) are answered\n")
    return await handler(request)


class Api:
    def __init__(self, cp: ControlPlane, shutdown: asyncio.Event) -> None:
        # Every handler goes through the facade: it is all the API (and the dashboard) may ask.
        self.control_plane = ControlPlaneFacade(cp)
        self.shutdown = shutdown
        self.dashboard_url: str | None = None  # set by `up` when it serves the dashboard

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes(
            [
                web.get("/v1/ready", self.ready),
                web.post("/v1/apply", self.apply),
                web.post("/v1/analyze", self.analyze),
                web.post("/v1/delete", self.delete),
                web.get("/v1/resources/{kind}", self.list_resources),
                web.get("/v1/status", self.status),
                web.get("/v1/pods/{namespace}/{ref:.+}", self.pod),
                web.get("/v1/proxy-config/{namespace}/{ref:.+}", self.proxy_config),
                web.get("/v1/describe/{namespace}/{ref:.+}", self.describe),
                web.post("/v1/explain", self.explain_request),
                web.get("/v1/sync", self.sync),
                # The runtime (kubelet) side: desired state, pod reports, its agents' certificates.
                web.get("/v1/runtime/desired", self.runtime_desired),
                web.put("/v1/runtime/pods", self.runtime_pods),
                web.patch("/v1/runtime/pods", self.runtime_pod_changes),
                web.post("/v1/runtime/csr", self.runtime_csr),
                web.get("/v1/runtime/root", self.runtime_root),
                web.get("/metrics", self.metrics),
                web.post("/v1/metrics/query", self.metrics_query),
                web.get("/v1/traces", self.traces),
            ]
        )
        return app

    def metrics_app(self) -> web.Application:
        """Only /metrics: what `up --metrics-port` serves on loopback for Prometheus (istiod's 15014),
        to loopback Host names only (a page on another site cannot read it by rebinding its name)."""
        app = web.Application(middlewares=[loopback_host_only])
        app.add_routes([web.get("/metrics", self.metrics)])
        return app

    async def metrics(self, request: web.Request) -> web.Response:
        """Istio's standard metrics of the whole mesh (read from the pods now) and the control plane's
        own (istiod's pilot_*), in Prometheus' text format."""
        return web.Response(
            body=(await self.control_plane.metrics_text()).encode() + generate_latest(PILOT.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def metrics_query(self, request: web.Request) -> web.Response:
        """A PromQL instant query to the mesh's Prometheus (`up --prometheus`)."""
        if not self.control_plane.has_prometheus:
            return _error(409, "no Prometheus: start the mesh with `gossamer up --prometheus`")
        body = await request.json()
        try:
            result = await self.control_plane.prometheus_query(str(body.get("query") or ""))
        except NoPrometheus as e:
            return _error(409, str(e))
        except PrometheusError as e:
            return _error(400, str(e))
        return web.json_response({"result": result})

    async def traces(self, request: web.Request) -> web.Response:
        """Recent traces from the Zipkin collector (`?service=NAME&limit=N`, or one: `?trace=ID`)."""
        trace_id = request.query.get("trace")
        if trace_id:
            spans = self.control_plane.trace(trace_id)
            if not spans:
                return _error(404, f"trace {trace_id} not found")
            return web.json_response({"traces": [summary(spans[0]["traceId"], spans)]})
        try:
            limit = int(request.query.get("limit") or 20)
        except ValueError:
            return _error(400, "limit must be a number")
        return web.json_response(
            {
                "traces": self.control_plane.traces(service=request.query.get("service") or None, limit=limit),
                "spans": self.control_plane.span_count(),
            }
        )

    async def ready(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "ready": self.control_plane.is_ready(),
                "ingress": self.control_plane.ingress_url,
                "pid": os.getpid(),
                "dashboard": self.dashboard_url,
                "pods": len(self.control_plane.pods()),
                "proxies": len(self.control_plane.proxies()),
                "podsKnown": self.control_plane.pods_known(),
            }
        )

    async def apply(self, request: web.Request) -> web.Response:
        body, files = await _files_body(request)
        if files is None:
            return _error(400, 'the body must be JSON: {"files": [{"name": "...", "text": "..."}, ...]}')
        namespace = body.get("namespace")
        if namespace is not None and not isinstance(namespace, str):
            return _error(400, "namespace must be a string")
        result = await self.control_plane.apply(files, dry_run=bool(body.get("dryRun")), namespace=namespace)
        out = result.to_json()
        out["revision"] = self.control_plane.revision()
        return web.json_response(out, status=200 if result.ok else 422)

    async def analyze(self, request: web.Request) -> web.Response:
        """`gossamer analyze` against the running mesh: these files over its config and pods."""
        body, files = await _files_body(request)
        if files is None:
            return _error(400, 'the body must be JSON: {"files": [{"name": "...", "text": "..."}, ...]}')
        mesh = body.get("meshConfig")
        try:
            result = await self.control_plane.analyze(
                files,
                namespace=body.get("namespace") or "default",
                all_namespaces=bool(body.get("allNamespaces")),
                mesh_config=(mesh["name"], mesh["text"]) if mesh else None,
                analyzers=body.get("analyzers"),
            )
        except ValueError as e:
            return _error(400, str(e))
        return web.json_response(result)

    async def delete(self, request: web.Request) -> web.Response:
        body, files = await _files_body(request)
        if files is None:
            return _error(400, 'the body must be JSON: {"files": [{"name": "...", "text": "..."}, ...]}')
        namespace = body.get("namespace")
        if namespace is not None and not isinstance(namespace, str):
            return _error(400, "namespace must be a string")
        result = self.control_plane.delete(files, namespace=namespace)
        out = result.to_json()
        out["revision"] = self.control_plane.revision()
        return web.json_response(out, status=200 if result.ok else 422)

    async def list_resources(self, request: web.Request) -> web.Response:
        try:
            info = lookup_kind(request.match_info["kind"])
        except KeyError as e:
            return _error(404, str(e.args[0] if e.args else e))
        namespace = request.query.get("namespace") or None
        name = request.query.get("name") or None
        if info.kind == "Pod":
            items = [
                self._pod_resource(p)
                for p in self.control_plane.pods()
                if (namespace is None or p.namespace == namespace) and (name is None or p.name == name)
            ]
        else:
            ns_filter = namespace if info.namespaced else None
            if name is not None and (ns_filter is not None or not info.namespaced):
                # One object by name: a lookup, not a read of the whole namespace.
                objects = self.control_plane.stored_objects(info.kind, ns_filter or "", name)
            else:
                objects = self.control_plane.stored_objects(info.kind, ns_filter, name)
            items = [o.with_metadata() for o in objects]
            if info.kind == "Service":
                # The virtual IP is allocated by the control plane, shown where Kubernetes shows it.
                vips = self.control_plane.service_vips()
                for item in items:
                    vip = vips.get((item["metadata"]["namespace"], item["metadata"]["name"]))
                    if vip:
                        item.setdefault("spec", {})["clusterIP"] = vip
        if name is not None and not items:
            return _error(404, f'{info.plural} "{name}" not found')
        return web.json_response({"kind": info.kind, "items": items})

    def _pod_resource(self, pod: PodStatus) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": dict(pod.labels)},
            "status": pod_json(pod, self.control_plane.netns_name(pod)),
        }

    async def status(self, request: web.Request) -> web.Response:
        pods = [pod_json(p, self.control_plane.netns_name(p)) for p in self.control_plane.pods()]
        proxies = []
        stats = self.control_plane.push_stats()
        for p in self.control_plane.proxies():
            proxies.append(
                {
                    "nodeId": p.node_id,
                    "group": p.group,
                    "delta": p.delta,
                    # Its config could not be translated: it keeps the last one it had (others are unaffected).
                    "translationError": stats.errors.get(p.group),
                    "types": {
                        short_name(t): {
                            "state": state,
                            "sent": s.sent_version,
                            "acked": s.acked_version,
                            "error": s.error,
                        }
                        for t, s in p.types.items()
                        for state in [p.synced.get(t, "NOT SENT")]
                    },
                }
            )
        control_plane, runtime = self.control_plane.processes()
        return web.json_response(
            {
                "ready": self.control_plane.is_ready(),
                "ingress": self.control_plane.ingress_url,
                "controlPlane": control_plane,
                "runtime": runtime,
                "pods": pods,
                "proxies": proxies,
                "pushes": {
                    "full": stats.full_pushes,
                    "endpoints": stats.endpoint_pushes,
                    "lastSeconds": stats.last_push_seconds,
                },
                "patchErrors": {g: list(e) for g, e in stats.patch_errors.items()},
            }
        )

    def _find_pod(self, namespace: str, ref: str) -> PodStatus | None:
        return self.control_plane.pod(ref, namespace)

    async def pod(self, request: web.Request) -> web.Response:
        ns, ref = request.match_info["namespace"], request.match_info["ref"]
        pod = self._find_pod(ns, ref)
        if pod is None:
            return _error(404, f'pod "{ref}" not found in namespace "{ns}"')
        out = pod_json(pod, self.control_plane.netns_name(pod))
        logs = self.control_plane.log_paths(pod)
        out["logs"] = {c: logs[c] for c in [*self.control_plane.containers(pod), "istio-proxy"] if c in logs}
        return web.json_response(out)

    def _pod_and_proxy(self, ns: str, ref: str) -> tuple[PodStatus, ProxyStatus] | web.Response:
        """The pod a CLI reference names and its connected proxy, or the 404 to answer."""
        pod = self._find_pod(ns, ref)
        if pod is None:
            return _error(404, f'pod "{ref}" not found in namespace "{ns}"')
        proxy = self.control_plane.proxy_of(pod)
        if proxy is None:
            return _error(404, f"pod {pod.name} has no connected proxy")
        return pod, proxy

    async def describe(self, request: web.Request) -> web.Response:
        """The config that applies to one pod (`gossamer describe`, like istioctl x describe pod)."""
        ns, ref = request.match_info["namespace"], request.match_info["ref"]
        pod = self._find_pod(ns, ref)
        if pod is None:
            return _error(404, f'pod "{ref}" not found in namespace "{ns}"')
        try:
            return web.json_response(self.control_plane.describe(pod))
        except DescribeError as e:
            return _error(404, str(e))

    async def _secret(self, pod: PodStatus) -> web.Response:
        """The pod's workload certificate and root as its agent serves them over SDS (never the key);
        the agents live in the runtime process, which answers on its own socket."""
        status, out = await self.control_plane.pod_secret(pod)
        if status == 404:
            return _error(404, f"pod {pod.name} has no workload certificate (no sidecar agent serving SDS)")
        if status != 200:
            return _error(status, str(out.get("error", f"runtime answered HTTP {status}")))
        out.update({"pod": pod.name, "namespace": pod.namespace})
        return web.json_response(out)

    async def proxy_config(self, request: web.Request) -> web.Response:
        if request.query.get("type") == "secret":
            ns, ref = request.match_info["namespace"], request.match_info["ref"]
            secret_pod = self._find_pod(ns, ref)
            if secret_pod is None:
                return _error(404, f'pod "{ref}" not found in namespace "{ns}"')
            return await self._secret(secret_pod)
        found = self._pod_and_proxy(request.match_info["namespace"], request.match_info["ref"])
        if isinstance(found, web.Response):
            return found
        pod, proxy = found
        wanted = request.query.get("type", "all")
        types = CONFIG_TYPES if wanted == "all" else {wanted: CONFIG_TYPES[wanted]}
        out: dict[str, Any] = {
            "nodeId": proxy.node_id,
            "group": proxy.group,
            "patchErrors": list(self.control_plane.push_stats().patch_errors.get(proxy.group, [])),
        }
        for key, type_url in types.items():
            version, resources = self.control_plane.proxy_config(proxy, type_url)
            out[key] = {"version": version, "items": [json_format.MessageToDict(r) for r in resources.values()]}
        if request.query.get("stats"):
            out["stats"] = await self.control_plane.envoy_stats(pod)
        return web.json_response(out)

    async def explain_request(self, request: web.Request) -> web.Response:
        """Where one request from (or, inbound, to) a pod goes on the config its proxy was sent, and why."""
        body = await request.json()
        found = self._pod_and_proxy(body.get("namespace") or "default", str(body.get("ref", "")))
        if isinstance(found, web.Response):
            return found
        pod, proxy = found
        try:
            out = self.control_plane.explain(
                pod,
                proxy,
                url=str(body.get("url", "")),
                method=str(body.get("method") or "GET"),
                headers=body.get("headers") or [],
                inbound=bool(body.get("inbound")),
            )
        except explain.ExplainError as e:
            return _error(400, str(e))
        out["pod"] = pod.name
        return web.json_response(out)

    async def sync(self, request: web.Request) -> web.Response:
        """Wait until config up to `revision` (default: the latest) is ACKed by every proxy."""
        revision = int(request.query.get("revision") or self.control_plane.revision())
        timeout = float(request.query.get("timeout") or 10)
        started = time.monotonic()
        synced = await self.control_plane.wait_config_synced(revision, timeout)
        return web.json_response(
            {"synced": synced, "revision": revision, "seconds": time.monotonic() - started},
            status=200 if synced else 504,
        )

    # ---- the runtime's side of the API (a kubelet's) ------------------------------------

    async def runtime_desired(self, request: web.Request) -> web.Response:
        """Long poll: the desired state once its version differs from `?version=` (or after `?wait=` s)."""
        try:
            wait = min(float(request.query.get("wait") or 0), 60.0)
        except ValueError:
            return _error(400, "wait must be a number")
        # (JSON encoded once per version, off the loop: ~1 MB at 1000 services)
        body = await self.control_plane.desired_json(request.query.get("version"), wait)
        return web.Response(body=body, content_type="application/json")

    async def runtime_pods(self, request: web.Request) -> web.Response:
        """The runtime's full pod list (sent to every new control plane, and after a report of changes was
        refused). The answer names the report: the runtime's next one sends only the changes since it."""
        try:
            serial = await self.control_plane.report_pods(await request.json())
        except (ValueError, KeyError, TypeError) as e:
            return _error(400, f"bad pod report: {e}")
        return web.json_response({"instance": self.control_plane.instance, "serial": serial})

    async def runtime_pod_changes(self, request: web.Request) -> web.Response:
        """The pods that changed since the runtime's last report (`base`: its serial, `instance`: this control
        plane's); 409 if that is not the last report this control plane took (the runtime sends all its pods)."""
        try:
            serial = await self.control_plane.report_pod_changes(await request.json())
        except StaleReport as e:
            return _error(409, str(e))
        except (ValueError, KeyError, TypeError) as e:
            return _error(400, f"bad pod report: {e}")
        return web.json_response({"instance": self.control_plane.instance, "serial": serial})

    async def runtime_csr(self, request: web.Request) -> web.Response:
        """Sign a pod agent's CSR (only for a reported pod, with its own identity)."""
        body = await request.json()
        try:
            cert = await self.control_plane.sign_pod_csr(
                namespace=str(body["namespace"]),
                pod=str(body["pod"]),
                identity=str(body["identity"]),
                csr_pem=str(body["csr"]),
                ttl_seconds=float(body["ttlSeconds"]),
            )
        except PodUnknown as e:
            return _error(409, str(e))
        except (CsrRejected, KeyError, ValueError, TypeError) as e:
            return _error(403, str(e))
        return web.json_response({"certificate": cert, "root": self.control_plane.root_pem})

    async def runtime_root(self, request: web.Request) -> web.Response:
        return web.json_response({"root": self.control_plane.root_pem})
