"""Images from OCI layouts with real skopeo and umoci: cache, pull policy, config, unpack, user lookup."""

from __future__ import annotations

from pathlib import Path

import pytest

from gossamer.runtime.images import (
    ImageCache,
    ImageConfig,
    ImageError,
    image_env,
    normalize_reference,
    resolve_user,
    skopeo_source,
)
from tests.support.images import build_busybox_image, tools_missing

needs_tools = pytest.mark.skipif(tools_missing() is not None, reason=str(tools_missing()))


def test_registry_references_are_normalized_as_docker_does() -> None:
    assert normalize_reference("nginx") == "docker.io/library/nginx:latest"
    assert normalize_reference("cncamp/httpserver:v1.0-metrics") == "docker.io/cncamp/httpserver:v1.0-metrics"
    assert normalize_reference("quay.io/x/y") == "quay.io/x/y:latest"
    assert normalize_reference("localhost:5000/y:1") == "localhost:5000/y:1"
    assert normalize_reference("a/b@sha256:00") == "docker.io/a/b@sha256:00"


def test_local_sources_are_taken_from_the_manifest_folder(tmp_path: Path) -> None:
    assert skopeo_source("oci:img:v1", tmp_path) == f"oci:{tmp_path / 'img'}:v1"
    assert skopeo_source("docker-archive:/x/y.tar", tmp_path) == "docker-archive:/x/y.tar"
    assert skopeo_source("cncamp/httpserver:v1", None) == "docker://docker.io/cncamp/httpserver:v1"


def test_command_and_args_override_as_kubernetes_does() -> None:
    cfg = ImageConfig(entrypoint=("/bin/httpd",), cmd=("-f", "-p", "80"))
    assert cfg.argv([], []) == ["/bin/httpd", "-f", "-p", "80"]
    assert cfg.argv([], ["-p", "8080"]) == ["/bin/httpd", "-p", "8080"]
    assert cfg.argv(["/bin/sh", "-c"], ["echo hi"]) == ["/bin/sh", "-c", "echo hi"]
    assert cfg.argv(["/bin/true"], []) == ["/bin/true"]


def test_container_env_wins_over_the_image_env() -> None:
    env = image_env(ImageConfig(env=(("A", "image"), ("B", "image"))), [("B", "pod")])
    assert env["A"] == "image" and env["B"] == "pod" and env["PATH"]


@needs_tools
def test_image_is_cached_config_read_and_unpacked(tmp_path: Path) -> None:
    ref = build_busybox_image(
        tmp_path / "layout",
        "v1",
        entrypoint=["/bin/httpd"],
        cmd=["-f", "-p", "80"],
        env={"GREETING": "hi"},
        workdir="/www",
        user="app",
        passwd="root:x:0:0::/root:/bin/sh\napp:x:4242:4343::/home:/bin/sh\n",
        files={"/www/index.html": "hello\n"},
    )
    cache = ImageCache(tmp_path / "cache")
    with pytest.raises(ImageError, match="Never"):
        cache.ensure(ref, "Never")
    image = cache.ensure(ref)
    assert image.digest.startswith("sha256:")
    assert cache.ensure(ref, "Never") == image  # now present: no pull needed
    cfg = cache.config(image)
    assert cfg.entrypoint == ("/bin/httpd",) and cfg.cmd == ("-f", "-p", "80")
    assert dict(cfg.env)["GREETING"] == "hi" and cfg.working_dir == "/www" and cfg.user == "app"
    rootfs = cache.unpack(image, tmp_path / "bundle")
    assert (rootfs / "www" / "index.html").read_text() == "hello\n"
    assert resolve_user(rootfs, cfg.user) == (4242, 4343)
    assert resolve_user(rootfs, "10:20") == (10, 20)
    assert resolve_user(rootfs, "") == (None, None)
    with pytest.raises(ImageError, match="nobody"):
        resolve_user(rootfs, "nobody")


@needs_tools
def test_an_image_that_cannot_be_obtained_says_why(tmp_path: Path) -> None:
    cache = ImageCache(tmp_path / "cache")
    with pytest.raises(ImageError) as err:
        cache.ensure(f"oci:{tmp_path / 'missing'}:v1")
    assert str(err.value)
    assert cache.cached(f"oci:{tmp_path / 'missing'}:v1") is None


def test_a_failed_pull_shows_err_image_pull_then_image_pull_back_off_as_kubectl_does() -> None:
    from gossamer.runtime.image_containers import backing_off, next_pull_delay, pull_failed
    from gossamer.runtime.types import PodStatus

    def status(*waiting: str) -> PodStatus:
        return PodStatus(
            name="web-1",
            namespace="default",
            deployment="web",
            ip="10.244.0.9",
            labels=(),
            service_account="default",
            has_sidecar=True,
            proxy_type="sidecar",
            phase="Running",
            app_ready=False,
            proxy_ready=True,
            waiting=waiting,
        )

    failed = pull_failed("web", "cncamp/httpserver:v1.0-metrics", "no such host")
    assert failed == "container web: ErrImagePull: cannot pull cncamp/httpserver:v1.0-metrics: no such host"
    assert status(failed).reason == "ErrImagePull"
    waiting = backing_off(failed, 20)
    assert waiting == (
        "container web: ImagePullBackOff: back-off 20s before pulling again "
        "(cannot pull cncamp/httpserver:v1.0-metrics: no such host)"
    )
    assert status(waiting).reason == "ImagePullBackOff"
    # A reference the pod waits for is not an image problem and is left as it is.
    missing = "volume config: ConfigMap 'cfg' not found"
    assert backing_off(missing, 20) == missing and status(missing).reason == "ContainerCreating"
    # kubelet's back-off: 10 s doubling, at most 5 minutes.
    delays = [10.0]
    for _ in range(7):
        delays.append(next_pull_delay(delays[-1]))
    assert delays == [10, 20, 40, 80, 160, 300, 300, 300]


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: script
        image: ignored-for-commands
        command: ["python3", "-m", "http.server"]
      - name: web
        image: IMAGE
        imagePullPolicy: POLICY
"""


def _deployment_issues(tmp_path: Path, image: str, policy: str = "IfNotPresent") -> list[str]:
    from gossamer.controlplane.images import image_issues
    from gossamer.resources.loader import parse_documents

    path = tmp_path / "web.yaml"
    text = DEPLOYMENT.replace("IMAGE", image).replace("POLICY", policy)
    path.write_text(text)
    resources, problems = parse_documents(text, str(path))
    assert not [p for p in problems if p.level == "error"]
    return [str(i) for i in image_issues(resources, ImageCache(tmp_path / "cache"))]


@needs_tools
def test_apply_pulls_images_relative_to_the_manifest(tmp_path: Path) -> None:
    build_busybox_image(tmp_path / "layout", "v1", entrypoint=["/bin/sh"])
    assert _deployment_issues(tmp_path, "oci:layout:v1") == []
    assert _deployment_issues(tmp_path, "oci:layout:v1", "Never") == []  # cached by the first apply


@needs_tools
def test_apply_names_the_image_field_that_cannot_be_pulled(tmp_path: Path) -> None:
    (issue,) = _deployment_issues(tmp_path, "oci:nowhere:v1")
    assert issue.startswith(
        f"{tmp_path / 'web.yaml'}:17: Deployment/web: spec.template.spec.containers[1].image: "
        "cannot pull oci:nowhere:v1: "
    )
    (issue,) = _deployment_issues(tmp_path, "gossamer/never-pulled:v1", "Never")
    assert issue.endswith("cannot pull gossamer/never-pulled:v1: image not present and imagePullPolicy is Never")
