"""The mesh graph: services and workloads as nodes, traffic edges with request and error rates.

Edges come from Istio's ``istio_requests_total`` counters (the control plane's own metrics
registry, or Prometheus text): ``source_workload -> destination_service`` (who calls which
service) and ``destination_service -> destination_workload`` (which workloads served it). A
request is counted twice, by the client's proxy (``reporter="source"``) and by the server's
(``reporter="destination"``); as Kiali does, each edge takes the client's view when there is
one (the server's for the hop from a service to its workloads), so nothing is counted twice.

Rates are counter increases over a sliding window (``RateWindow``), like PromQL's ``rate()``.
Services and workloads without traffic yet are nodes too, joined to the workloads they select
by a dashed "selects" edge, so the topology shows before the first request.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gossamer.mesh import DOMAIN_SUFFIX

UNKNOWN = "unknown"
REQUESTS_FAMILY = "istio_requests"
REQUESTS_SAMPLE = "istio_requests_total"
WINDOW_S = 30.0


class Sample(NamedTuple):
    labels: Mapping[str, str]
    value: float


def request_samples(registry: CollectorRegistry) -> list[Sample]:
    """The istio_requests_total series of a registry (read in process, no text round trip)."""
    return [
        Sample(s.labels, s.value)
        for family in registry.collect()
        if family.name == REQUESTS_FAMILY
        for s in family.samples
        if s.name == REQUESTS_SAMPLE
    ]


def request_samples_from_text(text: str) -> list[Sample]:
    """The same from Prometheus' text exposition format (what /metrics serves)."""
    # Only the counter's own lines go to the parser: the histograms' buckets are most of the text, and parsing
    # them in Python was most of the control plane's CPU between pushes (a sample every 10 s of every proxy).
    counter_lines = "\n".join(
        line
        for line in text.split("\n")
        if line.startswith((f"{REQUESTS_SAMPLE}{{", f"{REQUESTS_SAMPLE} ", f"# TYPE {REQUESTS_SAMPLE} "))
    )
    return [
        Sample(s.labels, s.value)
        for family in text_string_to_metric_families(counter_lines)
        for s in family.samples
        if s.name == REQUESTS_SAMPLE
    ]


