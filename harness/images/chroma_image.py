"""The Chroma server that compose tests run, built here from the chromadb wheel.

No registry is reachable, so this is not chromadb/chroma: it is the chromadb wheel at the test
environment's version (its `chroma run` is the same Rust server the upstream image runs) with its
dependencies, installed by the host's uv for the bookworm root filesystem's Python 3.11, built by
from_rootfs.py. Like the upstream image its entrypoint is `chroma`, it listens on 8000 and keeps
its data in /data (chroma/). `python -m harness.images.chroma_image` builds it alone.
"""

from __future__ import annotations

import shutil
import subprocess
from importlib import metadata
from pathlib import Path

from harness.images import from_rootfs
from harness.images.base_images import engine_machine
from harness.images.naming import NAMESPACE
from harness.images.rootfs import BOOKWORM, CACHE

VERSION = metadata.version("chromadb")
UPSTREAM = f"chromadb/chroma:{VERSION}"
TAG = f"{NAMESPACE}/chroma:{VERSION}"
CONTEXT = Path(__file__).resolve().parent / "chroma"
# Bookworm's python3 and glibc: the wheels uv picks must run on them.
PYTHON = "3.11"
GLIBC = "2_36"
DESCRIPTION = (
    f"Stand-in for {UPSTREAM} built by ml-container-template's tests from the chromadb"
    f" {VERSION} wheel on Debian bookworm: not the real image, never one to ship"
)


def site_packages(machine: str) -> Path:
    """chromadb and its dependencies as a folder for PYTHONPATH, installed once and cached."""
    folder = CACHE / f"chroma-site-{VERSION}-{machine}"
    if (folder / "chromadb").is_dir():
        return folder
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("no `uv` on PATH to install chromadb for the Chroma stand-in with")
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--target", str(partial)]
        + ["--python-platform", f"{machine}-manylinux_{GLIBC}", "--python-version", PYTHON]
        + [f"chromadb=={VERSION}"],
        check=True,
        capture_output=True,
    )
    # Console scripts name the host's Python: the image has its own `chroma` (chroma/chroma).
    shutil.rmtree(partial / "bin", ignore_errors=True)
    partial.rename(folder)
    return folder


def ensure() -> str:
    """The image, built when missing or stale; returns its tag."""
    machine = engine_machine()

    def add_site(context: Path) -> None:
        shutil.copytree(site_packages(machine), context / "site", copy_function=hard_link)

    return from_rootfs.ensure(
        TAG,
        CONTEXT,
        BOOKWORM,
        inputs=(VERSION, machine),
        describe=lambda rootfs: DESCRIPTION,
        add=add_site,
    )


def hard_link(source: str, target: str) -> None:
    """The cached site's files in the build context without copying 400 MB."""
    Path(target).hardlink_to(source)


if __name__ == "__main__":
    print(ensure())
