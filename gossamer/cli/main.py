"""The `gossamer` command line: kubectl/istioctl-shaped verbs against the running mesh."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from gossamer.cli.client import ApiClient, NotRunning
from gossamer.controlplane.paths import Paths
from gossamer.controlplane.watch import manifest_files, read_manifest
from gossamer.mesh import IngressPortMap, parse_ingress_port_map

DEFAULT_STATE_DIR = Path(os.environ.get("GOSSAMER_STATE_DIR", Path.home() / ".local/state/gossamer"))
DEFAULT_RUN_DIR = Path(os.environ.get("GOSSAMER_RUN_DIR", "/run/gossamer"))

# Piped output (scripts, grep) is not cut to 80 columns: names stay whole, as kubectl prints them.
console = Console(width=None if sys.stdout.isatty() else 250)


class CliError(Exception):
    pass


def _paths(args: argparse.Namespace) -> Paths:
    return Paths(Path(args.state_dir).resolve(), Path(args.run_dir))


def _client(args: argparse.Namespace) -> ApiClient:
    return ApiClient(_paths(args).api_socket)


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    try:
        return _client(args).request(method, path, body)
    except NotRunning as e:
        raise CliError("no mesh is running (start one with `gossamer up PATH`)") from e


def _call_ok(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """The API's answer, or a CliError carrying the API's error message."""
    status, answer = _call(args, method, path, body)
    if status != 200:
        raise CliError(answer.get("error", f"HTTP {status}"))
    return answer


def _files_payload(paths: list[str]) -> list[dict[str, str]]:
    files = []
    for p in paths:
        if p == "-":
            files.append({"name": "<stdin>", "text": sys.stdin.read()})
            continue
        path = Path(p)
        if not path.exists():
            raise CliError(f"{p}: no such file or directory")
        for f in manifest_files([path]):
            try:
                files.append({"name": str(f), "text": read_manifest(f)})
            except OSError as e:
                raise CliError(f"{f}: cannot read: {e}") from None
    return files


# -- commands ----------------------------------------------------------------
def cmd_up(args: argparse.Namespace) -> int:
    paths = _paths(args)
    for p in args.paths:
        if not Path(p).exists():
            raise CliError(f"{p}: no such file or directory")
    from gossamer.cli.up import UpOptions, detach, run_up, supervisor_alive

    if supervisor_alive(paths) is not None or (
        not paths.processes_file.exists() and ApiClient(paths.api_socket, timeout=2).alive()
    ):
        raise CliError("a mesh is already running (stop it with `gossamer down`)")
    if args.timeout < 0:
        raise CliError(f"--timeout: {args.timeout:g} is not a number of seconds (0: wait on)")
    if not 0 < args.ingress_port < 65536:
        raise CliError(f"--ingress-port: {args.ingress_port} is not a port number (1-65535)")
    if not 0 <= args.ingress_tls_port < 65536:
        raise CliError(f"--ingress-tls-port: {args.ingress_tls_port} is not a port number (1-65535, or 0: off)")
    port_map = _ingress_port_map(args)
    if not 0 <= args.metrics_port < 65536:
        raise CliError(f"--metrics-port: {args.metrics_port} is not a port number (1-65535, or 0: off)")
    if not 0 <= args.dashboard_port < 65536:
        raise CliError(f"--dashboard-port: {args.dashboard_port} is not a port number (1-65535, or 0: off)")
    from gossamer.security.settings import CertSettings

    try:
        CertSettings.parse(args.workload_cert_ttl, args.secret_grace_period_ratio)  # checked before anything starts
    except ValueError as e:
        raise CliError(str(e)) from None
    if args.detach:
        argv = [
            "--state-dir",
            str(paths.state_dir),
            "--run-dir",
            str(paths.run_dir),
            "up",
            "--ingress-port",
            str(args.ingress_port),
            "--ingress-tls-port",
            str(args.ingress_tls_port),
            *[a for gateway, host in port_map for a in ("--ingress-port-map", f"{host}:{gateway}")],
            "--metrics-port",
            str(args.metrics_port),
            "--dashboard-port",
            str(args.dashboard_port),
            *(["--egress-gateway"] if args.egress_gateway else []),
            "--workload-cert-ttl",
            args.workload_cert_ttl,
            "--secret-grace-period-ratio",
            str(args.secret_grace_period_ratio),
            *(["--namespace", args.namespace] if args.namespace else []),
            # The background `up` waits on: this process gives up after --timeout and leaves it running.
            "--timeout",
            "0",
            *(["--verbose"] if args.verbose else []),
            *(["--prometheus"] if args.prometheus else []),
            *[str(Path(p).resolve()) for p in args.paths],
        ]
        return detach(paths, argv, timeout=args.timeout)
    return run_up(
        paths,
        [Path(p).resolve() for p in args.paths],
        UpOptions(
            ingress_port=args.ingress_port,
            ingress_tls_port=args.ingress_tls_port,
            ingress_port_map=port_map,
            metrics_port=args.metrics_port,
            dashboard_port=args.dashboard_port,
            egress_gateway=args.egress_gateway,
            verbose=args.verbose,
            prometheus=args.prometheus,
            workload_cert_ttl=args.workload_cert_ttl,
            secret_grace_period_ratio=args.secret_grace_period_ratio,
            namespace=args.namespace,
            ready_timeout=args.timeout,
        ),
    )


def _ingress_port_map(args: argparse.Namespace) -> IngressPortMap:
    """`--ingress-port-map HOST:GATEWAY` (repeatable): checked before anything starts."""
    try:
        pairs = parse_ingress_port_map(args.ingress_port_map or [])
    except ValueError as e:
        raise CliError(f"--ingress-port-map: {e}") from None
    for gateway, host in pairs:
        if host in (args.ingress_port, args.ingress_tls_port):
            raise CliError(f"--ingress-port-map {host}:{gateway}: host port {host} is the ingress (TLS) port already")
    return pairs


def _log_setup(args: argparse.Namespace) -> None:
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def cmd_controlplane(args: argparse.Namespace) -> int:
    """The control plane process (started and restarted by `gossamer up`)."""
    from gossamer.controlplane.grpc_setup import use_grpc_experiments

    use_grpc_experiments()  # (before anything imports grpc)
    from gossamer.controlplane.process import run_controlplane
    from gossamer.security.settings import CertSettings

    _log_setup(args)
    certs = CertSettings.parse(args.workload_cert_ttl, args.secret_grace_period_ratio)
    return asyncio.run(
        run_controlplane(
            _paths(args),
            [Path(p) for p in args.paths],
            apply_manifests=args.apply,
            ingress_port=args.ingress_port,
            certs=certs,
            metrics_port=args.metrics_port,
            dashboard_port=args.dashboard_port,
            ingress_tls_port=args.ingress_tls_port,
            egress_gateway=args.egress_gateway,
            prometheus=args.prometheus,
            namespace=args.namespace,
        )
    )


def cmd_runtime(args: argparse.Namespace) -> int:
    """The runtime process (started and restarted by `gossamer up`)."""
    # grpc's fork handlers warn on every pod the runtime spawns; no child of ours uses grpc.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    from gossamer.runtime.daemon import run_runtime
    from gossamer.security.settings import CertSettings

    _log_setup(args)
    certs = CertSettings.parse(args.workload_cert_ttl, args.secret_grace_period_ratio)
    return asyncio.run(
        run_runtime(
            _paths(args),
            ingress_port=args.ingress_port,
            ingress_tls_port=args.ingress_tls_port,
            certs=certs,
            ingress_port_map=_ingress_port_map(args),
        )
    )


def cmd_down(args: argparse.Namespace) -> int:
    paths = _paths(args)
    from gossamer.cli.up import stop_recorded
    from gossamer.runtime.local import cleanup_leftovers

    stop_recorded(paths)
    # Whatever a crashed or killed runtime left behind, and the stored config.
    cleanup_leftovers(paths.runtime_state_dir, force=True)
    for name in ("store.db", "store.db-wal", "store.db-shm", "up.pid", "processes.json"):
        (paths.state_dir / name).unlink(missing_ok=True)
    for sock in (paths.api_socket, paths.xds_socket, paths.zipkin_socket, paths.runtime_socket):
        sock.unlink(missing_ok=True)
    print("Mesh stopped; nothing left running.")
    return 0


def _print_result(body: dict[str, Any], verb: str) -> None:
    for w in [*body.get("warnings", []), *body.get("notes", [])]:
        print(w, file=sys.stderr)
    for e in body.get("errors", []):
        print(e, file=sys.stderr)
    for c in body.get("changes", []):
        action = {"created": "created", "configured": "configured", "unchanged": "unchanged", "deleted": "deleted"}[
            c["action"]
        ]
        print(f"{c['kind'].lower()}/{c['name']} {action}")


def _wait_synced(args: argparse.Namespace, revision: int) -> int:
    status, body = _call(args, "GET", f"/v1/sync?revision={revision}&timeout={args.timeout}")
    if status != 200:
        print(
            f"error: not every proxy acknowledged revision {revision} within {args.timeout}s (see `gossamer status`)",
            file=sys.stderr,
        )
        return 1
    print(f"every proxy in sync ({body['seconds'] * 1000:.0f} ms)")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    status, body = _call(
        args,
        "POST",
        "/v1/apply",
        {"files": _files_payload(args.filename), "dryRun": args.dry_run, "namespace": args.namespace},
    )
    _print_result(body, "apply")
    if status != 200:
        return 1
    return _wait_synced(args, body["revision"]) if args.wait and not args.dry_run else 0


ANALYZE_FOUND_ISSUES = 79  # istioctl analyze's exit code when messages reach --failure-threshold


def _suppressed(message: dict[str, Any], rules: list[str]) -> bool:
    """istioctl's --suppress "CODE=RESOURCE": RESOURCE a glob over "Kind namespace/name" ("Kind name")."""
    import fnmatch

    ns = f"{message['namespace']}/" if message["namespace"] else ""
    resource = f"{message['kind']} {ns}{message['resource']}"
    for rule in rules:
        code, _, pattern = rule.partition("=")
        if code == message["code"] and fnmatch.fnmatchcase(resource, pattern):
            return True
    return False


