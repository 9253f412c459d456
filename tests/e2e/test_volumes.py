"""ConfigMaps, Secrets and volumes as Kubernetes users write them, with real pods: configMap, secret and
emptyDir volumes at their mountPath (items with modes, subPath), seen by that pod's containers only,
updated in place when the ConfigMap changes (subPath and env are not, as in Kubernetes); env from
configMapKeyRef / secretKeyRef / fieldRef and envFrom; a pod waiting for a ConfigMap it needs;
`down` removes the mount points it created. One mesh for the module (the app + curl)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.mesh import REPO, Mesh, own_mesh, wait_until

pytestmark = pytest.mark.e2e

RUN_DIR = Path("/run/gsm-e2e-volumes")
MOUNT_ROOT = "/etc/gsm-e2e-volumes"  # does not exist on the host: the runtime creates the mount points

APP = """\
import http.server, json, os, stat, urllib.parse

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        path = urllib.parse.parse_qs(url.query).get("path", [""])[0]
        code = 200
        try:
            if url.path == "/env":
                body = json.dumps(dict(os.environ)).encode()
            elif url.path == "/stat":
                body = oct(stat.S_IMODE(os.stat(path).st_mode)).encode()
            elif url.path == "/write":
                with open(path, "w") as f:
                    f.write("written")
                body = b"ok"
            else:
                with open(path, "rb") as f:
                    body = f.read()
        except OSError as e:
            code, body = 404, str(e).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("", 8080), Handler).serve_forever()
"""

MANIFEST = f"""\
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
data:
  greeting: hello
  config.yaml: |
    level: 1
---
apiVersion: v1
kind: Secret
metadata:
  name: app-secret
type: Opaque
stringData:
  password: s3cret
---
apiVersion: v1
kind: Service
metadata:
  name: volapp
spec:
  selector: {{app: volapp}}
  ports:
  - name: http
    port: 8080
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: volapp
spec:
  selector:
    matchLabels: {{app: volapp}}
  template:
    metadata:
      labels: {{app: volapp}}
    spec:
      containers:
      - name: app
        command: ["python3", "app.py"]
        ports:
        - containerPort: 8080
        readinessProbe:
          httpGet: {{path: /env, port: 8080}}
          periodSeconds: 1
        env:
        - name: GREETING
          valueFrom:
            configMapKeyRef: {{name: app-config, key: greeting}}
        - name: PASSWORD
          valueFrom:
            secretKeyRef: {{name: app-secret, key: password}}
        - name: MY_POD_NAME
          valueFrom:
            fieldRef: {{fieldPath: metadata.name}}
        - name: MY_POD_IP
          valueFrom:
            fieldRef: {{fieldPath: status.podIP}}
        envFrom:
        - prefix: CFG_
          configMapRef: {{name: app-config}}
        volumeMounts:
        - name: config
          mountPath: {MOUNT_ROOT}/config
        - name: items
          mountPath: {MOUNT_ROOT}/items
        - name: secret
          mountPath: {MOUNT_ROOT}/secret
        - name: scratch
          mountPath: {MOUNT_ROOT}/scratch
        - name: config
          mountPath: {MOUNT_ROOT}/single.yaml
          subPath: config.yaml
      volumes:
      - name: config
        configMap: {{name: app-config}}
      - name: items
        configMap:
          name: app-config
          items:
          - key: greeting
            path: msgs/hello.txt
            mode: 0444
      - name: secret
        secret: {{secretName: app-secret}}
      - name: scratch
        emptyDir: {{}}
"""

WAITING = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: waiting
spec:
  selector:
    matchLabels: {app: waiting}
  template:
    metadata:
      labels: {app: waiting}
    spec:
      containers:
      - name: app
        command: ["sleep", "3600"]
        volumeMounts:
        - name: later
          mountPath: /etc/gsm-e2e-volumes-later
      volumes:
      - name: later
        configMap: {name: created-later}
"""

LATER = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: created-later
data:
  x: "1"
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("volumes")
    (tmp / "app.py").write_text(APP)
    (tmp / "volapp.yaml").write_text(MANIFEST)
    assert not Path(MOUNT_ROOT).exists(), f"{MOUNT_ROOT} exists before the test"
    with own_mesh(RUN_DIR, tmp / "state", tmp / "volapp.yaml", REPO / "samples/curl") as m:
        yield m
    # `down` removed the mount points it created on the host
    assert not Path(MOUNT_ROOT).exists()
    assert not Path("/etc/gsm-e2e-volumes-later").exists()


