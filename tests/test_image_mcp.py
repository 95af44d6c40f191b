"""The serve=mcp project's image as a service: the MCP SDK's own client over streamable HTTP.

The container runs locked down on the host's network, bound to 127.0.0.1 on a free port, with
the hashing embedder and an API key; the store lives on a named volume that outlasts it.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from harness import docker
from harness.render import CATALOGUE
from harness.service_client import LOCKED_DOWN, Api, free_port, logs

IMAGE_FACTS = CATALOGUE["image"]
DOCUMENTS = [
    {"id": "cats", "text": "Cats purr, nap in the sun and chase mice around the garden."},
    {"id": "rivers", "text": "Rain runs down from the mountains to the sea in rivers."},
    {"id": "gone", "text": "A compiler translates source code into machine code."},
]


def text_of(result: CallToolResult) -> str:
    return "".join(block.text for block in result.content if isinstance(block, TextContent))


async def call(client: Client, tool: str, **arguments: object) -> dict:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


async def nearest(client: Client, text: str) -> list[str]:
    return [hit["id"] for hit in (await call(client, "search", text=text, k=2))["result"]]


KEY = secrets.token_urlsafe(32)
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "test", "version": "1"},
    },
}


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[Client]:
    """The SDK's client, sending the key on every request, with the SDK's own timeouts."""
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client


def initialize(url: str, **headers: str) -> int:
    """The status of a bare initialize request with these headers."""
    body = json.dumps(INITIALIZE).encode()
    sent = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    request = urllib.request.Request(url, body, {**sent, **headers}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def wait_healthy(container: str, timeout: float = 60) -> None:
    """The image's HEALTHCHECK (Python's urllib, no curl) sees the server ready."""
    deadline = time.monotonic() + timeout
    while docker.container_state(container, "{{ .State.Health.Status }}") != "healthy":
        assert time.monotonic() < deadline, logs(container)
        time.sleep(1)


@pytest.mark.slow
@pytest.mark.image
def test_the_mcp_image_serves_the_sdk_client_locked_down_and_stops_on_sigterm(images):
    built = images.get("mcp", {"serve": "mcp"})
    port = free_port()
    prefix = built.package.upper()
    env = {
        f"{prefix}_EMBEDDER": "hashing",
        f"{prefix}_HOST": "127.0.0.1",
        f"{prefix}_PORT": str(port),
        f"{prefix}_API_KEYS": KEY,
    }
    volume = f"ml-container-template-test-{uuid.uuid4().hex[:8]}"
    data = f"{volume}:{IMAGE_FACTS['home']}/{IMAGE_FACTS['data_folder']}"
    url = f"http://127.0.0.1:{port}/mcp"
    containers: list[str] = []

    def serve() -> str:
        container = docker.start(
            built.tag, network="host", volumes=(data,), env=env, options=LOCKED_DOWN
        )
        containers.append(container)
        Api(port, container).wait_ready()
        return container

    async def first_session() -> None:
        with anyio.fail_after(120):
            async with connect(url) as client:
                tools = {tool.name for tool in (await client.list_tools()).tools}
                assert tools == {"add_documents", "search", "delete"}
                added = await call(client, "add_documents", documents=DOCUMENTS)
                assert added == {"added": 3, "count": 3}
                assert (await nearest(client, "which animal chases mice?"))[0] == "cats"
                deleted = await call(client, "delete", doc_id="gone")
                assert deleted == {"deleted": "gone", "count": 2}
                refused = await client.call_tool("search", {"text": "cats", "k": 101})
                assert refused.is_error and "less than or equal to 100" in text_of(refused)
                # Refused, not crashed: the same session goes on.
                assert await nearest(client, "rain and the sea") == ["rivers", "cats"]

    async def second_session() -> None:
        with anyio.fail_after(120):
            async with connect(url) as client:
                assert await nearest(client, "which animal chases mice?") == ["cats", "rivers"]

    try:
        container = serve()
        # No key or another: 401; the key under a Host not allowed (DNS rebinding): 421.
        assert initialize(url) == 401
        assert initialize(url, authorization=f"Bearer {secrets.token_urlsafe(32)}") == 401
        rebound = {"authorization": f"Bearer {KEY}", "host": f"attacker.example:{port}"}
        assert initialize(url, **rebound) == 421
        anyio.run(first_session)
        # The health check asks /readyz, which needs no key.
        wait_healthy(container)

        # SIGTERM: the server drains, closes the store and exits 0.
        subprocess.run(["docker", "kill", "--signal", "TERM", container], check=True)
        assert docker.wait(container, 120) == 0, logs(container)
        events = [json.loads(line) for line in logs(container).splitlines() if line.startswith("{")]
        assert [event.get("event") for event in events if "event" in event] == [
            "keys",
            "ready",
            "stopped",
        ]
        assert KEY not in logs(container)

        # A new container on the same volume finds the documents as they were.
        serve()
        anyio.run(second_session)
    finally:
        subprocess.run(["docker", "rm", "--force", *containers], capture_output=True)
        subprocess.run(["docker", "volume", "rm", "--force", volume], capture_output=True)
