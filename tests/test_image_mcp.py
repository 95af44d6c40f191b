"""The serve=mcp project's image as a service: the MCP SDK's own client over streamable HTTP.

The container runs locked down on the host's network, bound to 127.0.0.1 on a free port, with
the hashing embedder; the store lives on a named volume that outlasts it.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import anyio
import pytest
from mcp import Client
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
            async with Client(url) as client:
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
            async with Client(url) as client:
                assert await nearest(client, "which animal chases mice?") == ["cats", "rivers"]

    try:
        container = serve()
        anyio.run(first_session)
        wait_healthy(container)

        # SIGTERM: the server drains, closes the store and exits 0.
        subprocess.run(["docker", "kill", "--signal", "TERM", container], check=True)
        waited = subprocess.run(
            ["docker", "wait", container], capture_output=True, text=True, timeout=120
        )
        assert waited.stdout.strip() == "0", logs(container)
        events = [json.loads(line) for line in logs(container).splitlines() if line.startswith("{")]
        assert [event.get("event") for event in events if "event" in event] == ["ready", "stopped"]

        # A new container on the same volume finds the documents as they were.
        serve()
        anyio.run(second_session)
    finally:
        subprocess.run(["docker", "rm", "--force", *containers], capture_output=True)
        subprocess.run(["docker", "volume", "rm", "--force", volume], capture_output=True)
