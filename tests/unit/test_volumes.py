"""Pod volumes and env references (runtime/volumes.py, controlplane/kubernetes.py): what the kubelet
would write and set, from manifests; the mount script; validation with file:line."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from gossamer.controlplane.kubernetes import deployment_spec
from gossamer.resources.apps import Deployment
from gossamer.runtime import volumes
from gossamer.runtime.state import StateRecord
from gossamer.runtime.types import DeploymentSpec
from tests.support.offline import snapshot_from_yaml

MANIFEST = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data:
  greeting: hello
  nested.txt: inner
binaryData:
  blob: AAEC
---
apiVersion: v1
kind: Secret
metadata: {name: sec}
data:
  password: czNjcmV0
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata:
      labels: {app: app, tier: web}
      annotations: {team: blue}
    spec:
      containers:
      - name: c
        command: ["sleep", "1"]
        env:
        - {name: PLAIN, value: "1"}
        - name: G
          valueFrom: {configMapKeyRef: {name: cfg, key: greeting}}
        - name: P
          valueFrom: {secretKeyRef: {name: sec, key: password}}
        - name: OPT
          valueFrom: {configMapKeyRef: {name: nope, key: x, optional: true}}
        - name: TIER
          valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}
        - name: IP
          valueFrom: {fieldRef: {fieldPath: status.podIP}}
        envFrom:
        - configMapRef: {name: cfg}
          prefix: C_
        - secretRef: {name: sec}
        volumeMounts:
        - {name: all, mountPath: /etc/all}
        - {name: some, mountPath: /etc/some, readOnly: false}
        - {name: s, mountPath: /etc/s}
        - {name: tmp, mountPath: /scratch}
        - {name: all, mountPath: /etc/one.txt, subPath: greeting}
      volumes:
      - name: all
        configMap: {name: cfg}
      - name: some
        configMap:
          name: cfg
          defaultMode: 0600
          items:
          - {key: greeting, path: a/b.txt, mode: 0400}
          - {key: nested.txt, path: c.txt}
      - name: s
        secret: {secretName: sec}
      - name: tmp
        emptyDir: {}
"""


def spec_of(text: str) -> DeploymentSpec:
    snapshot = snapshot_from_yaml(text)
    return deployment_spec(next(d for d in snapshot.of_kind(Deployment) if d.metadata.name == "app"), snapshot)


def test_projection_items_modes_binary() -> None:
    spec = spec_of(MANIFEST)
    sources = volumes._sources(spec)
    by_name = {v.name: v for v in spec.volumes}
    files, missing = volumes.projected_files(by_name["all"], sources)
    assert missing is None
    assert files == {"greeting": (b"hello", 0o644), "nested.txt": (b"inner", 0o644), "blob": (b"\0\1\2", 0o644)}
    files, _ = volumes.projected_files(by_name["some"], sources)
    assert files == {"a/b.txt": (b"hello", 0o400), "c.txt": (b"inner", 0o600)}
    files, _ = volumes.projected_files(by_name["s"], sources)
    assert files == {"password": (b"s3cret", 0o644)}


def test_atomic_layout_and_update(tmp_path: Path) -> None:
    spec = spec_of(MANIFEST)
    pv = volumes.PodVolumes(tmp_path / "vols", spec)
    assert pv.prepare() == []
    some = tmp_path / "vols/some"
    assert (some / "a/b.txt").read_text() == "hello"
    assert os.readlink(some / "a") == "..data/a" and (some / "..data").is_symlink()
    assert oct((some / "a/b.txt").stat().st_mode & 0o777) == "0o400"
    first = os.readlink(some / "..data")
    # new content, same template: a new timestamped dir, `..data` swapped, the old one gone
    updated = spec_of(MANIFEST.replace("greeting: hello", "greeting: bonjour"))
    assert updated.template_hash == spec.template_hash
    assert pv.refresh(updated)
    assert (some / "a/b.txt").read_text() == "bonjour"
    assert os.readlink(some / "..data") != first and not (some / first).exists()
    assert not pv.refresh(updated)  # nothing changed: nothing written
    # a key that is gone loses its top-level link
    fewer = spec_of(MANIFEST.replace("  nested.txt: inner\n", ""))
    pv.refresh(fewer)
    assert not (tmp_path / "vols/all/nested.txt").exists() and not (tmp_path / "vols/all/nested.txt").is_symlink()
    assert (tmp_path / "vols/tmp").stat().st_mode & 0o777 == 0o777