def cmd_analyze(args: argparse.Namespace) -> int:
    """Like `istioctl analyze`: against the running mesh's config when there is one, else offline."""
    from gossamer.analyze.messages import LEVEL_RANK

    if args.list_analyzers:
        _print_analyzers()
        return 0
    _check_suppressions(args.suppress or [])
    namespace = args.namespace or "default"
    body, against = _analysis(args, namespace)
    messages = [m for m in body["messages"] if not _suppressed(m, args.suppress or [])]
    shown = [m for m in messages if LEVEL_RANK[m["level"]] >= LEVEL_RANK[args.output_threshold]]
    if args.output == "json":
        print(json.dumps(shown, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(shown, sort_keys=False), end="")
    else:
        for m in shown:
            print(m["text"])
    _print_analysis_notes(body, args.verbose)
    if not shown and args.output == "log":
        scope = "all namespaces" if args.all_namespaces else f"namespace: {namespace}"
        print(f"No validation issues found when analyzing {against} ({scope}).")
    if any(LEVEL_RANK[m["level"]] >= LEVEL_RANK[args.failure_threshold] for m in messages):
        return ANALYZE_FOUND_ISSUES
    return 0


def _print_analyzers() -> None:
    from gossamer.analyze.run import all_analyzers

    for a in sorted(all_analyzers(), key=lambda a: a.name):
        note = "" if a.default else " (runs only when named with --analyzers)"
        print(f"* {a.name}: {', '.join(a.codes)}{note}\n    {a.description}")


def _check_suppressions(rules: list[str]) -> None:
    from gossamer.analyze.messages import TYPES

    for rule in rules:
        code, sep, _ = rule.partition("=")
        if not sep:
            raise CliError(f"{rule} is not a valid suppression: use CODE=RESOURCE, e.g. 'IST0102=Namespace frod'")
        if code not in TYPES:
            print(f"warning: {code} is not an analysis code; --suppress {rule!r} has no effect", file=sys.stderr)


def _analysis(args: argparse.Namespace, namespace: str) -> tuple[dict[str, Any], str]:
    """(the analysis as the API answers it, what was analyzed): the running mesh's, else offline."""
    files = _files_payload(args.paths)
    mesh_config = None
    if args.mesh_config_file:
        path = Path(args.mesh_config_file)
        if not path.is_file():
            raise CliError(f"{path}: no such file")
        mesh_config = {"name": str(path), "text": path.read_text()}
    client = _client(args)
    if client.alive():
        status, body = client.post(
            "/v1/analyze",
            {
                "files": files,
                "namespace": namespace,
                "allNamespaces": args.all_namespaces,
                "meshConfig": mesh_config,
                "analyzers": args.analyzers,
            },
        )
        if status != 200:
            raise CliError(body.get("error") or f"analyze failed ({status})")
        return body, "the running mesh's config"
    from gossamer.analyze.session import analyze

    try:
        result = analyze(
            [(f["name"], f["text"]) for f in files],
            namespace=namespace,
            all_namespaces=args.all_namespaces,
            analyzers=args.analyzers,
            mesh_config=(mesh_config["name"], mesh_config["text"]) if mesh_config else None,
        )
    except ValueError as e:
        raise CliError(str(e)) from e
    return result.to_json(), "these files alone (no mesh is running)"


def _print_analysis_notes(body: dict[str, Any], verbose: bool) -> None:
    if verbose:  # what validation says beyond Istio's analysis (e.g. fields the local runtime ignores)
        for note in body.get("notes", []):
            print(note, file=sys.stderr)
    for problem in body.get("unreadable", []):
        print(f"note: not analyzed: {problem}", file=sys.stderr)
    not_analyzed = body.get("notAnalyzed") or {}
    if not_analyzed:
        kinds = ", ".join(f"{k} ({n})" for k, n in sorted(not_analyzed.items()))
        print(f"note: read but not analyzed (no analyzer looks at these kinds): {kinds}", file=sys.stderr)


def cmd_delete(args: argparse.Namespace) -> int:
    status, body = _call(
        args, "POST", "/v1/delete", {"files": _files_payload(args.filename), "namespace": args.namespace}
    )
    _print_result(body, "delete")
    if status != 200:
        return 1
    return _wait_synced(args, body["revision"]) if args.wait else 0


def cmd_get(args: argparse.Namespace) -> int:
    query = f"?namespace={'' if args.all_namespaces else args.namespace}"
    if args.name:
        query += f"&name={args.name}"
    body = _call_ok(args, "GET", f"/v1/resources/{args.kind}{query}")
    items = body["items"]
    if args.output == "json":
        print(json.dumps(items[0] if args.name else {"kind": "List", "items": items}, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(items[0] if args.name else {"kind": "List", "items": items}, sort_keys=False), end="")
    else:
        if not items:
            print(f"No {args.kind} found.", file=sys.stderr)
            return 0
        table = Table(box=None, pad_edge=False)
        if body["kind"] == "Pod":
            for col in ("NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "IP"):
                table.add_column(col)
            for it in items:
                st = it["status"]
                ready = (
                    f"{int(st['appReady']) + int(st['hasSidecar'] and st['proxyReady'])}/{1 + int(st['hasSidecar'])}"
                )
                table.add_row(
                    it["metadata"]["namespace"],
                    it["metadata"]["name"],
                    ready,
                    st.get("reason", st["phase"]),
                    str(st["restarts"]),
                    st["ip"],
                )
        else:
            for col in ("NAMESPACE", "NAME", "RESOURCE VERSION"):
                table.add_column(col)
            for it in items:
                m = it["metadata"]
                table.add_row(m.get("namespace", ""), m["name"], str(m.get("resourceVersion", "")))
        console.print(table)
    return 0


# Worst first: the state shown for a proxy's VHDS streams together.
_STATE_RANK = {"NACKED": 3, "STALE": 2, "NOT SENT": 1, "SYNCED": 0}


def cmd_status(args: argparse.Namespace) -> int:
    status, body = _call(args, "GET", "/v1/status")
    if args.output == "json":
        print(json.dumps(body, indent=2))
        return 0
    console.print(f"Mesh {'[green]ready[/]' if body['ready'] else '[yellow]not ready[/]'}; ingress {body['ingress']}")
    processes = Table(title="Processes", box=None, pad_edge=False)
    for col in ("PROCESS", "PID", "STATE", "UPTIME", "RESTARTS"):
        processes.add_column(col)
    for label, key in (("control plane", "controlPlane"), ("runtime", "runtime")):
        proc = body.get(key) or {}
        uptime = proc.get("uptimeSeconds")
        processes.add_row(
            label,
            str(proc.get("pid") or "-"),
            str(proc.get("state") or "-"),
            f"{uptime:.0f}s" if isinstance(uptime, (int, float)) else "-",
            str(proc.get("restarts", 0)),
        )
    console.print(processes)
    pods = Table(title="Pods", box=None, pad_edge=False)
    for col in ("NAMESPACE", "POD", "READY", "STATUS", "RESTARTS", "IP", "SIDECAR"):
        pods.add_column(col)
    for p in body["pods"]:
        pods.add_row(
            p["namespace"],
            p["name"],
            "yes" if p["ready"] else "no",
            p.get("reason") or p["phase"],
            str(p["restarts"]),
            p["ip"],
            p["proxyType"] if p["hasSidecar"] else "-",
        )
    console.print(pods)
    proxies = Table(title="Proxies", box=None, pad_edge=False)
    for col in ("PROXY", "CDS", "EDS", "LDS", "RDS", "VHDS"):
        proxies.add_column(col)
    errors = []
    for p in body["proxies"]:
        cells = []
        for t in ("cds", "eds", "lds", "rds"):
            st = p["types"].get(t)
            cells.append(st["state"] if st else "NOT SENT")
            if st and st.get("error"):
                errors.append(f"{p['nodeId']} {t.upper()} NACK: {st['error']}")
        # A sidecar's route configurations' virtual hosts: one VHDS stream each (`vhds ROUTE_CONFIG`).
        vhds = {t: st for t, st in p["types"].items() if t.startswith("vhds ")}
        cells.append(max((st["state"] for st in vhds.values()), key=lambda s: _STATE_RANK.get(s, 1), default="-"))
        for t, st in vhds.items():
            if st.get("error"):
                errors.append(f"{p['nodeId']} {t.upper()} NACK: {st['error']}")
        if p.get("translationError"):
            errors.append(f"{p['nodeId']} config not translated (keeps its last config): {p['translationError']}")
        proxies.add_row(p["nodeId"], *cells)
    console.print(proxies)
    for e in errors:
        console.print(f"[red]{e}[/]", markup=True, highlight=False)
    for group, patch_errors in (body.get("patchErrors") or {}).items():
        for e in patch_errors:
            console.print(f"[yellow]{group} EnvoyFilter not applied: {e}[/]", markup=True, highlight=False)
    return 0


def _pod(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = _call_ok(args, "GET", f"/v1/pods/{args.namespace}/{args.pod}")
    return body


def cmd_exec(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command[:1] in (["-c"], ["--container"]) and len(command) > 1:  # `exec POD -c NAME -- CMD` (kubectl's order)
        args.container, command = command[1], command[2:]
    command = command[1:] if command and command[0] == "--" else command
    if not command:
        raise CliError("exec: give a command after --, e.g. gossamer exec deploy/curl -- curl -s productpage:9080")
    from gossamer.runtime.processes import path_with_own_python
    from gossamer.runtime.sandbox import app_argv, default_exposed

    pod = _pod(args)
    # As the pod's containers run (kubectl exec): the container's user, no capabilities, and
    # `python3` is the Python running Gossamer (runtime/processes.py).
    run_as = pod.get("runAs") or []
    chosen = (
        next((r for r in run_as if r["container"] == args.container), None)
        if args.container
        else (run_as[0] if run_as else None)
    )
    if args.container and chosen is None:
        raise CliError(f"container {args.container!r} not found in pod {pod['name']}")
    from gossamer.runtime.container_exec import image_container_pid

    in_container = None
    if chosen is not None:
        # The container's running process, from the runtime (any container); else found by its image root.
        in_container = _container_pid(args, pod, chosen["container"]) or image_container_pid(
            pod["netns"], chosen["container"]
        )
    if in_container is not None:
        # Join it (its mount namespace with its volumes, root filesystem, env, cwd and user), as kubectl exec.
        argv = [sys.executable, "-m", "gossamer.runtime.container_exec", str(in_container), *command]
        os.execv(argv[0], argv)
    env = {**os.environ, "PATH": path_with_own_python(os.environ.get("PATH", os.defpath))}
    if chosen is None:  # a pod without containers (a gateway): root, as its Envoy
        argv = ["ip", "netns", "exec", pod["netns"], *command]
    else:  # not running (waiting, restarting): the pod's network, as the container would run
        argv = app_argv(pod["netns"], command, uid=chosen["uid"], gid=chosen["gid"], expose=default_exposed(Path.cwd()))
    os.execvpe(argv[0], argv, env)
    return 127


def _container_pid(args: argparse.Namespace, pod: dict[str, Any], container: str) -> int | None:
    """The pid of the container's running process, from the runtime's own socket (root only)."""
    try:
        status, body = ApiClient(_paths(args).runtime_socket, timeout=5).get(
            f"/v1/pods/{pod['namespace']}/{pod['name']}/containers"
        )
    except OSError:
        return None
    if status != 200:
        return None
    for c in body.get("containers") or []:
        if c.get("name") == container and isinstance(c.get("pid"), int):
            return int(c["pid"])
    return None


EXIT_MARKER = re.compile(r"^\[gossamer [^\]]*\] .* exited \(code [^)]*\)")


def previous_run(text: str) -> str | None:
    """The output of a container's last terminated run, up to and including the runtime's line saying
    how it ended; None if it never terminated. (The runtime appends every run to one file.)"""
    lines = text.splitlines(keepends=True)
    ends = [i for i, line in enumerate(lines) if EXIT_MARKER.match(line)]
    if not ends:
        return None
    start = ends[-2] + 1 if len(ends) > 1 else 0
    return "".join(lines[start : ends[-1] + 1])


def cmd_logs(args: argparse.Namespace) -> int:
    pod = _pod(args)
    logs = pod["logs"]
    container = args.container or next(iter(logs))
    if container not in logs:
        raise CliError(f"container {container!r} not found in pod {pod['name']} (have: {', '.join(logs)})")
    path = Path(logs[container])
    if args.previous:
        previous = previous_run(path.read_text(errors="replace")) if path.exists() else None
        if previous is None:
            raise CliError(f'previous terminated container "{container}" in pod "{pod["name"]}" not found')
        sys.stdout.write(previous)
        return 0
    if not path.exists():
        return 0
    with open(path, errors="replace") as f:
        sys.stdout.write(f.read())
        while args.follow:
            line = f.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.2)
    return 0


def cmd_proxy_config(args: argparse.Namespace) -> int:
    body = _call_ok(
        args,
        "GET",
        f"/v1/proxy-config/{args.namespace}/{args.pod}?type={args.type}" + ("&stats=1" if args.stats else ""),
    )
    if args.output == "json":
        print(json.dumps(body, indent=2))
        return 0
    if args.type == "secret":
        from gossamer.cli.describe import print_secret

        print_secret(console, body)
        return 0
    from gossamer.cli.proxyconfig import print_proxy_config

    print_proxy_config(console, body, args.type)
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    body = _call_ok(args, "GET", f"/v1/describe/{args.namespace}/{args.pod}")
    if args.output == "json":
        print(json.dumps(body, indent=2))
        return 0
    from gossamer.cli.describe import print_describe

    print_describe(console, body)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    body = _call_ok(
        args,
        "POST",
        "/v1/explain",
        {
            "namespace": args.namespace,
            "ref": args.pod,
            "url": args.url,
            "method": args.method,
            "headers": args.header or [],
            "inbound": args.inbound,
        },
    )
    if args.output == "json":
        print(json.dumps(body, indent=2))
        return 0
    from gossamer.cli.explain import print_explanation

    print_explanation(console, body)
    return 0


REQUEST_RATES = (
    "sum by (source_workload, source_workload_namespace, destination_workload, "
    'destination_workload_namespace) (rate(istio_requests_total{reporter="source"}[1m]))'
)


def cmd_metrics(args: argparse.Namespace) -> int:
    if args.query or args.requests:
        return _metrics_query(args, args.query or REQUEST_RATES, table=not args.query)
    try:
        status, text = _client(args).get_text("/metrics")
    except NotRunning as e:
        raise CliError("no mesh is running (start one with `gossamer up PATH`)") from e
    if status != 200:
        raise CliError(f"HTTP {status}")
    if args.filter:
        # Keep the families whose name contains FILTER (with their HELP and TYPE lines).
        keep = False
        lines = []
        for line in text.splitlines():
            if line.startswith(("# HELP ", "# TYPE ")):
                keep = args.filter in line.split()[2]
            if keep:
                lines.append(line)
        text = "\n".join(lines) + ("\n" if lines else "")
    sys.stdout.write(text)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    status, body = _call(args, "GET", "/v1/ready")
    if not body.get("dashboard"):
        raise CliError("the dashboard is off (start the mesh with `gossamer up --dashboard-port N`)")
    print(body["dashboard"])
    return 0


def _metrics_query(args: argparse.Namespace, promql: str, *, table: bool) -> int:
    try:
        status, body = _client(args).post("/v1/metrics/query", {"query": promql})
    except NotRunning as e:
        raise CliError("no mesh is running (start one with `gossamer up PATH`)") from e
    if status != 200:
        raise CliError(str(body.get("error") if isinstance(body, dict) else body))
    rows = sorted(body["result"], key=lambda r: sorted(r["metric"].items()))
    if table:
        print(f"{'SOURCE':40s} {'DESTINATION':40s} {'REQ/S':>8s}")
        for r in rows:
            m = r["metric"]
            source = f"{m.get('source_workload', '?')}.{m.get('source_workload_namespace', '?')}"
            dest = f"{m.get('destination_workload', '?')}.{m.get('destination_workload_namespace', '?')}"
            print(f"{source:40s} {dest:40s} {float(r['value'][1]):8.2f}")
        return 0
    for r in rows:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(r["metric"].items()))
        print(f"{{{labels}}} {r['value'][1]}")
    return 0


def cmd_traces(args: argparse.Namespace) -> int:
    from urllib.parse import urlencode

    query: dict[str, str] = {"limit": str(args.limit)}
    if args.service:
        query["service"] = args.service
    if args.trace:
        query = {"trace": args.trace}
    status, body = _call(args, "GET", f"/v1/traces?{urlencode(query)}")
    if status != 200:
        raise CliError(body.get("error", f"HTTP {status}") if isinstance(body, dict) else f"HTTP {status}")
    if args.output == "json":
        print(json.dumps(body["traces"], indent=2))
        return 0
    from gossamer.cli.traces import print_traces

    print_traces(body)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gossamer", description="A service mesh with Istio's config language.")
    parser.add_argument("--state-dir", default=str(DEFAULT_STATE_DIR), help="durable state (store, logs)")
    parser.add_argument("--run-dir", default=str(DEFAULT_RUN_DIR), help="unix sockets")
    sub = parser.add_subparsers(dest="command_name", required=True)

    p = sub.add_parser("up", help="start the control plane and the local runtime with these manifests")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--detach", "-d", action="store_true", help="return once the mesh is ready")
    p.add_argument(
        "-n",
        "--namespace",
        help="the namespace of documents that name none (as kubectl apply -n), also when an edit is re-applied",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="when the mesh is not ready after this long, say which pods are not ready and why and exit 1: "
        "with --detach the mesh keeps running, without it the mesh is stopped (0: wait on)",
    )
    p.add_argument("--ingress-port", type=int, default=8080)
    p.add_argument(
        "--ingress-tls-port",
        type=int,
        default=8443,
        help="serve the ingress gateway's TLS servers (443/8443) on 127.0.0.1:PORT (0: off)",
    )
    p.add_argument(
        "--ingress-port-map",
        action="append",
        metavar="HOST:GATEWAY",
        help="serve the ingress gateway's TCP or TLS-passthrough server on GATEWAY (the Gateway's port "
        "number) on 127.0.0.1:HOST instead of 127.0.0.1:GATEWAY, e.g. 31401:31400 (repeatable)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=15014,
        help="serve Istio's metrics for Prometheus on 127.0.0.1:PORT/metrics (0: off)",
    )
    p.add_argument(
        "--dashboard-port", type=int, default=20001, help="serve the dashboard on http://127.0.0.1:PORT/ (0: off)"
    )
    p.add_argument(
        "--prometheus",
        action="store_true",
        help="run Prometheus on 127.0.0.1:9090, scraping every pod's :15020 and the control plane",
    )
    p.add_argument(
        "--egress-gateway",
        action="store_true",
        help="also run Istio's egress gateway, istio-system/istio-egressgateway (istio: egressgateway)",
    )
    p.add_argument(
        "--workload-cert-ttl",
        default="24h",
        metavar="DURATION",
        help="lifetime of workload certificates (Istio's DEFAULT_WORKLOAD_CERT_TTL), e.g. 45s, 1h",
    )
    p.add_argument(
        "--secret-grace-period-ratio",
        type=float,
        default=0.2,
        metavar="RATIO",
        help="agents renew a certificate when this share of its lifetime is left (Istio's SECRET_GRACE_PERIOD_RATIO)",
    )
    p.add_argument("--verbose", "-v", action="store_true")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="stop everything and remove what the mesh created")
    p.set_defaults(func=cmd_down)

    # The two processes `up` supervises (not for direct use).
    p = sub.add_parser("controlplane")
    p.add_argument("paths", nargs="*", metavar="PATH")
    p.add_argument("--apply", action="store_true", help="apply PATHs first (a fresh start; not on a restart)")
    p.add_argument("--namespace", help="the namespace of PATHs' documents that name none")
    p.add_argument("--ingress-port", type=int, default=8080)
    p.add_argument("--ingress-tls-port", type=int, default=8443)
    p.add_argument("--metrics-port", type=int, default=0)
    p.add_argument("--dashboard-port", type=int, default=0)
    p.add_argument("--egress-gateway", action="store_true")
    p.add_argument("--prometheus", action="store_true")
    p.add_argument("--workload-cert-ttl", default="24h")
    p.add_argument("--secret-grace-period-ratio", type=float, default=0.2)
    p.add_argument("--verbose", "-v", action="store_true")
    p.set_defaults(func=cmd_controlplane)

    p = sub.add_parser("runtime")
    p.add_argument("--ingress-port", type=int, default=8080)
    p.add_argument("--ingress-tls-port", type=int, default=8443)
    p.add_argument("--ingress-port-map", action="append")
    p.add_argument("--workload-cert-ttl", default="24h")
    p.add_argument("--secret-grace-period-ratio", type=float, default=0.2)
    p.add_argument("--verbose", "-v", action="store_true")
    p.set_defaults(func=cmd_runtime)

    for name, func, text in (("apply", cmd_apply, "validate, then store"), ("delete", cmd_delete, "delete")):
        p = sub.add_parser(name, help=f"{text} the resources in these files")
        p.add_argument("-f", "--filename", action="append", required=True)
        p.add_argument("-n", "--namespace", help="the namespace of objects that name none (as kubectl's -n)")
        if name == "apply":
            p.add_argument("--dry-run", action="store_true", help="validate only")
        p.add_argument("--wait", action="store_true", help="return once every proxy has acknowledged the change")
        p.add_argument("--timeout", type=float, default=10.0, help="seconds --wait waits")
        p.set_defaults(func=func)

    p = sub.add_parser(
        "analyze",
        help="Istio's config analyzers over files, cluster dumps or the running mesh, "
        "like istioctl analyze (changes nothing)",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or folders (- for stdin); none: the mesh's config")
    p.add_argument(
        "-n",
        "--namespace",
        default=None,
        help="namespace of objects that name none, and whose messages are shown (default: default)",
    )
    p.add_argument("-A", "--all-namespaces", action="store_true", help="show messages for every namespace")
    p.add_argument(
        "--meshConfigFile",
        dest="mesh_config_file",
        metavar="FILE",
        help="mesh config (Istio MeshConfig YAML) to analyze with, instead of the istio ConfigMap's",
    )
    levels = ["Info", "Warning", "Error"]
    p.add_argument(
        "--failure-threshold",
        choices=levels,
        default="Error",
        help=f"exit {ANALYZE_FOUND_ISSUES} when a message is at least this level",
    )
    p.add_argument("--output-threshold", choices=levels, default="Info", help="print messages of at least this level")
    p.add_argument("-o", "--output", choices=["log", "json", "yaml"], default="log")
    p.add_argument(
        "--analyzers",
        type=lambda v: [a for a in v.split(",") if a],
        default=None,
        help="comma-separated analyzer names to run (default: istioctl's set; see --list-analyzers)",
    )
    p.add_argument(
        "-S",
        "--suppress",
        action="append",
        metavar="CODE=RESOURCE",
        help='leave out messages CODE about RESOURCE, a glob over "Kind namespace/name" (repeatable)',
    )
    p.add_argument("-L", "--list-analyzers", action="store_true", help="list the analyzers and their codes")
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print validation notes that are not analysis messages (to stderr)",
    )
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("get", help="list resources (virtualservices, vs, pods, svc, ...)")
    p.add_argument("kind")
    p.add_argument("name", nargs="?")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p.add_argument("-o", "--output", choices=["yaml", "json", "table"], default="table")
    p.set_defaults(func=cmd_get)

    p = sub.add_parser("status", help="pods and proxies (synced / stale / NACKed)")
    p.add_argument("-o", "--output", choices=["json", "table"], default="table")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "exec",
        help="run a command in a pod, as its container's user (inside the container's image when it runs one)",
    )
    p.add_argument("pod", metavar="POD|deploy/NAME")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("-c", "--container", help="whose user to run as (default: the first container)")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser("logs", help="an app's or its sidecar's output")
    p.add_argument("pod", metavar="POD|deploy/NAME")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("-c", "--container")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-p", "--previous", action="store_true", help="the output of the last terminated run")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("proxy-config", help="what a proxy was sent, like istioctl proxy-config")
    p.add_argument("type", choices=["listeners", "routes", "clusters", "endpoints", "secret", "all"])
    p.add_argument("pod", metavar="POD|deploy/NAME")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("-o", "--output", choices=["json", "table"], default="table")
    p.add_argument("--stats", action="store_true", help="include Envoy's live stats")
    p.set_defaults(func=cmd_proxy_config)

    p = sub.add_parser("describe", help="the config that applies to a pod, like istioctl x describe pod")
    p.add_argument("pod", metavar="POD|deploy/NAME")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("-o", "--output", choices=["json", "text"], default="text")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("explain", help="where a request from this pod goes on its proxy's config, and why")
    p.add_argument("pod", metavar="POD|deploy/NAME")
    p.add_argument("url", metavar="URL", help="e.g. http://reviews:9080/reviews/0")
    p.add_argument("-H", "--header", action="append", metavar="'Name: value'")
    p.add_argument("-X", "--request", dest="method", default="GET", metavar="METHOD")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("--inbound", action="store_true", help="a request arriving at the pod (its inbound listener)")
    p.add_argument("-o", "--output", choices=["json", "text"], default="text")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("metrics", help="Istio's standard metrics (istio_requests_total, ...), Prometheus text")
    p.add_argument("--filter", metavar="NAME", help="only the metric families whose name contains NAME")
    p.add_argument("--query", metavar="PROMQL", help="a PromQL query to the mesh's Prometheus (`up --prometheus`)")
    p.add_argument(
        "--requests",
        action="store_true",
        help="request rates by source and destination workload over the last minute (Prometheus)",
    )
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("traces", help="recent traces (spans every proxy reports), as span trees")
    p.add_argument("--service", metavar="NAME", help="only traces with a span of this service (app or app.ns)")
    p.add_argument("--limit", type=int, default=5, metavar="N", help="at most N traces, most recent first")
    p.add_argument("--trace", metavar="ID", help="one trace by its id")
    p.add_argument("-o", "--output", choices=["json", "text"], default="text")
    p.set_defaults(func=cmd_traces)

    p = sub.add_parser("dashboard", help="the dashboard's URL (graph, workloads, config; `up --dashboard-port`)")
    p.set_defaults(func=cmd_dashboard)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
