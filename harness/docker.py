"""The Docker engine as the tests use it: is one there, build with BuildKit, run containers.

Builds use `--network host` (the engine here has no bridge; uv in the build reaches PyPI and
loopback indexes as the host does) and containers run with `--network none`.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

START_HINT = "start one with `bash .ci/docker-engine start`"
ARM64_HINT = "set it up with `bash .ci/arm64-emulation`"
BINFMT_AARCH64 = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")


def engine_answers() -> bool:
    """True when a Docker engine answers and the buildx plugin (BuildKit) is there."""
    try:
        for probe in (["docker", "info"], ["docker", "buildx", "version"]):
            subprocess.run(probe, capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def require(problem: str | None, tests: str) -> None:
    """Skip for a problem; under CI=true fail instead, since these tests must run there."""
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true requires {tests}: {problem}", pytrace=False)
    pytest.skip(problem)


def require_engine() -> None:
    """Skip without an engine, or fail under CI=true."""
    missing = f"no Docker engine with buildx answers: {START_HINT}"
    require(None if engine_answers() else missing, "the image tests")


def arm64_unavailable() -> str | None:
    """Why this engine cannot build and run linux/arm64 images, or None when it can.

    The engine is local, so the host's binfmt_misc decides: aarch64 binaries need qemu registered
    with the F flag, which keeps the interpreter usable inside containers.
    """
    if os.uname().machine == "aarch64":
        return None
    if not BINFMT_AARCH64.exists():
        return f"no aarch64 entry in binfmt_misc ({BINFMT_AARCH64})"
    entry = BINFMT_AARCH64.read_text()
    if not entry.startswith("enabled"):
        return f"the aarch64 binfmt_misc entry is disabled ({BINFMT_AARCH64})"
    flags = re.search(r"^flags: *(\S*)", entry, re.M)
    if not flags or "F" not in flags.group(1):
        return "qemu-aarch64 is registered without the F (fix-binary) flag, so not in containers"
    return None


def require_arm64() -> None:
    """An engine that builds linux/arm64: skip naming why, or fail under CI=true."""
    require_engine()
    why = arm64_unavailable()
    if why is None:
        return
    message = f"linux/arm64 images cannot be built here: {why}; {ARM64_HINT}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true requires the arm64 image tests: {message}", pytrace=False)
    pytest.skip(message)


@dataclass
class Build:
    """A finished `docker buildx build`: its exit code and BuildKit's plain progress log."""

    returncode: int
    log: str

    def step_ids(self, needle: str) -> list[str]:
        """The progress ids (`#12`) of the steps whose instruction line contains `needle`."""
        return sorted(
            {
                m.group(1)
                for m in re.finditer(r"^(#\d+) \[[^\]]*\] (.*)$", self.log, re.M)
                if needle in m.group(2)
            }
        )

    def cached(self, needle: str) -> bool:
        """Whether the step whose instruction contains `needle` was taken from the cache."""
        ids = self.step_ids(needle)
        assert len(ids) == 1, f"expected one step matching {needle!r}, found {ids}:\n{self.log}"
        return re.search(rf"^{ids[0]} CACHED$", self.log, re.M) is not None


def build(
    context: Path,
    tag: str,
    *,
    build_args: dict[str, str] | None = None,
    target: str | None = None,
    labels: dict[str, str] | None = None,
    network: str = "host",
    timeout: float = 1800,
    platform: str | None = None,
) -> Build:
    """Build `context` (its own Dockerfile, unmodified) into the engine's images as `tag`.

    `platform` (linux/arm64) builds for another platform; the engine's own otherwise.
    """
    command = [
        "docker",
        "buildx",
        "build",
        "--progress=plain",
        f"--network={network}",
        "--load",
        "--tag",
        tag,
    ]
    if platform:
        command += ["--platform", platform]
    for key, value in (build_args or {}).items():
        command += ["--build-arg", f"{key}={value}"]
    for key, value in (labels or {}).items():
        command += ["--label", f"{key}={value}"]
    if target:
        command += ["--target", target]
    result = subprocess.run(
        [*command, str(context)], capture_output=True, text=True, timeout=timeout, check=False
    )
    return Build(result.returncode, result.stdout + result.stderr)


def run(
    image: str,
    *args: str,
    volumes: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    entrypoint: str | None = None,
    timeout: float = 300,
    platform: str | None = None,
) -> subprocess.CompletedProcess:
    """`docker run --rm --network none image args...`, output captured as text."""
    command = ["docker", "run", "--rm", "--network", "none"]
    if platform:
        command += ["--platform", platform]
    for volume in volumes:
        command += ["--volume", volume]
    for key, value in (env or {}).items():
        command += ["--env", f"{key}={value}"]
    if entrypoint is not None:
        command += ["--entrypoint", entrypoint]
    return subprocess.run(
        [*command, image, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def start(
    image: str,
    *args: str,
    network: str = "none",
    volumes: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    options: tuple[str, ...] = (),
) -> str:
    """`docker run --detach`, for a service: its container id. Remove it with `docker rm -f`."""
    command = ["docker", "run", "--detach", "--network", network, *options]
    for volume in volumes:
        command += ["--volume", volume]
    for key, value in (env or {}).items():
        command += ["--env", f"{key}={value}"]
    result = subprocess.run(
        [*command, image, *args], capture_output=True, text=True, timeout=120, check=True
    )
    return result.stdout.strip()


def wait(container: str, timeout: float = 180) -> int:
    """`docker wait`: the container's exit status once it stops (`timeout` is a hang guard)."""
    waited = subprocess.run(
        ["docker", "wait", container], capture_output=True, text=True, timeout=timeout, check=True
    )
    return int(waited.stdout.strip())


def logs(container: str) -> str:
    """Everything the container wrote: its standard output, then its standard error."""
    result = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
    return result.stdout + result.stderr


def container_state(container: str, template: str = "{{ .State.Status }}") -> str:
    """One field of a container's state, as Go's template prints it ("" once it is gone)."""
    result = subprocess.run(
        ["docker", "container", "inspect", "--format", template, container],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip()


def image_label(tag: str, key: str) -> str | None:
    """A label of a local image, or None when the image or the label is absent."""
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", f'{{{{ index .Config.Labels "{key}" }}}}', tag],
        capture_output=True,
        text=True,
        check=False,
    )
    value = result.stdout.strip()
    return value if result.returncode == 0 and value not in ("", "<no value>") else None


def images_labelled(key: str) -> list[str]:
    """`repository:tag` of every tagged local image that carries label `key`, inherited or own."""
    listing = ["docker", "image", "ls", "--filter", f"label={key}"]
    listed = subprocess.run(
        [*listing, "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(tag for tag in listed if "<none>" not in tag)


def image_config(tag: str, field: str, section: str = ".Config") -> str:
    """One field of an image's config (`User`, `Entrypoint`, ...), as Go's template prints it.

    `section=""` reads a top-level field (`Architecture`) as plain text.
    """
    template = f"{{{{ json {section}.{field} }}}}" if section else f"{{{{ .{field} }}}}"
    return subprocess.run(
        ["docker", "image", "inspect", "--format", template, tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def image_size(tag: str) -> int:
    """A local image's size in bytes, as `docker image inspect` reports it."""
    return int(image_config(tag, "Size", ""))


def remove_images(*tags: str) -> None:
    """Untag and delete, in the background: deleting gigabytes of layers takes a minute."""
    subprocess.Popen(
        ["docker", "image", "rm", "--force", *tags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