@dataclass(frozen=True)
class Counts:
    requests: float = 0.0
    errors: float = 0.0  # 5xx, or no response at all (code 0)
    client_errors: float = 0.0  # 4xx

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.requests + other.requests, self.errors + other.errors, self.client_errors + other.client_errors
        )

    def __sub__(self, other: Counts) -> Counts:
        # A counter never goes down; a series that vanished counts as reset (rate() does the same).
        return Counts(*(max(0.0, a - b) for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.requests, self.errors, self.client_errors)


# (reporter, edge type, source node id, target node id)
EdgeKey = tuple[str, str, str, str]


def workload_id(namespace: str, workload: str) -> str:
    return f"wl:{namespace}/{workload}"


def service_id(host: str) -> str:
    return f"svc:{host}"


def _counts(labels: Mapping[str, str], value: float) -> Counts:
    code = labels.get("response_code", "")
    error = code.startswith("5") or code == "0"
    return Counts(value, value if error else 0.0, value if code.startswith("4") else 0.0)


def edge_counters(samples: Iterable[Sample]) -> dict[EdgeKey, Counts]:
    """Counters summed per (reporter, edge): the two edge types a request makes."""
    out: dict[EdgeKey, Counts] = {}

    def add(key: EdgeKey, counts: Counts) -> None:
        out[key] = out.get(key, Counts()) + counts

    for labels, value in samples:
        reporter = labels.get("reporter", UNKNOWN)
        service = labels.get("destination_service") or UNKNOWN
        counts = _counts(labels, value)
        source = workload_id(
            labels.get("source_workload_namespace") or UNKNOWN, labels.get("source_workload") or UNKNOWN
        )
        add((reporter, "calls", source, service_id(service)), counts)
        dest_workload = labels.get("destination_workload") or UNKNOWN
        if dest_workload != UNKNOWN:
            dest = workload_id(labels.get("destination_workload_namespace") or UNKNOWN, dest_workload)
            add((reporter, "serves", service_id(service), dest), counts)
    return out


class RateWindow:
    """Counter samples over the last `window` seconds (plus one older as the base): per-second rates."""

    def __init__(self, window: float = WINDOW_S) -> None:
        self.window = window
        self._samples: deque[tuple[float, dict[EdgeKey, Counts]]] = deque()

    def observe(self, counters: dict[EdgeKey, Counts], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._samples.append((now, counters))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()

    def rates(self) -> dict[EdgeKey, Counts]:
        """Increase per second between the oldest kept sample and the newest (empty before two)."""
        if len(self._samples) < 2:
            return {}
        (t0, base), (t1, latest) = self._samples[0], self._samples[-1]
        elapsed = max(t1 - t0, 1e-9)
        return {k: Counts(*(x / elapsed for x in (v - base.get(k, Counts())).as_tuple())) for k, v in latest.items()}

    def latest(self) -> dict[EdgeKey, Counts]:
        return self._samples[-1][1] if self._samples else {}


@dataclass(frozen=True)
class ServiceInfo:
    host: str
    name: str
    namespace: str
    selector: tuple[tuple[str, str], ...] | None  # None: no selector (endpoints from elsewhere)


@dataclass(frozen=True)
class WorkloadInfo:
    name: str  # the deployment
    namespace: str
    labels: tuple[tuple[str, str], ...]
    pods: int
    ready: int
    sidecar: bool


def _pick(by_reporter: dict[str, Any], preferred: str) -> tuple[str, Any]:
    if preferred in by_reporter:
        return preferred, by_reporter[preferred]
    reporter = sorted(by_reporter)[0]
    return reporter, by_reporter[reporter]


def build_graph(
    services: Iterable[ServiceInfo],
    workloads: Iterable[WorkloadInfo],
    totals: dict[EdgeKey, Counts],
    rates: dict[EdgeKey, Counts],
) -> dict[str, Any]:
    """Nodes (with layer and order for a left-to-right layered drawing) and edges, as JSON."""
    nodes: dict[str, dict[str, Any]] = {}
    for w in workloads:
        nodes[workload_id(w.namespace, w.name)] = {
            "id": workload_id(w.namespace, w.name),
            "type": "workload",
            "name": w.name,
            "namespace": w.namespace,
            "app": dict(w.labels).get("app", ""),
            "version": dict(w.labels).get("version", ""),
            "pods": w.pods,
            "ready": w.ready,
            "sidecar": w.sidecar,
        }
    service_list = list(services)
    for s in service_list:
        nodes[service_id(s.host)] = {
            "id": service_id(s.host),
            "type": "service",
            "name": s.name,
            "namespace": s.namespace,
            "host": s.host,
        }

    # Traffic edges: one per (type, source, target), the preferred reporter's counters.
    grouped: dict[tuple[str, str, str], dict[str, tuple[Counts, Counts]]] = {}
    for (reporter, kind, src, dst), total in totals.items():
        rate = rates.get((reporter, kind, src, dst), Counts())
        grouped.setdefault((kind, src, dst), {})[reporter] = (total, rate)
    edges: list[dict[str, Any]] = []
    for (kind, src, dst), by_reporter in sorted(grouped.items()):
        reporter, (total, rate) = _pick(by_reporter, "source" if kind == "calls" else "destination")
        for node_id in (src, dst):
            if node_id not in nodes:
                nodes[node_id] = _node_from_id(node_id)
        edges.append(
            {
                "source": src,
                "target": dst,
                "type": kind,
                "reporter": reporter,
                "requests": total.requests,
                "errors": total.errors,
                "rps": round(rate.requests, 3),
                "errorRps": round(rate.errors, 3),
                "clientErrorRps": round(rate.client_errors, 3),
                "errorRatio": round(rate.errors / rate.requests, 4) if rate.requests else 0.0,
            }
        )

    # Selection edges (no traffic needed): a service to the workloads its selector picks.
    served = {(e["source"], e["target"]) for e in edges}
    for s in service_list:
        if not s.selector:
            continue
        for w in workloads_selected(s, workloads):
            pair = (service_id(s.host), workload_id(w.namespace, w.name))
            if pair not in served:
                edges.append(
                    {
                        "source": pair[0],
                        "target": pair[1],
                        "type": "selects",
                        "reporter": "",
                        "requests": 0.0,
                        "errors": 0.0,
                        "rps": 0.0,
                        "errorRps": 0.0,
                        "clientErrorRps": 0.0,
                        "errorRatio": 0.0,
                    }
                )
    layout(nodes, edges)
    return {"nodes": sorted(nodes.values(), key=lambda n: (n["layer"], n["order"])), "edges": edges}


def workloads_selected(service: ServiceInfo, workloads: Iterable[WorkloadInfo]) -> list[WorkloadInfo]:
    selector = dict(service.selector or ())
    return [
        w
        for w in workloads
        if w.namespace == service.namespace
        and selector
        and all(dict(w.labels).get(k) == v for k, v in selector.items())
    ]


def _node_from_id(node_id: str) -> dict[str, Any]:
    """A node seen only in the metrics (a ServiceEntry host, a pod gone, `unknown`)."""
    kind, _, rest = node_id.partition(":")
    if kind == "svc":
        name, _, namespace = rest.partition(".")
        return {
            "id": node_id,
            "type": "service",
            "name": name,
            "namespace": namespace.split(".")[0] if namespace.endswith("." + DOMAIN_SUFFIX) else "",
            "host": rest,
        }
    namespace, _, name = rest.partition("/")
    return {
        "id": node_id,
        "type": "workload",
        "name": name,
        "namespace": namespace,
        "app": "",
        "version": "",
        "pods": 0,
        "ready": 0,
        "sidecar": False,
    }


def layout(nodes: dict[str, dict[str, Any]], edges: list[dict[str, Any]]) -> None:
    """Set each node's `layer` (longest path from a root, cycles broken) and `order` (its row) within
    it: by the mean row of its predecessors, as near to it as the rows above allow, so that edges
    run straight and do not cross."""
    succ: dict[str, list[str]] = {n: [] for n in nodes}
    for e in edges:
        if e["source"] != e["target"]:
            succ[e["source"]].append(e["target"])
    dag, order = _acyclic(nodes, succ)
    layer = {n: 0 for n in nodes}
    for n in order:
        for t in dag[n]:
            layer[t] = max(layer[t], layer[n] + 1)
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    for n, ts in dag.items():
        for t in ts:
            preds[t].append(n)
    position: dict[str, float] = {}
    for depth in range(max(layer.values(), default=0) + 1):
        members = [n for n in nodes if layer[n] == depth]

        def key(n: str) -> tuple[float, str]:
            ps = [position[p] for p in preds[n] if p in position]
            return (sum(ps) / len(ps) if ps else float("inf"), nodes[n]["name"])

        row = -1
        for n in sorted(members, key=key):
            wanted = key(n)[0]
            row = max(row + 1, round(wanted) if wanted != float("inf") else 0)
            position[n] = row
            nodes[n]["layer"] = depth
            nodes[n]["order"] = row


def _acyclic(nodes: dict[str, dict[str, Any]], succ: dict[str, list[str]]) -> tuple[dict[str, list[str]], list[str]]:
    """(the graph without its back edges, a topological order of it): depth-first, from the nodes
    with no incoming edge first."""
    has_incoming = {t for ts in succ.values() for t in ts}
    state: dict[str, int] = {}
    dag: dict[str, list[str]] = {n: [] for n in nodes}
    order: list[str] = []  # reverse post-order: a topological order of the DAG

    def visit(start: str) -> None:
        stack: list[tuple[str, int]] = [(start, 0)]
        state[start] = 1
        while stack:
            node, i = stack.pop()
            if i < len(succ[node]):
                stack.append((node, i + 1))
                nxt = succ[node][i]
                if state.get(nxt) == 1:
                    continue  # back edge
                dag[node].append(nxt)
                if nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                order.append(node)

    for n in sorted(nodes, key=lambda n: (n in has_incoming, n)):
        if n not in state:
            visit(n)
    order.reverse()
    return dag, order
