"""Local stand-ins for the generated Dockerfile's base images, under tags of the project's own.

No registry is reachable where the tests run, so the generated Dockerfile builds, unmodified,
FROM these images, named through its own UV_IMAGE and MICROMAMBA_IMAGE build args (`build_args`):
- uv: `FROM scratch` with /uv and /uvx from uv's musllinux wheel on PyPI at the pinned version,
  which is what the real ghcr.io/astral-sh/uv image holds.
- micromamba: a Debian bookworm minbase rootfs (rootfs.py) with the real image's user, prefix,
  variables, entrypoint and shell, and a labelled micromamba stand-in (micromamba/).
  Variants at their own tags: `lagging` (conda's Python packages older than the lock),
  `cuda` (slips a CUDA package in) and `old` (answers --version as micromamba 2.0.5).
Never under the upstream names: a workstation that ran the tests would otherwise build a real
project FROM a stand-in. Every stand-in carries INPUTS_LABEL (a hash of its inputs; it is rebuilt
only when they change), which images built FROM one inherit, and a description label.
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
from dataclasses import dataclass
from pathlib import Path

from harness.docker import build, image_config, image_label
from harness.images.rootfs import CACHE, NATIVE, rootfs_key, rootfs_tarball
from harness.render import CATALOGUE

HERE = Path(__file__).resolve().parent
# Docker reads a dotted first component as a registry host, and .invalid never resolves
# (RFC 2606): no registry, Docker Hub included, can ever serve a name under it.
NAMESPACE = "mlct-stand-in.invalid"
INPUTS_LABEL = "org.ml-container-template.stand-in-inputs"
DESCRIPTION_LABEL = "org.opencontainers.image.description"
ROOTFS_TAG = f"{NAMESPACE}/debian-rootfs:bookworm-minbase"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class Bases:
    """The two base images a generated Dockerfile builds FROM, and the build args naming them."""

    uv: str
    micromamba: str

    @property
    def build_args(self) -> dict[str, str]:
        return {"UV_IMAGE": self.uv, "MICROMAMBA_IMAGE": self.micromamba}

    @property
    def tags(self) -> list[str]:
        return [self.uv, self.micromamba]


@dataclass(frozen=True)
class StandIns(Bases):
    """The engine's platform: the plain stand-ins and the micromamba variants."""

    lagging: str
    cuda: str
    old: str

    @property
    def tags(self) -> list[str]:
        return [*super().tags, self.lagging, self.cuda, self.old]


@dataclass(frozen=True)
class PlatformStandIns(Bases):
    """The plain stand-ins built for one other platform."""

    platform: str


# Docker's architecture names and uv's wheel tags for them.
MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}


def digest(*parts: bytes | str) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode() if isinstance(part, str) else part)
        hasher.update(b"\0")
    return hasher.hexdigest()[:16]


@contextmanager
def build_lock() -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "stand-ins.lock", "w") as handle:
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


def repository(reference: str) -> str:
    """The repository of `name:tag` or `name@digest`, without Docker Hub's implicit host."""
    name = reference.split("@", 1)[0]
    head, _, tail = name.rpartition(":")
    if head and "/" not in tail:
        name = head
    for host in ("docker.io/", "index.docker.io/"):
        name = name.removeprefix(host)
    return name


def upstream_repositories() -> list[str]:
    """The repositories catalogue.yml's base images come from: the names no stand-in may take."""
    return [repository(reference) for reference in CATALOGUE["images"].values()]


def under_upstream_name(reference: str) -> bool:
    name = repository(reference)
    return any(name.startswith(upstream) for upstream in upstream_repositories())


def stand_in_tag(key: str, suffix: str = "") -> str:
    """The stand-in of the catalogue's `key` image: its upstream tag, under NAMESPACE."""
    return f"{NAMESPACE}/{key}:{upstream_tag(key)}{suffix}"


def upstream_tag(key: str) -> str:
    """The tag of the catalogue's `key` image: 0.13.9 of ghcr.io/astral-sh/uv:0.13.9."""
    return CATALOGUE["images"][key].rsplit(":", 1)[1]


def description(key: str) -> str:
    """The description label: what the image stands in for, so `docker inspect` tells."""
    return (
        f"Stand-in for {CATALOGUE['images'][key]} built by ml-container-template's tests:"
        " not the real image, never a base to ship"
    )


def stand_in_labels(key: str, inputs: str) -> dict[str, str]:
    return {INPUTS_LABEL: inputs, DESCRIPTION_LABEL: description(key)}


def misnamed(labelled: list[str]) -> list[str]:
    """Those of `labelled` (images carrying INPUTS_LABEL) under an upstream repository's name."""
    return [tag for tag in labelled if under_upstream_name(tag)]


def rootfs_tag(arch: str = NATIVE) -> str:
    return ROOTFS_TAG if arch == NATIVE else f"{ROOTFS_TAG}-{arch}"


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


def ensure_rootfs(arch: str = NATIVE) -> str:
    """The Debian root filesystem imported as an image of `arch`; returns its tag."""
    tag = rootfs_tag(arch)
    key = rootfs_key(arch)
    if image_label(tag, INPUTS_LABEL) == key and image_config(tag, "Architecture", "") == arch:
        return tag
    if arch == NATIVE:
        subprocess.run(
            [
                "docker",
                "import",
                "--change",
                f"LABEL {INPUTS_LABEL}={key}",
                str(rootfs_tarball()),
                tag,
            ],
            check=True,
            capture_output=True,
        )
        return tag
    # This engine's `docker import` ignores --platform: a build records the architecture.
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="rootfs-context-") as work:
        context = Path(work)
        os.link(rootfs_tarball(arch), context / "rootfs.tar")
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


def names() -> StandIns:
    """The tags of the engine's platform's stand-ins, built or not."""
    return StandIns(
        uv=stand_in_tag("uv"),
        micromamba=stand_in_tag("micromamba"),
        lagging=stand_in_tag("micromamba", "-lagging"),
        cuda=stand_in_tag("micromamba", "-cuda"),
        old=stand_in_tag("micromamba", "-old"),
    )


def platform_names(platform: str) -> PlatformStandIns:
    """The tags of `platform`'s (linux/arm64) stand-ins, built or not."""
    arch = platform.split("/")[1]
    return PlatformStandIns(
        platform=platform,
        uv=stand_in_tag("uv", f"-{arch}"),
        micromamba=stand_in_tag("micromamba", f"-{arch}"),
    )


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
