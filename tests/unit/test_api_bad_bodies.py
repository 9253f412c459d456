"""The config API answers any body: a body that is not `{"files": [{"name", "text"}]}` is a 400 with the
expected shape, never a traceback (and nothing reaches the control plane)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gossamer.api.server import Api


class _NoControlPlane:
    """Fails the test if a bad body gets as far as the control plane."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the control plane was called ({name})")


@pytest.mark.parametrize("path", ["/v1/apply", "/v1/delete", "/v1/analyze"])
@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"files": 5}',
        b'{"files": [{"name": "a"}]}',
        b'{"files": [{"name": "a", "text": 5}]}',
        b'{"files": ["x"]}',
    ],
)
async def test_a_malformed_body_is_a_400(path: str, body: bytes) -> None:
    api = Api(_NoControlPlane(), asyncio.Event())  # type: ignore[arg-type]
    async with TestClient(TestServer(api.app())) as client:
        resp = await client.post(path, data=body, headers={"Content-Type": "application/json"})
        assert resp.status == 400
        assert "files" in (await resp.json())["error"]
