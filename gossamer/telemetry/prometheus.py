"""A real Prometheus for the mesh (`gossamer up --prometheus`): Debian's `prometheus` binary on
127.0.0.1:9090, as its own unprivileged user, scraping every pod's :15020 /stats/prometheus and
the control plane's own metrics, the way Istio's Prometheus add-on does.

The scrape targets are files (Prometheus' file service discovery) that the control plane rewrites
when pods come and go (`update_pods`); Prometheus re-reads them by itself, no reload needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pwd
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from gossamer.mesh import MERGED_METRICS_PORT
from gossamer.telemetry.scrape import MERGED_PATH, ScrapeTarget

log = logging.getLogger(__name__)

DEFAULT_PORT = 9090
SCRAPE_INTERVAL = "5s"
RETENTION = "6h"
USER = "prometheus"  # Debian's package creates it
# Istio's Prometheus job names: pods (kubernetes-pods) and istiod (pilot).
PODS_JOB = "kubernetes-pods"
ISTIOD_JOB = "pilot"
QUERY_TIMEOUT_S = 10.0
# The labels of istio_requests_total a mesh graph needs (dashboard).
GRAPH_LABELS = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "destination_workload",
    "destination_workload_namespace",
    "response_code",
)


class PrometheusError(Exception):
    pass


def binary() -> str | None:
    return shutil.which("prometheus")


def scrape_config(directory: Path, *, interval: str = SCRAPE_INTERVAL) -> dict[str, Any]:
    def job(name: str, path: str, targets: Path) -> dict[str, Any]:
        return {
            "job_name": name,
            "scrape_interval": interval,
            "metrics_path": path,
            "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "5s"}],
        }

    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            job(PODS_JOB, MERGED_PATH, directory / "pods.json"),
            job(ISTIOD_JOB, "/metrics", directory / "istiod.json"),
        ],
    }


def pod_targets(pods: Sequence[ScrapeTarget], port: int = MERGED_METRICS_PORT) -> list[dict[str, Any]]:
    return [
        {"targets": [f"{p.ip}:{port}"], "labels": {"namespace": p.namespace, "pod": p.pod}}
        for p in sorted(pods, key=lambda p: (p.namespace, p.pod))
        if p.ip
    ]


def _write(path: Path, data: Any) -> bool:
    """Atomic write; False when the file already says that."""
    text = json.dumps(data, indent=1, sort_keys=True)
    if path.exists() and path.read_text() == text:
        return False
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, path)
    return True


class PrometheusServer:
    def __init__(self, directory: Path, *, port: int = DEFAULT_PORT) -> None:
        self.directory = directory
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self, istiod: str | None) -> None:
        """`istiod`: host:port of the control plane's /metrics (None: not scraped)."""
        exe = binary()
        if exe is None:
            raise PrometheusError("prometheus is not installed (scripts/install installs Debian's package)")
        self.directory.mkdir(parents=True, exist_ok=True)
        data = self.directory / "data"
        data.mkdir(exist_ok=True)
        self.directory.chmod(0o755)
        (self.directory / "prometheus.yml").write_text(yaml.safe_dump(scrape_config(self.directory)))
        _write(self.directory / "pods.json", [])
        _write(self.directory / "istiod.json", [{"targets": [istiod], "labels": {"app": "istiod"}}] if istiod else [])
        argv = [
            exe,
            f"--config.file={self.directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={data}",
            f"--storage.tsdb.retention.time={RETENTION}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        if os.geteuid() == 0:
            # Least privilege: Prometheus needs nothing of root's.
            try:
                user = pwd.getpwnam(USER)
            except KeyError:
                user = pwd.getpwnam("nobody")
            os.chown(data, user.pw_uid, user.pw_gid)
            argv = [
                "setpriv",
                f"--reuid={user.pw_uid}",
                f"--regid={user.pw_gid}",
                "--clear-groups",
                "--inh-caps=-all",
                *argv,
            ]
        log_file = (self.directory / "prometheus.log").open("ab")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file, cwd=self.directory
            )
        finally:
            log_file.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    def update_pods(self, pods: Sequence[ScrapeTarget]) -> None:
        if self._proc is not None:
            _write(self.directory / "pods.json", pod_targets(pods))

    async def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 10)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()
        self._proc = None
        with contextlib.suppress(OSError):
            shutil.rmtree(self.directory)

    async def ready(self) -> bool:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
                session.get(f"{self.url}/-/ready") as resp,
            ):
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant PromQL query: [{"metric": {labels}, "value": [time, "value"]}, ...]."""
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=QUERY_TIMEOUT_S)) as session,
                session.post(f"{self.url}/api/v1/query", data={"query": promql}) as resp,
            ):
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise PrometheusError(f"prometheus at {self.url}: {e}") from e
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType', 'error')}: {body.get('error', body)}")
        result: list[dict[str, Any]] = body["data"]["result"] if body["data"].get("resultType") == "vector" else []
        return result

    async def request_counters(self) -> list[tuple[dict[str, str], float]]:
        """istio_requests_total summed over pods, by the labels a mesh graph needs."""
        rows = await self.query(f"sum by ({', '.join(GRAPH_LABELS)}) (istio_requests_total)")
        return [(dict(r["metric"]), float(r["value"][1])) for r in rows]
