"""A Debian minbase root filesystem with python3, made by debootstrap and cached as a tarball.

The micromamba stand-in starts from it: no registry is reachable, and the machine's own Debian
mirror is. The tarball is cached under ~/.cache/ml-container-template/ by a hash of its inputs.
For another architecture (arm64 on an amd64 machine) debootstrap runs with `--foreign` and its
second stage runs in a chroot under qemu-user-static, which .ci/arm64-emulation registers.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.cache import cache_root

SUITE = "bookworm"  # its python3 is 3.11, the Python the image tests lock for
PACKAGES = ("python3",)
# Where the machine is not Debian (GitHub's Ubuntu runners): Debian's own redirector.
FALLBACK_MIRROR = "http://deb.debian.org/debian"
CACHE = cache_root()
# The architecture of the machine's own Debian, which debootstrap builds for by default.
NATIVE = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


def as_root(command: list[str]) -> list[str]:
    return command if os.geteuid() == 0 else ["sudo", *command]


def debian_mirror() -> str:
    """The main Debian archive from the machine's apt sources (deb822 or one-line format)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for uri in re.findall(r"^URIs:\s*(\S+)", path.read_text(), re.M):
            if re.search(r"/debian/?$", uri):
                return uri
    one_line = Path("/etc/apt/sources.list")
    if one_line.exists():
        match = re.search(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+/debian/?)\s", one_line.read_text(), re.M)
        if match:
            return match.group(1)
    return FALLBACK_MIRROR


def ensure_debootstrap() -> str:
    if not shutil.which("debootstrap"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(as_root(["apt-get", "update", "-qq"]), check=True, env=env)
        subprocess.run(
            as_root(
                [
                    "apt-get",
                    "install",
                    "-y",
                    "-qq",
                    "--no-install-recommends",
                    "debootstrap",
                    "debian-archive-keyring",
                ]
            ),
            check=True,
            env=env,
            capture_output=True,
        )
    return shutil.which("debootstrap") or "/usr/sbin/debootstrap"


def rootfs_key(arch: str = NATIVE) -> str:
    """What the tarball depends on: suite, mirror, packages, and a foreign architecture."""
    inputs = f"{SUITE}|{debian_mirror()}|minbase|{','.join(PACKAGES)}"
    if arch != NATIVE:  # the native key predates foreign ones: keep it, and its cached tarball
        inputs += f"|{arch}"
    return hashlib.sha256(inputs.encode()).hexdigest()[:16]


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(as_root(command), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")


def rootfs_tarball(arch: str = NATIVE) -> Path:
    """The cached tarball, made by debootstrap on first use (minutes; more under emulation)."""
    suffix = "" if arch == NATIVE else f"-{arch}"
    target = CACHE / f"debian-{SUITE}-minbase{suffix}-{rootfs_key(arch)}.tar"
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    debootstrap = ensure_debootstrap()
    foreign = arch != NATIVE
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="rootfs-") as work:
        root = Path(work) / "root"
        options = [f"--arch={arch}", "--foreign"] if foreign else []
        _run(
            [
                debootstrap,
                "--variant=minbase",
                *options,
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(root),
                debian_mirror(),
            ],
            "debootstrap",
        )
        if foreign:  # unpacked only: configure the packages with the tree's own binaries
            _run(
                ["chroot", str(root), "/debootstrap/debootstrap", "--second-stage"], "second stage"
            )
        # Downloaded .debs and apt lists are not part of a base image.
        subprocess.run(
            as_root(
                [
                    "sh",
                    "-c",
                    f"rm -rf {root}/var/cache/apt/archives/*.deb {root}/var/lib/apt/lists/*",
                ]
            ),
            check=True,
        )
        partial = Path(work) / "rootfs.tar"
        subprocess.run(
            as_root(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."]),
            check=True,
        )
        subprocess.run(as_root(["rm", "-rf", str(root)]), check=True)
        partial.replace(target)
    return target