def get(mesh: Mesh, path: str) -> tuple[str, str]:
    proc = mesh.exec(
        "deploy/curl",
        "curl",
        "-sS",
        "--max-time",
        "5",
        "-w",
        "\n%{http_code}",
        f"http://volapp:8080{path}",
        check=False,
    )
    body, _, code = proc.stdout.rpartition("\n")
    return code.strip(), body


def read(mesh: Mesh, path: str) -> str:
    code, body = get(mesh, f"/file?path={path}")
    assert code == "200", (path, code, body)
    return body


def test_volumes_at_their_mount_paths(mesh: Mesh) -> None:
    assert wait_until(lambda: get(mesh, "/env")[0] == "200", 30)
    assert read(mesh, f"{MOUNT_ROOT}/config/greeting") == "hello"
    assert read(mesh, f"{MOUNT_ROOT}/config/config.yaml") == "level: 1\n"
    assert read(mesh, f"{MOUNT_ROOT}/items/msgs/hello.txt") == "hello"
    assert get(mesh, f"/stat?path={MOUNT_ROOT}/items/msgs/hello.txt")[1] == "0o444"
    assert get(mesh, f"/file?path={MOUNT_ROOT}/items/greeting")[0] == "404"  # items: only what is listed
    assert read(mesh, f"{MOUNT_ROOT}/secret/password") == "s3cret"
    assert read(mesh, f"{MOUNT_ROOT}/single.yaml") == "level: 1\n"
    # configMap volumes are read-only, emptyDir is writable
    assert get(mesh, f"/write?path={MOUNT_ROOT}/config/new")[0] == "404"
    assert get(mesh, f"/write?path={MOUNT_ROOT}/scratch/new")[0] == "200"
    assert read(mesh, f"{MOUNT_ROOT}/scratch/new") == "written"


def test_env_from_configmap_secret_and_fields(mesh: Mesh) -> None:
    env = json.loads(get(mesh, "/env")[1])
    assert env["GREETING"] == "hello"
    assert env["PASSWORD"] == "s3cret"
    assert env["CFG_greeting"] == "hello"
    assert not any(k.startswith("CFG_config") for k in env)  # not a variable name: skipped
    assert env["MY_POD_NAME"].startswith("volapp-")
    ips = {p["name"]: p["ip"] for p in mesh.status()["pods"]}
    assert env["MY_POD_IP"] == ips[env["MY_POD_NAME"]]


def test_only_that_pods_containers_see_the_volumes(mesh: Mesh) -> None:
    # not the host (the mount point is an empty directory there) ...
    assert Path(f"{MOUNT_ROOT}/config").is_dir() and not any(Path(f"{MOUNT_ROOT}/config").iterdir())
    # ... and not another pod
    proc = mesh.exec("deploy/curl", "cat", f"{MOUNT_ROOT}/secret/password", check=False)
    assert proc.returncode != 0 and "s3cret" not in proc.stdout


def test_exec_runs_in_the_container_and_sees_its_volumes(mesh: Mesh) -> None:
    """`gossamer exec` enters the running container (kubectl exec): its volumes, its working directory
    (the manifest's folder), its user without capabilities."""
    out = mesh.exec("deploy/volapp", "cat", f"{MOUNT_ROOT}/secret/password", f"{MOUNT_ROOT}/config/greeting")
    assert out.stdout in ("s3crethello", "s3cretbonjour"), out.stdout
    assert mesh.exec("deploy/volapp", "sh", "-c", f"echo from-exec > {MOUNT_ROOT}/scratch/exec").returncode == 0
    assert read(mesh, f"{MOUNT_ROOT}/scratch/exec") == "from-exec\n"  # the app sees what exec wrote
    who = mesh.exec("deploy/volapp", "sh", "-c", "id -u; pwd; grep CapEff /proc/self/status").stdout.split("\n")
    assert who[0] == str(mesh.pod("deploy/volapp")["runAs"][0]["uid"]), who
    assert Path(who[1]).name.startswith("volumes"), who  # the manifest's folder (tmp_path_factory's "volumes")
    assert who[2].split() == ["CapEff:", "0000000000000000"], who


