"""The rate limit service (gossamer/ratelimit): the reference service's configuration format, and the
gRPC service answering Envoy's RateLimitService calls with its counters in a real Redis (Debian's
redis-server on a loopback port of its own), called over real gRPC."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from gossamer.ratelimit.__main__ import ConfigWatcher, config_files
from gossamer.ratelimit.config import ConfigError, parse_files
from gossamer.ratelimit.redis import Redis
from gossamer.ratelimit.service import HeaderNames, RateLimiter, RateLimitServicer

DOCS_CONFIG = """\
domain: ratelimit
descriptors:
  - key: PATH
    value: "/productpage"
    rate_limit:
      unit: minute
      requests_per_unit: 1
  - key: PATH
    value: "api"
    rate_limit:
      unit: minute
      requests_per_unit: 2
  - key: PATH
    rate_limit:
      unit: minute
      requests_per_unit: 100
"""

NESTED = """\
domain: nested
descriptors:
  - key: user
    descriptors:
      - key: path
        value: /admin
        rate_limit: {unit: second, requests_per_unit: 2}
      - key: path
        rate_limit: {unit: hour, requests_per_unit: 50}
  - key: client
    value: "bot-*"
    rate_limit: {unit: day, requests_per_unit: 5}
  - key: client
    value: free
    rate_limit: {unlimited: true}
  - key: shadow
    rate_limit: {unit: minute, requests_per_unit: 1}
    shadow_mode: true
  - key: detail
    detailed_metric: true
    rate_limit: {unit: minute, requests_per_unit: 1}
