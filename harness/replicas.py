"""Replicas of a served project's image: containers on the host's network, one store between them.

`Replica(built, store_url, secret_file)` runs the image (a `Served` container: locked down, bound
to 127.0.0.1 on a free port, removed on the way out) given the store's address (and its secret as
a mounted file, never a variable), with the hashing embedder unless told otherwise. Docker's own
record of it (state, restart count, exit code) is what a test asserts on, as an operator would.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

from harness import docker
from harness.built_images import Built
from harness.service_client import LOCKED_DOWN, Api, free_port

# Where a replica finds the store's secret: a file, as compose's `secrets:` mounts one.
SECRET_IN_CONTAINER = "/run/secrets/store-secret"
GUARD_SECONDS = 180  # a hang guard, not a timing


class Served:
    """One container of `built` on the host's network, bound to 127.0.0.1 on a free port, locked
    down unless given other `options`, and removed on the way out."""

    def __init__(
        self,
        built: Built,
        settings: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        volumes: tuple[str, ...] = (),
        options: tuple[str, ...] = LOCKED_DOWN,
    ) -> None:
        self.port = free_port()
        self.prefix = f"{built.package.upper()}_"
        # `settings` by the names after the prefix (EMBEDDER); `env` by whole names (HF_HOME).
        chosen = {"HOST": "127.0.0.1", "PORT": str(self.port), **(settings or {})}
        self.env = {self.prefix + name: value for name, value in chosen.items()}
        self.env.update(env or {})
        self.volumes, self.options = volumes, options
        self.tag = built.tag
        self.container = ""

    def __enter__(self) -> Self:
        self.container = docker.start(
            self.tag, network="host", volumes=self.volumes, env=self.env, options=self.options
        )
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["docker", "rm", "--force", self.container], capture_output=True)

    @property
    def api(self) -> Api:
        return Api(self.port, self.container)

    @property
    def base(self) -> str:
        return self.api.base

    def inspect(self, template: str) -> str:
        return docker.container_state(self.container, template)

    def signal(self, name: str) -> None:
        subprocess.run(
            ["docker", "kill", "--signal", name, self.container], capture_output=True, check=True
        )

    def wait_exit(self) -> int:
        return docker.wait(self.container, GUARD_SECONDS)

    def output(self) -> str:
        return docker.logs(self.container)


class Replica(Served):
    """One container of `built` serving on its own loopback port, sharing `store_url`."""

    def __init__(
        self,
        built: Built,
        store_url: str,
        secret_file: Path | None = None,
        volumes: tuple[str, ...] = (),
        settings: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        chosen = {"STORE_URL": store_url, "EMBEDDER": "hashing"}
        if secret_file is not None:
            chosen["STORE_SECRET_FILE"] = SECRET_IN_CONTAINER
            volumes += (f"{secret_file}:{SECRET_IN_CONTAINER}:ro",)
        super().__init__(built, {**chosen, **(settings or {})}, env, volumes)


def until(check: Callable[[], bool], what: str, timeout: float = GUARD_SECONDS) -> None:
    """Poll `check` until it holds; fail naming `what` at the deadline (a hang guard)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.2)


def refuses_connections(port: int) -> bool:
    """Nothing accepts on 127.0.0.1:`port` any more (a stopping server closed its socket)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def status_of(api: Api, path: str) -> int | None:
    """GET `path`'s status, or None when nothing answers."""
    try:
        return api.call("GET", path)[0]
    except OSError:
        return None


def answers_on(api: Api, path: str, status: int) -> Callable[[], bool]:
    """A check for `until`: GET `path` answers `status`."""
    return lambda: status_of(api, path) == status
