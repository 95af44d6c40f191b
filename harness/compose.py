"""Docker Compose v2 as the tests drive it: is the plugin there, and a project under its own name.

Compose networks are bridges on private ranges, which must not carry test traffic here: tests run
the generated compose.yaml with an override that puts every service on the host's network.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

from harness import docker

COMPOSE_HINT = "`bash .ci/docker-engine start` installs the Compose v2 plugin"


def compose_answers() -> bool:
    try:
        subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def require_compose() -> None:
    """Skip without Compose v2, or fail under CI=true."""
    missing = f"no Docker Compose v2 plugin answers (`docker compose version`): {COMPOSE_HINT}"
    docker.require(None if compose_answers() else missing, "the compose test")


class Compose:
    """`docker compose` on the generated file plus the override, under a project name of its own."""

    def __init__(
        self,
        project: Path,
        override_file: Path,
        *,
        also: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        """`also`: the project's other compose files to merge, before the test's override;
        `env`: variables the files' interpolation reads."""
        self.name = f"mlct-test-{uuid.uuid4().hex[:8]}"
        files = [project / "compose.yaml", *(project / name for name in also), override_file]
        self.base = ["docker", "compose", "--project-name", self.name]
        self.base += ["--project-directory", str(project)]
        for file in files:
            self.base += ["--file", str(file)]
        self.env = {**os.environ, **(env or {})}

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.base, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=self.env,
        )

    def must(self, *args: str, timeout: float = 300) -> str:
        result = self(*args, timeout=timeout)
        assert result.returncode == 0, f"compose {' '.join(args)}:\n{result.stdout}{result.stderr}"
        return result.stdout

    def health(self, service: str) -> str:
        rows = self.must("ps", "--all", "--format", "json", service).strip()
        # Compose prints one JSON object per line (an array in some older releases).
        parsed = [json.loads(line) for line in rows.splitlines() if line.strip()]
        entries = parsed[0] if parsed and isinstance(parsed[0], list) else parsed
        return ",".join(str(entry.get("Health", "")) for entry in entries)

    def logs(self) -> str:
        result = self("logs", "--no-color")
        return (result.stdout + result.stderr)[-4000:]
