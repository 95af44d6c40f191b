"""Docker Compose v2 as the tests drive it: is the plugin there, and a project under its own name.

Compose networks are bridges on private ranges, which must not carry test traffic here: tests run
the generated compose.yaml with an override (`write_override`) that puts every service on the
host's network, the project's own on 127.0.0.1 on a free port with the hashing embedder.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

from harness import docker
from harness.built_images import Built

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


def write_override(
    folder: Path,
    built: Built,
    app: str,
    port: int,
    *,
    settings: dict[str, str] | None = None,
    keys: dict[str, object] | None = None,
    others: dict[str, dict[str, object]] | None = None,
) -> Path:
    """Write `folder`/compose.test.yaml, the test's only changes to the generated file.

    Service `app` runs the built image on the host's loopback at `port` with the hashing embedder,
    `settings` (by names after the prefix) and `keys` added; each of `others` is never pulled and
    on the host's network, its given keys replaced. `!reset` is Compose's tag for dropping a key.
    """
    prefix = f"{built.package.upper()}_"
    chosen = {"HOST": "127.0.0.1", "PORT": str(port), "EMBEDDER": "hashing", **(settings or {})}
    environment = {prefix + name: value for name, value in chosen.items()}
    lines = ["services:", f"  {app}:", f"    image: {json.dumps(built.tag)}"]
    # The image is built already: nothing to build or pull, and the host's network has no ports.
    lines += ["    build: !reset null", "    pull_policy: never", "    network_mode: host"]
    lines.append("    ports: !reset []")
    for key, value in {**(keys or {}), "environment": environment}.items():
        lines.append(f"    {key}: {json.dumps(value)}")
    for name, replaced in (others or {}).items():
        lines += [f"  {name}:", "    pull_policy: never", "    network_mode: host"]
        lines += [f"    {key}: {json.dumps(value)}" for key, value in replaced.items()]
    override_file = folder / "compose.test.yaml"
    override_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return override_file


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

    def up(self, *healthy: str, wait_seconds: int = 240) -> None:
        """`up --wait`, which returns once every health check passes (and fails if one cannot);
        then each of `healthy` must report healthy."""
        wait = ("--wait", "--wait-timeout", str(wait_seconds))
        self.must("up", "--detach", *wait, timeout=wait_seconds + 60)
        for service in healthy:
            assert self.health(service) == "healthy", (service, self.logs())

    def down(self) -> None:
        """Stop and remove everything, named volumes too: what a test leaves on the way out."""
        self("down", "--volumes", "--timeout", "30", timeout=180)

    def volumes(self, named: str = "") -> list[str]:
        """The engine's volumes of this project whose names start with `named`."""
        return subprocess.run(
            ["docker", "volume", "ls", "--quiet", "--filter", f"name={self.name}_{named}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()

    def health(self, service: str) -> str:
        rows = self.must("ps", "--all", "--format", "json", service).strip()
        # Compose prints one JSON object per line (an array in some older releases).
        parsed = [json.loads(line) for line in rows.splitlines() if line.strip()]
        entries = parsed[0] if parsed and isinstance(parsed[0], list) else parsed
        return ",".join(str(entry.get("Health", "")) for entry in entries)

    def logs(self) -> str:
        result = self("logs", "--no-color")
        return (result.stdout + result.stderr)[-4000:]
