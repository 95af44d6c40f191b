"""A server stand-in: a folder's Dockerfile built FROM a Debian root filesystem, under NAMESPACE.

The store servers' images (chroma_image.py, pgvector_image.py) are each a context folder, a
`Recipe` whose root filesystem the Dockerfile takes as its ROOTFS build arg, and a description
of what they stand in for. `ensure` builds one when missing or stale: INPUTS_LABEL holds a hash of
the root filesystem's key, the folder's files and the caller's own inputs, and a file lock per
image serialises builds.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness.docker import build, image_label
from harness.images.base_images import build_lock, digest, ensure_rootfs
from harness.images.naming import DESCRIPTION_LABEL, INPUTS_LABEL
from harness.images.rootfs import CACHE, Recipe, rootfs_key


def ensure(
    tag: str,
    folder: Path,
    recipe: Recipe,
    *,
    inputs: tuple[str, ...],
    describe: Callable[[str], str],
    build_args: dict[str, str] | None = None,
    add: Callable[[Path], None] | None = None,
) -> str:
    """`tag`, built from `folder` when missing or stale; returns it.

    `inputs`: what else the image depends on (a version); `describe(rootfs)`: its description
    label, given the root filesystem's tag; `add(context)`: puts more in the copied context.
    """
    files = sorted(path for path in folder.iterdir() if path.is_file())
    key = digest(
        rootfs_key(recipe=recipe),
        *inputs,
        *(f"{p.name}:{p.stat().st_mode & 0o111}" for p in files),
        *(p.read_bytes() for p in files),
    )
    name = tag.rsplit("/", 1)[-1].split(":")[0]
    with build_lock(name):
        if image_label(tag, INPUTS_LABEL) == key:
            return tag
        rootfs = ensure_rootfs(recipe=recipe)
        labels = {INPUTS_LABEL: key, DESCRIPTION_LABEL: describe(rootfs)}
        # In the cache, so that `add` may hard-link cached files into the context.
        with tempfile.TemporaryDirectory(dir=CACHE, prefix=f"{name}-context-") as work:
            context = Path(work) / "context"
            shutil.copytree(folder, context)
            if add is not None:
                add(context)
            args = {"ROOTFS": rootfs, **(build_args or {})}
            result = build(context, tag, build_args=args, labels=labels, network="none")
        assert result.returncode == 0, result.log
    return tag