def test_configmap_change_updates_the_volume_in_place(mesh: Mesh, tmp_path: Path) -> None:
    before = json.loads(get(mesh, "/env")[1])["MY_POD_NAME"]
    changed = tmp_path / "cm.yaml"
    changed.write_text(
        MANIFEST.split("---")[0].replace("greeting: hello", "greeting: bonjour").replace("level: 1", "level: 2")
    )
    mesh.apply(changed)
    assert wait_until(lambda: get(mesh, f"/file?path={MOUNT_ROOT}/config/greeting")[1] == "bonjour", 15)
    assert read(mesh, f"{MOUNT_ROOT}/items/msgs/hello.txt") == "bonjour"
    assert read(mesh, f"{MOUNT_ROOT}/config/config.yaml") == "level: 2\n"
    assert read(mesh, f"{MOUNT_ROOT}/single.yaml") == "level: 1\n"  # subPath: not updated
    env = json.loads(get(mesh, "/env")[1])
    assert env["MY_POD_NAME"] == before  # the same pod: nothing restarted
    assert env["GREETING"] == "hello"  # env is read when the container starts


def test_pod_waits_for_a_configmap_it_needs(mesh: Mesh, tmp_path: Path) -> None:
    waiting = tmp_path / "waiting.yaml"
    waiting.write_text(WAITING)
    applied = mesh.cli("apply", "-f", str(waiting))
    analyzed = mesh.cli("analyze", str(waiting), check=False)
    for out in (applied.stdout + applied.stderr, analyzed.stdout):
        assert "ConfigMap 'created-later' not found" in out, out
        assert "waiting.yaml:" in out

    def ready() -> bool | None:
        pods = [p for p in mesh.status()["pods"] if p["name"].startswith("waiting-")]
        return pods[0]["ready"] if pods else None

    assert wait_until(lambda: ready() is False, 20)
    later = tmp_path / "later.yaml"
    later.write_text(LATER)
    mesh.apply(later)
    assert wait_until(lambda: ready() is True, 20), mesh.status()["pods"]
    mesh.delete(waiting)


BROKEN_THEN_FINE = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: broken
spec:
  selector:
    matchLabels: {{app: broken}}
  template:
    metadata:
      labels: {{app: broken}}
    spec:
      containers:
      - name: app
        command: ["sleep", "3600"]
        volumeMounts:
        - name: scratch
          mountPath: {below_a_file}
      volumes:
      - name: scratch
        emptyDir: {{}}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: after-broken
spec:
  selector:
    matchLabels: {{app: after-broken}}
  template:
    metadata:
      labels: {{app: after-broken}}
    spec:
      containers:
      - name: app
        command: ["sleep", "3600"]
"""


def test_a_pod_that_cannot_be_created_shows_why_and_stops_no_other_deployment(mesh: Mesh, tmp_path: Path) -> None:
    # The mount point would be a directory below a file: creating the pod fails (NotADirectoryError).
    (tmp_path / "a-file").write_text("not a directory")
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(BROKEN_THEN_FINE.format(below_a_file=tmp_path / "a-file" / "data"))
    mesh.apply(manifest)

    def pods() -> dict[str, dict[str, Any]]:
        items = json.loads(mesh.cli("get", "pods", "-o", "json").stdout)["items"]
        return {p["metadata"]["name"].rsplit("-", 2)[0]: p["status"] for p in items}

    # The Deployment after the broken one in the same file is reconciled all the same.
    assert wait_until(lambda: pods().get("after-broken", {}).get("phase") == "Running", 30), pods()
    assert wait_until(lambda: pods().get("broken", {}).get("reason") == "CreateContainerError", 30), pods()
    broken = pods()["broken"]
    assert broken["ip"] == "" and "Not a directory" in " ".join(broken["waiting"]), broken
    table = mesh.cli("get", "pods").stdout  # (rich cuts the column to the terminal's width)
    (row,) = [line for line in table.splitlines() if line.split()[1].startswith("broken-")]
    assert row.split()[2:4] == ["0/2", "CreateContainerErr…"] or "CreateContainerError" in row, table
    assert wait_until(lambda: get(mesh, "/env")[0] == "200", 10)  # the module's app is untouched
    mesh.delete(manifest)
    assert wait_until(lambda: not {"broken", "after-broken"} & set(pods()), 30), pods()
