"""The pgvector server image (images/pgvector_image.py) run as a container on loopback.

`pgvector_server(folder)` writes a random password to a file there, runs the image with
`--network host` on a free port, its data on a fresh named volume, waits until Docker calls it
healthy and yields a `PgServer`. Its `stop()` removes the container and `start()` runs a new
one on the same port, volume and password, for outage and persistence tests. The container and
the volume go on the way out.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import make_conninfo

from harness import docker
from harness.images import pgvector_image
from harness.service_client import free_port, logs

USER = "vectors"
DATABASE = "vectors"
DATA = "/var/lib/postgresql/data"
SECRET = "/run/secrets/postgres-password"


@dataclass
class PgServer:
    """One volume, port and password, served by one container at a time."""

    image: str
    password_file: Path
    volume: str
    port: int
    container: str | None = None

    def conninfo(self, password: str) -> str:
        """libpq's connection string for this server as USER on DATABASE."""
        return make_conninfo(
            host="127.0.0.1", port=self.port, user=USER, dbname=DATABASE, password=password
        )

    def start(self, timeout: float = 120) -> None:
        self.container = docker.start(
            self.image,
            network="host",
            volumes=(f"{self.volume}:{DATA}", f"{self.password_file}:{SECRET}:ro"),
            env={
                "POSTGRES_PASSWORD_FILE": SECRET,
                "POSTGRES_USER": USER,
                "POSTGRES_DB": DATABASE,
                "PGPORT": str(self.port),
            },
        )
        wait_healthy(self.container, timeout)

    def stop(self) -> None:
        if self.container is None:
            return
        # `docker stop` sends the image's STOPSIGNAL (a fast shutdown), then the container goes.
        subprocess.run(["docker", "stop", self.container], capture_output=True, check=False)
        subprocess.run(["docker", "rm", "-f", self.container], capture_output=True, check=False)
        self.container = None


def wait_healthy(container: str, timeout: float) -> None:
    """Until the image's HEALTHCHECK passes; the logs in the error when it stops or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = docker.container_state(container)
        if state != "running":
            raise RuntimeError(f"the container is {state!r}:\n{logs(container)}")
        if docker.container_state(container, "{{ .State.Health.Status }}") == "healthy":
            return
        time.sleep(0.5)
    raise RuntimeError(f"not healthy within {timeout} s:\n{logs(container)}")


@contextmanager
def pgvector_server(folder: Path) -> Iterator[PgServer]:
    password_file = folder / "postgres-password"
    password_file.write_text(secrets.token_urlsafe(16) + "\n")
    password_file.chmod(0o644)  # the container's postgres user (uid 999) reads it
    volume = f"mlct-pgvector-{secrets.token_hex(6)}"
    server = PgServer(pgvector_image.ensure(), password_file, volume, free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True, check=False)
