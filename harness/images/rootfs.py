"""A Debian minbase root filesystem, made by debootstrap and cached as a tarball.

The micromamba stand-in starts from bookworm with python3 (`BOOKWORM`), the pgvector server
from trixie with PostgreSQL (a `Recipe` of its own): no registry is reachable, and the machine's
own Debian mirror is. The tarball is cached under ~/.cache/ml-container-template/ by a hash of
its inputs.
For another architecture (arm64 on an amd64 machine) debootstrap runs with `--foreign` and its
second stage runs in a chroot under qemu-user-static, which .ci/arm64-emulation registers.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.cache import cache_root


@dataclass(frozen=True)
class Recipe:
    """What debootstrap installs (a suite, packages added to minbase) and what is left out."""

    suite: str
    packages: tuple[str, ...]
    name: str = "minbase"  # in the tarball's file name and the imported image's tag
    # Paths in the tree removed before it is packed (a package's default data, say).
    remove: tuple[str, ...] = ()


BOOKWORM = Recipe("bookworm", ("python3",))  # its python3 is 3.11, the Python the tests lock for
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


def rootfs_key(arch: str = NATIVE, recipe: Recipe = BOOKWORM) -> str:
    """What the tarball depends on: suite, mirror, packages, and a foreign architecture."""
    inputs = f"{recipe.suite}|{debian_mirror()}|minbase|{','.join(recipe.packages)}"
    if arch != NATIVE:  # the native key predates foreign ones: keep it, and its cached tarball
        inputs += f"|{arch}"
    if recipe.remove:  # likewise for removals
        inputs += f"|-{','.join(recipe.remove)}"
    return hashlib.sha256(inputs.encode()).hexdigest()[:16]


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(as_root(command), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")


def rootfs_tarball(arch: str = NATIVE, recipe: Recipe = BOOKWORM) -> Path:
    """The cached tarball, made by debootstrap on first use (minutes; more under emulation)."""
    suffix = "" if arch == NATIVE else f"-{arch}"
    key = rootfs_key(arch, recipe)
    target = CACHE / f"debian-{recipe.suite}-{recipe.name}{suffix}-{key}.tar"
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
                f"--include={','.join(recipe.packages)}",
                recipe.suite,
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
        leftovers = ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", *recipe.remove)
        globs = " ".join(f"{shlex.quote(str(root))}/{path}" for path in leftovers)
        subprocess.run(as_root(["sh", "-c", f"rm -rf {globs}"]), check=True)
        partial = Path(work) / "rootfs.tar"
        subprocess.run(
            as_root(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."]),
            check=True,
        )
        subprocess.run(as_root(["rm", "-rf", str(root)]), check=True)
        partial.replace(target)
    return target
