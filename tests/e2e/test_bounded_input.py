"""Bounded input (issue 13 §1): the API on a real socket survives hostile bodies.

Before: one anonymous JSON body ~70,000 levels deep overflowed the C stack (py_ecc had raised the
recursion limit to 100000) and killed the process; a chunked 20 MiB upload was spooled in full
against a 1 MiB limit; a body of any size was read into memory.
"""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.auth import issue_token
from api.limits import DepthCounter
from runtime.interpreter import SANE_RECURSION_LIMIT
from runtime.settings import Settings
from sandbox.serve import RunningServer, serve
from tests.fixtures.stack import stack_settings

MIB = 1024 * 1024
DEEP = b"[" * 100_000 + b"]" * 100_000


class CountingApp:
    """Counts the body bytes the app really pulled from the server."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.read = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counted() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.read += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


@pytest.fixture
async def api(
    database_url: str, dev_env: WorkflowEnvironment, tmp_path: Path
) -> AsyncIterator[tuple[RunningServer, Settings, CountingApp]]:
    settings = stack_settings(
        database_url,
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        verification_upload_dir=str(tmp_path / "uploads"),
        verification_max_upload_bytes=MIB,
        api_max_body_bytes=MIB,
    )
    app = CountingApp(create_app(settings, temporal=dev_env.client))
    server = await serve(app)  # type: ignore[arg-type]
    try:
        yield server, settings, app
    finally:
        await server.stop()


def test_the_recursion_limit_is_the_interpreter_default_after_importing_the_app() -> None:
    import worker  # noqa: F401  (imports web3 -> py_ecc too)

    assert sys.getrecursionlimit() == SANE_RECURSION_LIMIT


async def test_deep_json_to_every_post_route_is_refused_and_the_process_stays_up(
    api: tuple[RunningServer, Settings, CountingApp],
) -> None:
    server, _, _ = api
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        schema = (await http.get("/openapi.json")).json()
        posts = [path for path, item in schema["paths"].items() if "post" in item]
        assert len(posts) > 20
        for path in posts:
            url = re.sub(r"\{[^}]+\}", "x", path)
            response = await http.post(
                url, content=DEEP, headers={"content-type": "application/json"}
            )
            assert 400 <= response.status_code < 500, (path, response.status_code, response.text)
            json_body = "application/json" in (
                schema["paths"][path]["post"].get("requestBody", {}).get("content", {})
            )
            if json_body:
                assert response.json()["error"]["code"] == "json_too_deep", path
            assert (await http.get("/health/live")).status_code == 200, path
        # and without a content type (FastAPI then parses JSON too)
        response = await http.post("/api/v1/deposit/intent/create", content=DEEP)
        assert response.status_code == 400
        assert "API_MAX_JSON_DEPTH" in response.json()["error"]["message"]


async def test_a_five_mib_json_body_is_refused_before_it_is_read(
    api: tuple[RunningServer, Settings, CountingApp],
) -> None:
    server, _, counter = api
    body = b'{"a": "' + b"x" * (5 * MIB) + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        declared = await http.post(
            "/api/v1/deposit/intent/create",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert declared.status_code == 413, declared.text
        assert declared.json()["error"]["code"] == "payload_too_large"
        assert counter.read == 0
        chunked = await http.post(
            "/api/v1/deposit/intent/create",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        assert chunked.status_code == 413, chunked.text
        assert "API_MAX_BODY_BYTES" in chunked.json()["error"]["message"]
        assert counter.read < 2 * MIB
        assert (await http.get("/health/live")).status_code == 200


async def test_a_webhook_reads_at_most_its_own_cap_before_the_signature(
    api: tuple[RunningServer, Settings, CountingApp],
) -> None:
    server, settings, counter = api
    body = b'{"id": "evt_1", "pad": "' + b"x" * (settings.api_webhook_max_body_bytes) + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 16 * 1024):
            yield body[start : start + 16 * 1024]

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        response = await http.post(
            "/webhooks/stripe", content=chunks(), headers={"stripe-signature": "t=1,v1=00"}
        )
    assert response.status_code == 413, response.text
    assert "API_WEBHOOK_MAX_BODY_BYTES" in response.json()["error"]["message"]
    assert counter.read < 2 * settings.api_webhook_max_body_bytes


async def test_a_chunked_20_mib_upload_stops_at_the_upload_limit(
    api: tuple[RunningServer, Settings, CountingApp],
) -> None:
    server, settings, counter = api
    boundary = "settle-test-boundary"
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="manifestURI"\r\n\r\n'
        "ipfs://bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy\r\n"
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield head
        block = b"\0" * (256 * 1024)
        for _ in range(80):  # 20 MiB
            sent += len(block)
            yield block
        yield f"\r\n--{boundary}--\r\n".encode()

    token = issue_token(settings, subject="uploader", tenant="t1", roles=["user"])
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        response = await http.post(
            "/api/verification-jobs/verify",
            content=chunks(),
            headers={
                "content-type": f"multipart/form-data; boundary={boundary}",
                "authorization": f"Bearer {token}",
            },
        )
        assert response.status_code == 413, response.text
        assert "VERIFICATION_MAX_UPLOAD_BYTES" in response.json()["error"]["message"]
        assert (await http.get("/health/live")).status_code == 200
    assert sent == 20 * MIB  # the client did send it all; the API read little of it
    assert counter.read < 2 * MIB
    uploads = Path(settings.verification_upload_dir)
    assert not uploads.exists() or list(uploads.iterdir()) == []


def _depth(pieces: Iterator[bytes] | list[bytes], limit: int = 3) -> tuple[bool, int]:
    counter = DepthCounter(limit)
    ok = all(counter.feed(piece) for piece in pieces)
    return ok, counter.depth


def test_the_depth_counter_ignores_brackets_in_strings_and_follows_pieces() -> None:
    assert _depth([b'{"a": [[1]]}']) == (True, 0)
    assert _depth([b'{"a": [[[1]]]}'])[0] is False
    assert _depth([b'{"a": "[[[[[[", "b": "\\"[[[["}']) == (True, 0)
    # an escaped quote split across two pieces keeps the string open
    assert _depth([b'{"a": "x\\', b'"[[[[[["}']) == (True, 0)
    text = b'{"k": ["v", {"w": "]]}}"}], "z": "\\\\"}'
    assert _depth([text[i : i + 1] for i in range(len(text))], limit=8) == (True, 0)
