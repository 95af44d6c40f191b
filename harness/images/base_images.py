"""Local stand-ins for the generated Dockerfile's base images, under tags of the project's own.

No registry is reachable where the tests run, so the generated Dockerfile builds, unmodified,
FROM these images, named through its own UV_IMAGE and MICROMAMBA_IMAGE build args (`build_args`):
- uv: `FROM scratch` with /uv and /uvx from uv's musllinux wheel on PyPI at the pinned version,
  which is what the real ghcr.io/astral-sh/uv image holds.
- micromamba: a Debian bookworm minbase rootfs (rootfs.py) with the real image's user, prefix,
  variables, entrypoint and shell, and a labelled micromamba stand-in (micromamba/).
  Variants at their own tags: `lagging` (conda's Python packages older than the lock),
  `cuda` (slips a CUDA package in) and `old` (answers --version as micromamba 2.0.5).
Never under the upstream names (naming.py says what they are called). Every stand-in carries
INPUTS_LABEL, a hash of its inputs, and is rebuilt only when they change.
`ensure()` is safe to call from several processes: a file lock serialises the builds.

`ensure_platform("linux/arm64")` builds the same two images for another platform, under tags of
their own: this engine (Docker 20.10, one image per tag) resolves a FROM tag to its local image
only when that image's platform is the one being built, and asks the registry otherwise.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.docker import build, image_config, image_label
from harness.images.naming import (
    INPUTS_LABEL,
    NAMESPACE,
    PlatformStandIns,
    StandIns,
    description,
    names,
    platform_names,
    stand_in_labels,
    upstream_tag,
)
from harness.images.rootfs import BOOKWORM, CACHE, NATIVE, Recipe, rootfs_key, rootfs_tarball

HERE = Path(__file__).resolve().parent
ROOTFS_TAG = f"{NAMESPACE}/debian-rootfs:bookworm-minbase"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


# Docker's architecture names and uv's wheel tags for them.
MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}


def digest(*parts: bytes | str) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode() if isinstance(part, str) else part)
        hasher.update(b"\0")
    return hasher.hexdigest()[:16]


@contextmanager
def build_lock(name: str = "stand-ins") -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def engine_machine() -> str:
    """The engine's CPU architecture as wheel tags spell it (x86_64, aarch64)."""
    arch = subprocess.run(
        ["docker", "info", "--format", "{{.Architecture}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)


def pip_command() -> list[str]:
    """A pip to run: the test venv has none of its own, so fall back to the machine's."""
    candidates = [[sys.executable, "-m", "pip"]]
    candidates += [[exe] for exe in (shutil.which("pip3"), shutil.which("pip")) if exe]
    for candidate in candidates:
        if subprocess.run([*candidate, "--version"], capture_output=True).returncode == 0:
            return candidate
    raise RuntimeError("no pip to download uv's wheel with")


def uv_wheel(version: str, machine: str) -> Path:
    """uv's musllinux wheel from PyPI (static binaries), cached."""
    folder = CACHE / f"uv-{version}-musllinux-{machine}"
    wheels = sorted(folder.glob("uv-*.whl"))
    if not wheels:
        subprocess.run(
            [
                *pip_command(),
                "download",
                f"uv=={version}",
                "--no-deps",
                "--only-binary=:all:",
                "--platform",
                f"musllinux_1_1_{machine}",
                "--dest",
                str(folder),
                "--quiet",
            ],
            check=True,
            capture_output=True,
        )
        wheels = sorted(folder.glob("uv-*.whl"))
    return wheels[0]


def ensure_uv(tag: str, platform: str | None = None) -> None:
    machine = MACHINES[platform.split("/")[1]] if platform else engine_machine()
    wheel = uv_wheel(upstream_tag("uv"), machine)
    dockerfile = "FROM scratch\nCOPY uv uvx /\n"
    inputs = digest(
        dockerfile, wheel.read_bytes(), description("uv"), *([platform] if platform else [])
    )
    if image_label(tag, INPUTS_LABEL) == inputs:
        return
    with tempfile.TemporaryDirectory() as work:
        context = Path(work)
        (context / "Dockerfile").write_text(dockerfile)
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.endswith(".data/scripts/uv") or name.endswith(".data/scripts/uvx"):
                    target = context / Path(name).name
                    target.write_bytes(archive.read(name))
                    target.chmod(0o755)
        assert (context / "uv").exists() and (context / "uvx").exists(), f"no uv in {wheel}"
        result = build(
            context, tag, labels=stand_in_labels("uv", inputs), network="none", platform=platform
        )
        assert result.returncode == 0, result.log


def rootfs_tag(arch: str = NATIVE, recipe: Recipe = BOOKWORM) -> str:
    tag = f"{NAMESPACE}/debian-rootfs:{recipe.suite}-{recipe.name}"
    return tag if arch == NATIVE else f"{tag}-{arch}"


def ensure_rootfs(arch: str = NATIVE, recipe: Recipe = BOOKWORM) -> str:
    """The Debian root filesystem imported as an image of `arch`; returns its tag."""
    tag = rootfs_tag(arch, recipe)
    key = rootfs_key(arch, recipe)
    if image_label(tag, INPUTS_LABEL) == key and image_config(tag, "Architecture", "") == arch:
        return tag
    if arch == NATIVE:
        subprocess.run(
            [
                "docker",
                "import",
                "--change",
                f"LABEL {INPUTS_LABEL}={key}",
                str(rootfs_tarball(recipe=recipe)),
                tag,
            ],
            check=True,
            capture_output=True,
        )
        return tag
    # This engine's `docker import` ignores --platform: a build records the architecture.
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="rootfs-context-") as work:
        context = Path(work)
        os.link(rootfs_tarball(arch, recipe), context / "rootfs.tar")
        (context / "Dockerfile").write_text("FROM scratch\nADD rootfs.tar /\n")
        result = build(
            context,
            tag,
            labels={INPUTS_LABEL: key},
            network="none",
            platform=f"linux/{arch}",
        )
    assert result.returncode == 0, result.log
    return tag


def ensure_micromamba(tags: dict[str, str], platform: str | None = None) -> None:
    """Build each target of micromamba/Dockerfile ({"plain": tag, "lagging": tag, ...})."""
    arch = platform.split("/")[1] if platform else NATIVE
    rootfs = ensure_rootfs(arch)
    files = sorted(path for path in (HERE / "micromamba").iterdir() if path.is_file())
    base_inputs = digest(
        rootfs_key(arch),
        HOST_CA_BUNDLE.read_bytes(),
        description("micromamba"),
        *(f"{p.name}:{p.stat().st_mode & 0o111}" for p in files),
        *(p.read_bytes() for p in files),
    )
    for target, tag in tags.items():
        inputs = digest(base_inputs, target)
        if image_label(tag, INPUTS_LABEL) == inputs:
            continue
        with tempfile.TemporaryDirectory() as work:
            context = Path(work) / "context"
            shutil.copytree(HERE / "micromamba", context)
            shutil.copyfile(HOST_CA_BUNDLE, context / "host-ca-certificates.crt")
            result = build(
                context,
                tag,
                build_args={"ROOTFS": rootfs, "VERSION": micromamba_version()},
                target=target,
                labels=stand_in_labels("micromamba", inputs),
                network="none",
                platform=platform,
            )
        assert result.returncode == 0, result.log


def micromamba_version() -> str:
    """The version in the catalogue's micromamba tag: 2.6.1 of 2.6.1-debian13-slim."""
    return upstream_tag("micromamba").split("-")[0]


def ensure() -> StandIns:
    """Every stand-in, built when missing or stale; returns their tags."""
    stand_ins = names()
    with build_lock():
        ensure_uv(stand_ins.uv)
        ensure_micromamba(
            {
                "plain": stand_ins.micromamba,
                "lagging": stand_ins.lagging,
                "cuda": stand_ins.cuda,
                "old": stand_ins.old,
            }
        )
    return stand_ins


def ensure_platform(platform: str) -> PlatformStandIns:
    """The uv and plain micromamba stand-ins for `platform` (linux/arm64), under their own tags."""
    stand_ins = platform_names(platform)
    # debootstrap under emulation takes minutes: not while holding the lock amd64 stand-ins wait on.
    rootfs_tarball(platform.split("/")[1])
    with build_lock():
        ensure_uv(stand_ins.uv, platform)
        ensure_micromamba({"plain": stand_ins.micromamba}, platform)
    return stand_ins


if __name__ == "__main__":
    # `python -m harness.images.base_images [linux/arm64]`
    if len(sys.argv) > 1:
        print(json.dumps(ensure_platform(sys.argv[1]).__dict__, indent=2))
    else:
        print(json.dumps(ensure().__dict__, indent=2))
