"""The Chroma server that compose tests run, built here from the chromadb wheel.

No registry is reachable, so this is not chromadb/chroma: it is the chromadb wheel at the test
environment's version (its `chroma run` is the same Rust server the upstream image runs) with its
dependencies, installed by the host's uv for the bookworm root filesystem's Python 3.11, under
NAMESPACE and labelled a stand-in. Like the upstream image its entrypoint is `chroma`, it listens
on 8000 and keeps its data in /data (chroma/). Rebuilt only when its inputs change; a file lock
serialises builds. `python -m harness.images.chroma_image` builds it alone.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

from harness.docker import build, image_label
from harness.images.base_images import build_lock, digest, engine_machine, ensure_rootfs
from harness.images.naming import DESCRIPTION_LABEL, INPUTS_LABEL, NAMESPACE
from harness.images.rootfs import BOOKWORM, CACHE, rootfs_key

VERSION = metadata.version("chromadb")
UPSTREAM = f"chromadb/chroma:{VERSION}"
TAG = f"{NAMESPACE}/chroma:{VERSION}"
CONTEXT = Path(__file__).resolve().parent / "chroma"
# Bookworm's python3 and glibc: the wheels uv picks must run on them.
PYTHON = "3.11"
GLIBC = "2_36"


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
    files = sorted(path for path in CONTEXT.iterdir() if path.is_file())
    machine = engine_machine()
    inputs = digest(
        rootfs_key(recipe=BOOKWORM),
        VERSION,
        machine,
        *(f"{p.name}:{p.stat().st_mode & 0o111}" for p in files),
        *(p.read_bytes() for p in files),
    )
    with build_lock("chroma"):
        if image_label(TAG, INPUTS_LABEL) == inputs:
            return TAG
        rootfs = ensure_rootfs(recipe=BOOKWORM)
        description = (
            f"Stand-in for {UPSTREAM} built by ml-container-template's tests from the chromadb"
            f" {VERSION} wheel on Debian bookworm: not the real image, never one to ship"
        )
        with tempfile.TemporaryDirectory(dir=CACHE, prefix="chroma-context-") as work:
            context = Path(work) / "context"
            shutil.copytree(CONTEXT, context)
            shutil.copytree(site_packages(machine), context / "site", copy_function=hard_link)
            result = build(
                context,
                TAG,
                build_args={"ROOTFS": rootfs},
                labels={INPUTS_LABEL: inputs, DESCRIPTION_LABEL: description},
                network="none",
            )
        assert result.returncode == 0, result.log
    return TAG


def hard_link(source: str, target: str) -> None:
    """The cached site's files in the build context without copying 400 MB."""
    Path(target).hardlink_to(source)


if __name__ == "__main__":
    print(ensure())
