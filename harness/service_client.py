"""A served project's container as a client on loopback sees it."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from harness import docker

# The hardening a deployment should be able to use: nothing written outside the volume and /tmp.
LOCKED_DOWN = (
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Api:
    """The served API over loopback, as any HTTP client sees it."""

    def __init__(self, port: int, container: str, key: str | None = None) -> None:
        self.base, self.container = f"http://127.0.0.1:{port}", container
        # Sent as a bearer token on every call, when the service asks for one.
        self.key = key

    def call(self, method: str, path: str, body: object = None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"}
        if self.key is not None:
            headers["authorization"] = f"Bearer {self.key}"
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode()
        return status, json.loads(text) if text.startswith("{") else {"text": text}

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.call("GET", "/readyz")[0] == 200:
                    return
            except OSError:  # not listening yet
                pass
            state = docker.container_state(self.container)
            assert state == "running", f"the container is {state}:\n{logs(self.container)}"
            time.sleep(0.5)
        pytest.fail(f"not ready within {timeout} s:\n{logs(self.container)}")

    def nearest(self, text: str) -> list[str]:
        status, body = self.call("POST", "/query", {"text": text, "k": 2})
        assert status == 200, body
        return [hit["id"] for hit in body["hits"]]


def logs(container: str) -> str:
    result = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
    return result.stdout[-3000:] + result.stderr[-3000:]