"""


def test_docs_configuration_lookup() -> None:
    config = parse_files([("config.yaml", DOCS_CONFIG)])
    page = config.limit_for("ratelimit", [("PATH", "/productpage")])
    assert page is not None and (page.requests_per_unit, page.unit) == (1, "MINUTE")
    api = config.limit_for("ratelimit", [("PATH", "api")])
    assert api is not None and api.requests_per_unit == 2
    other = config.limit_for("ratelimit", [("PATH", "/details")])
    assert other is not None and other.requests_per_unit == 100 and other.stat_key == "ratelimit.PATH"
    assert config.limit_for("ratelimit", [("HOST", "x")]) is None
    assert config.limit_for("other-domain", [("PATH", "/productpage")]) is None
    # more entries than the tree is deep: no limit (the reference's lookup)
    assert config.limit_for("ratelimit", [("PATH", "/productpage"), ("x", "y")]) is None


def test_nested_wildcard_unlimited_lookup() -> None:
    config = parse_files([("nested.yaml", NESTED)])
    admin = config.limit_for("nested", [("user", "alice"), ("path", "/admin")])
    assert admin is not None and (admin.requests_per_unit, admin.unit) == (2, "SECOND")
    assert admin.stat_key == "nested.user.path_/admin"
    other = config.limit_for("nested", [("user", "alice"), ("path", "/x")])
    assert other is not None and other.unit == "HOUR"
    assert config.limit_for("nested", [("user", "alice")]) is None  # the user node itself has no limit
    bot = config.limit_for("nested", [("client", "bot-42")])
    assert bot is not None and bot.unit == "DAY"
    free = config.limit_for("nested", [("client", "free")])
    assert free is not None and free.unlimited
    assert config.limit_for("nested", [("client", "human")]) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("descriptors: []\n", "empty domain"),
        ("domain: d\ndescriptors:\n- value: x\n", "descriptors[0]: descriptor has no key"),
        (
            "domain: d\ndescriptors:\n- key: a\n  rate_limit: {unit: fortnight, requests_per_unit: 1}\n",
            "descriptors[0].rate_limit.unit: invalid rate limit unit 'fortnight'",
        ),
        ("domain: d\ndescriptors:\n- key: a\n  ratelimit: {unit: second}\n", "unknown key 'ratelimit'"),
        (
            "domain: d\ndescriptors:\n- key: a\n  value: b\n- key: a\n  value: b\n",
            "duplicate descriptor composite key 'd.a_b'",
        ),
        ("domain: d\ndescriptors:\n- key: a\n  rate_limit: {unlimited: true, unit: second}\n", "unlimited"),
    ],
)
def test_configuration_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_files([("bad.yaml", text)])


def test_duplicate_domain_across_files() -> None:
    with pytest.raises(ConfigError, match="b.yaml: domain: duplicate domain 'ratelimit'"):
        parse_files([("a.yaml", DOCS_CONFIG), ("b.yaml", DOCS_CONFIG)])


def test_config_files_skip_dotfiles_like_a_configmap_volume(tmp_path: Path) -> None:
    """A ConfigMap volume: `config.yaml -> ..data/config.yaml`, `..data -> ..<timestamp>/`."""
    stamp = tmp_path / "..2026_01_01"
    stamp.mkdir()
    (stamp / "config.yaml").write_text(DOCS_CONFIG)
    (tmp_path / "..data").symlink_to(stamp.name)
    (tmp_path / "config.yaml").symlink_to("..data/config.yaml")
    assert config_files(tmp_path, ignore_dotfiles=True) == [tmp_path / "config.yaml"]
    assert len(config_files(tmp_path, ignore_dotfiles=False)) == 3


# ---------------------------------------------------------------------------- with a real Redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/install installs it)")
    port = _free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


class Service:
    def __init__(self, limiter: RateLimiter, stub: rls_pb2_grpc.RateLimitServiceStub) -> None:
        self.limiter = limiter
        self.stub = stub

    async def ask(self, domain: str, *descriptors: list[tuple[str, str]], hits: int = 0) -> rls_pb2.RateLimitResponse:
        request = rls_pb2.RateLimitRequest(domain=domain, hits_addend=hits)
        for entries in descriptors:
            d = request.descriptors.add()
            for k, v in entries:
                d.entries.append(ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=v))
        return await self.stub.ShouldRateLimit(request, timeout=5)


@pytest.fixture
async def service(redis_port: int) -> AsyncIterator[Service]:
    limiter = RateLimiter(
        Redis("127.0.0.1", redis_port),
        headers=HeaderNames(
            enabled=True, limit="x-ratelimit-limit", remaining="x-ratelimit-remaining", reset="x-ratelimit-reset"
        ),
        clock=lambda: 1_800_000_030.0,
    )  # mid-window: no test crosses a window's end
    limiter.config = parse_files([("config.yaml", DOCS_CONFIG), ("nested.yaml", NESTED)])
    server = grpc.aio.server()
    rls_pb2_grpc.add_RateLimitServiceServicer_to_server(RateLimitServicer(limiter), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Service(limiter, rls_pb2_grpc.RateLimitServiceStub(channel))
    finally:
        await channel.close()
        await server.stop(0)
        await limiter.redis.close()


OK = rls_pb2.RateLimitResponse.OK
OVER = rls_pb2.RateLimitResponse.OVER_LIMIT


async def test_one_per_minute_then_over_limit_with_statuses_and_headers(service: Service) -> None:
    first = await service.ask("ratelimit", [("PATH", "/productpage")])
    assert first.overall_code == OK
    status = first.statuses[0]
    assert status.current_limit.requests_per_unit == 1
    assert status.current_limit.unit == rls_pb2.RateLimitResponse.RateLimit.MINUTE
    assert status.limit_remaining == 0
    assert status.duration_until_reset.seconds == 30
    headers = {h.key: h.value for h in first.response_headers_to_add}
    assert headers["x-ratelimit-limit"] == "1" and headers["x-ratelimit-remaining"] == "0"
    assert headers["x-ratelimit-reset"] == "30"
    second = await service.ask("ratelimit", [("PATH", "/productpage")])
    assert second.overall_code == OVER and second.statuses[0].code == OVER
    # other paths count against the key-only limit (100 a minute)
    other = await service.ask("ratelimit", [("PATH", "/details/0")])
    assert other.overall_code == OK and other.statuses[0].limit_remaining == 99
    stats = service.limiter.stats.counters
    assert stats["ratelimit.service.rate_limit.ratelimit.PATH_/productpage.over_limit"] == 1
    assert stats["ratelimit.service.rate_limit.ratelimit.PATH.within_limit"] == 1


async def test_several_descriptors_one_over_limit_and_no_match(service: Service) -> None:
    response = await service.ask("ratelimit", [("PATH", "api")], [("PATH", "api")], [("NOPE", "x")])
    assert [s.code for s in response.statuses] == [OK, OK, OK]  # two hits of a 2/min limit
    assert [s.limit_remaining for s in response.statuses[:2]] == [1, 0]
    assert not response.statuses[2].HasField("current_limit")
    again = await service.ask("ratelimit", [("PATH", "api")], [("NOPE", "x")])
    assert again.overall_code == OVER and [s.code for s in again.statuses] == [OVER, OK]


async def test_shadow_mode_unlimited_hits_addend_detailed_metric(service: Service) -> None:
    for _ in range(3):
        shadow = await service.ask("nested", [("shadow", "a")])
        assert shadow.overall_code == OK
    assert service.limiter.stats.counters["ratelimit.service.rate_limit.nested.shadow.shadow_mode"] == 2
    for _ in range(5):
        assert (await service.ask("nested", [("client", "free")])).overall_code == OK
    assert (await service.ask("nested", [("user", "u"), ("path", "/admin")], hits=2)).overall_code == OK
    assert (await service.ask("nested", [("user", "u"), ("path", "/admin")])).overall_code == OVER
    await service.ask("nested", [("detail", "v1")])
    assert service.limiter.stats.counters["ratelimit.service.rate_limit.nested.detail_v1.within_limit"] == 1


async def test_concurrent_requests_share_the_counter_exactly(service: Service) -> None:
    """50 calls at once on one pipelined Redis connection against 2 a minute: exactly 2 pass."""
    answers = await asyncio.gather(*(service.ask("ratelimit", [("PATH", "api")]) for _ in range(50)))
    assert sum(a.overall_code == OK for a in answers) == 2


async def test_redis_down_fails_the_call(service: Service, redis_port: int) -> None:
    service.limiter.redis = Redis("127.0.0.1", _free_port(), timeout=1.0)  # nothing listens there
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await service.ask("ratelimit", [("PATH", "/productpage")])
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_no_configuration_fails_the_call(service: Service) -> None:
    service.limiter.config = None
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await service.ask("ratelimit", [("PATH", "/productpage")])
    assert e.value.code() == grpc.StatusCode.UNKNOWN


def test_watcher_reloads_and_keeps_the_last_good_configuration(tmp_path: Path) -> None:
    limiter = RateLimiter(Redis("127.0.0.1", 1))
    (tmp_path / "config.yaml").write_text(DOCS_CONFIG)
    watcher = ConfigWatcher(limiter, tmp_path, ignore_dotfiles=True)
    watcher.check()
    assert limiter.config is not None and "ratelimit" in limiter.config.domains
    (tmp_path / "config.yaml").write_text(DOCS_CONFIG.replace("domain: ratelimit", "domain: other") + "\n")
    watcher.check()
    assert limiter.config is not None and list(limiter.config.domains) == ["other"]
    (tmp_path / "config.yaml").write_text("domain: [")
    watcher.check()
    assert limiter.config is not None and list(limiter.config.domains) == ["other"] and watcher.errors == 1