def test_mounts_readonly_subpath_and_script(tmp_path: Path) -> None:
    spec = spec_of(MANIFEST)
    pv = volumes.PodVolumes(tmp_path / "vols", spec)
    pv.prepare()
    mounts = pv.mounts(spec.containers[0])
    assert mounts == [
        (str(tmp_path / "vols/all"), "/etc/all", True),
        (str(tmp_path / "vols/some"), "/etc/some", True),  # configMap volumes are always read-only
        (str(tmp_path / "vols/s"), "/etc/s", True),
        (str(tmp_path / "vols/tmp"), "/scratch", False),
        (str(tmp_path / "vols/all/greeting"), "/etc/one.txt", True),
    ]
    argv = volumes.with_mounts(["ip", "netns", "exec", "gsm-x", "sleep", "1"], "gsm-x", mounts)
    assert argv[:6] == ["ip", "netns", "exec", "gsm-x", "sh", "-c"] and argv[-3:] == ["gsm-volumes", "sleep", "1"]
    assert "mount --no-canonicalize -o remount,bind,ro /etc/all" in argv[6]
    assert "remount,bind,ro /scratch" not in argv[6]


def test_env_resolution_order_and_fields() -> None:
    spec = spec_of(MANIFEST)
    fields = volumes.pod_fields(
        name="app-x", namespace="default", ip="10.244.0.9", service_account="default", uid="abc"
    )
    env = volumes.container_env(spec.containers[0], spec, fields)
    assert env["PLAIN"] == "1" and env["G"] == "hello" and env["P"] == "s3cret"
    assert env["C_greeting"] == "hello" and env["password"] == "s3cret"
    assert env["TIER"] == "web" and env["IP"] == "10.244.0.9"
    assert "OPT" not in env and "C_blob" in env and "C_nested.txt" not in env


def test_missing_references_keep_containers_waiting(tmp_path: Path) -> None:
    text = MANIFEST.replace("secretName: sec", "secretName: absent").replace("key: greeting}", "key: nokey}")
    spec = spec_of(text)
    pv = volumes.PodVolumes(tmp_path / "vols", spec)
    waiting = pv.prepare()
    assert "volume 's': Secret 'absent' not found" in waiting
    assert "container 'c': env G: ConfigMap 'cfg' has no key 'nokey'" in waiting


def test_secret_content_is_not_in_the_template() -> None:
    spec = spec_of(MANIFEST)
    other = spec_of(MANIFEST.replace("czNjcmV0", base64.b64encode(b"other").decode()))
    assert spec.template_hash == other.template_hash and spec.sources != other.sources


def test_mountpoints_recorded_and_removed(tmp_path: Path) -> None:
    record = StateRecord(tmp_path / "state")
    record.claim()
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    (src_dir / "f").write_text("x")
    target = tmp_path / "host/a/b"
    volumes.ensure_mountpoints(
        [(str(src_dir), str(target), True), (str(src_dir / "f"), str(tmp_path / "host/f"), True)], record
    )
    assert target.is_dir() and (tmp_path / "host/f").is_file()
    assert record.data["mountpoints"] == [
        str(tmp_path / "host"),
        str(tmp_path / "host/a"),
        str(target),
        str(tmp_path / "host/f"),
    ]
    volumes.cleanup_mountpoints(record.data["mountpoints"])
    assert not (tmp_path / "host").exists()


@pytest.mark.parametrize("mount", ["nope", "rel/path"])
def test_validation_reports_bad_mounts_with_lines(mount: str) -> None:
    from gossamer.resources.loader import parse_documents

    if mount == "nope":
        text = MANIFEST.replace("{name: tmp, mountPath: /scratch}", "{name: nope, mountPath: /scratch}")
        want = "volumeMounts[3].name: volume 'nope' is not one of the pod's volumes"
    else:
        text = MANIFEST.replace("mountPath: /scratch", "mountPath: scratch")
        want = "volumeMounts[3].mountPath: must be an absolute path"
    _, issues = parse_documents(text, "app.yaml")
    errors = [str(i) for i in issues if i.level == "error"]
    line = next(
        i for i, t in enumerate(text.splitlines(), 1) if "{name: nope, mountPath" in t or "mountPath: scratch" in t
    )
    assert any(
        e.startswith(f"app.yaml:{line}: Deployment/app: spec.template.spec.containers[0].{want}") for e in errors
    ), errors


def test_a_mount_point_in_use_in_another_namespace_is_kept(tmp_path: Path) -> None:
    """A runtime restarted next to running pods must not remove (and so detach) their mount points."""
    import shutil
    import subprocess
    import time

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1)")
    source, target = tmp_path / "src", tmp_path / "target"
    source.mkdir()
    target.mkdir()
    holder = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", f"mount --bind {source} {target} && exec sleep 30"]
    )
    try:
        deadline = time.monotonic() + 5
        while str(target) not in volumes.mounted_anywhere() and time.monotonic() < deadline:
            time.sleep(0.05)
        volumes.cleanup_mountpoints([str(target)])
        assert target.is_dir()
    finally:
        holder.kill()
        holder.wait()
    volumes.cleanup_mountpoints([str(target)])
    assert not target.exists()
