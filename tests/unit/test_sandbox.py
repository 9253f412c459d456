"""Least privilege in pods: per-pod users, securityContext, the app's command line (runtime/sandbox.py)."""

from __future__ import annotations

import shutil
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

from gossamer import mesh
from gossamer.controlplane.kubernetes import deployment_spec
from gossamer.resources import Issue, Resource, parse_documents
from gossamer.resources.apps import Deployment
from gossamer.runtime import sandbox
from gossamer.runtime.iptables import istio_rules

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      securityContext: {runAsUser: 1000, runAsGroup: 3000}
      containers:
      - name: app
        command: [python3, app.py]
      - name: helper
        command: [sleep, infinity]
        securityContext: {runAsUser: 0}
"""


def parse(text: str) -> tuple[list[Resource[Any]], list[Issue]]:
    return parse_documents(textwrap.dedent(text).lstrip("\n"), "web.yaml")


def test_per_pod_users_are_distinct_and_derived_from_the_pod_ip() -> None:
    a, b = "10.244.0.5", "10.244.1.7"
    ids = {sandbox.proxy_uid(a), sandbox.proxy_uid(b), sandbox.app_uid(a), sandbox.app_uid(b), mesh.PROXY_GROUP}
    assert len(ids) == 5
    assert all(mesh.is_reserved_id(i) for i in ids)
    assert sandbox.proxy_uid(a) == sandbox.proxy_uid("10.244.0.5")  # a restarted runtime derives the same
    with pytest.raises(ValueError):
        sandbox.proxy_uid("192.168.0.5")


def test_capture_rules_exempt_only_the_pods_proxy_user() -> None:
    uid = sandbox.proxy_uid("10.244.0.9")
    rules = istio_rules(proxy_uid=uid, proxy_gid=uid)
    assert f"--uid-owner {uid} -j RETURN" in rules and f"--gid-owner {uid} -j RETURN" in rules
    assert "1337 " not in rules


def test_security_context_container_overrides_pod() -> None:
    resources, issues = parse(DEPLOYMENT)
    assert [str(i) for i in issues if i.level == "error"] == []
    assert not [i for i in issues if "securityContext" in str(i)]  # honoured now, not "ignored"
    assert isinstance(resources[0], Deployment)
    spec = deployment_spec(resources[0])
    app, helper = spec.containers
    assert (app.run_as_user, app.run_as_group) == (1000, 3000)
    assert (helper.run_as_user, helper.run_as_group) == (0, 3000)


def test_reserved_ids_and_non_root_contradiction_are_errors() -> None:
    bad = DEPLOYMENT.replace("runAsUser: 1000", f"runAsUser: {mesh.POD_ID_BASE + 5}")
    _, issues = parse(bad)
    errs = [str(i) for i in issues if i.level == "error"]
    assert len(errs) == 1 and "spec.template.spec.securityContext.runAsUser" in errs[0] and "reserved" in errs[0]
    contradiction = DEPLOYMENT.replace("runAsUser: 0}", "runAsUser: 0, runAsNonRoot: true}")
    _, issues = parse(contradiction)
    errs = [str(i) for i in issues if i.level == "error"]
    assert len(errs) == 1 and "containers[1].securityContext.runAsUser" in errs[0]


def test_app_script_drops_every_privilege() -> None:
    script = sandbox.app_script(uid=1000, gid=3000, expose=())
    assert script.splitlines()[-1] == (
        "exec setpriv --reuid 1000 --regid 3000 --clear-groups --inh-caps=-all --bounding-set=-all"
        ' --no-new-privs -- "$@"'
    )
    assert sandbox.app_script(uid=0, gid=None, expose=()).splitlines()[-1] == 'exec "$@"'


def test_private_ancestors_are_covered_and_only_the_needed_paths_shown() -> None:
    top = Path(tempfile.mkdtemp(prefix="gsm-sandbox-", dir="/tmp"))  # /tmp: traversable by all
    try:
        top.chmod(0o755)
        private = top / "private"
        (private / "python" / "lib").mkdir(parents=True)
        (private / "secret").mkdir()
        (private / "app").mkdir()
        private.chmod(0o700)
        mounts = sandbox.exposed_mounts([private / "python", private / "python" / "lib", private / "app", top])
        assert mounts == {private: [Path("app"), Path("python")]}
        script = sandbox.app_script(uid=1000, gid=None, expose=[private / "app"])
        assert f"mount -t tmpfs -o mode=0755,size=64k gsm-pod {private}" in script
        assert f"mount --no-canonicalize --rbind /proc/self/fd/3/app {private}/app" in script
    finally:
        shutil.rmtree(top)
