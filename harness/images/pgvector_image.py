"""The PostgreSQL server with pgvector that store tests run, built here from Debian trixie.

No registry is reachable, so this is not pgvector/pgvector: it is Debian trixie's
postgresql-17 and postgresql-17-pgvector on a debootstrapped root filesystem (rootfs.py),
imported, with the official image's POSTGRES_* contract and uid (postgres/), under NAMESPACE
and labelled a stand-in. Rebuilt only when its inputs change; a file lock serialises builds.
`python -m harness.images.pgvector_image` builds it alone.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.docker import build, image_label
from harness.images.base_images import build_lock, digest, ensure_rootfs
from harness.images.naming import DESCRIPTION_LABEL, INPUTS_LABEL, NAMESPACE
from harness.images.rootfs import Recipe, rootfs_key

MAJOR = "17"
UPSTREAM = f"pgvector/pgvector:pg{MAJOR}"
TAG = f"{NAMESPACE}/pgvector:pg{MAJOR}"
PACKAGES = (f"postgresql-{MAJOR}", f"postgresql-{MAJOR}-pgvector")
RECIPE = Recipe(
    "trixie",
    PACKAGES,
    name=f"postgresql-{MAJOR}",
    # The cluster Debian's package creates is not the one the entrypoint makes in PGDATA.
    remove=(
        f"var/lib/postgresql/{MAJOR}/main",
        f"etc/postgresql/{MAJOR}/main",
        "usr/share/doc/*",
        "usr/share/man/*",
        "usr/share/locale/*",
    ),
)
CONTEXT = Path(__file__).resolve().parent / "postgres"


def package_versions(rootfs: str) -> str:
    """`postgresql-17 17.x, postgresql-17-pgvector 0.8.x`, as the root filesystem's dpkg says."""
    query = ["dpkg-query", "--show", "--showformat=${Package} ${Version}, ", *PACKAGES]
    listed = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", rootfs, *query],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return listed.rstrip(", ")


def ensure() -> str:
    """The image, built when missing or stale; returns its tag."""
    files = sorted(path for path in CONTEXT.iterdir() if path.is_file())
    inputs = digest(
        rootfs_key(recipe=RECIPE),
        MAJOR,
        *(f"{p.name}:{p.stat().st_mode & 0o111}" for p in files),
        *(p.read_bytes() for p in files),
    )
    with build_lock("pgvector"):
        if image_label(TAG, INPUTS_LABEL) == inputs:
            return TAG
        rootfs = ensure_rootfs(recipe=RECIPE)
        description = (
            f"Stand-in for {UPSTREAM} built by ml-container-template's tests from Debian trixie"
            f" ({package_versions(rootfs)}): not the real image, never one to ship"
        )
        with tempfile.TemporaryDirectory() as work:
            context = Path(work) / "context"
            shutil.copytree(CONTEXT, context)
            result = build(
                context,
                TAG,
                build_args={"ROOTFS": rootfs, "MAJOR": MAJOR},
                labels={INPUTS_LABEL: inputs, DESCRIPTION_LABEL: description},
                network="none",
            )
        assert result.returncode == 0, result.log
    return TAG


if __name__ == "__main__":
    print(ensure())
