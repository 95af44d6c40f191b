"""The PostgreSQL server with pgvector that store tests run, built here from Debian trixie.

No registry is reachable, so this is not pgvector/pgvector: it is Debian trixie's
postgresql-17 and postgresql-17-pgvector on a debootstrapped root filesystem (rootfs.py) with
the official image's POSTGRES_* contract and uid (postgres/), built by from_rootfs.py.
`python -m harness.images.pgvector_image` builds it alone.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.images import from_rootfs
from harness.images.naming import NAMESPACE
from harness.images.rootfs import Recipe

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
    return from_rootfs.ensure(
        TAG,
        CONTEXT,
        RECIPE,
        inputs=(MAJOR,),
        describe=lambda rootfs: (
            f"Stand-in for {UPSTREAM} built by ml-container-template's tests from Debian trixie"
            f" ({package_versions(rootfs)}): not the real image, never one to ship"
        ),
        build_args={"MAJOR": MAJOR},
    )


if __name__ == "__main__":
    print(ensure())
