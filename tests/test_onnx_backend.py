"""The ONNX backends (`model_backend=onnx`, `onnx-int8`): rendered, locked, synced and run for real.

Each project is locked against the local CPU mirror and synced as its developer would. Its own
tests export all-MiniLM-L6-v2 from the dev group's wheel to ONNX, offline, and embed with it. The
quality test runs torch and the project's ONNX embedder in one process of the project's own
environment (harness/backend_probe.py) on a fixed query set: the vectors must agree, never timed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from harness.embedding_texts import DOCUMENTS, QUERIES
from harness.locks import locked_packages
from harness.projects import (
    assert_generated_tests_pass,
    assert_types_check,
    run,
    synced_project,
)
from harness.render import CATALOGUE, ROOT, answers_for, local_answers
from harness.template_plan import plan

BACKENDS = ["onnx", "onnx-int8"]
# The quality bars against torch's own vectors: fp32 is the same model, int8 is close.
QUALITY = {
    "onnx": {"mean_cosine": 0.99, "same_top1": 1.0},
    "onnx-int8": {"mean_cosine": 0.95, "same_top1": 0.95},
}
# Run with the project's interpreter, never imported here: it imports torch.
PROBE = ROOT / "harness" / "backend_probe.py"
[MODEL_WHEEL] = CATALOGUE["libraries"]["sentence-transformers"]["test_libraries"]


def package_of(project: Path) -> str:
    return next(path.parent.name for path in (project / "src").glob("*/__init__.py"))


# ------------------------------------------------------------------------------- the plan


def test_torch_stays_the_default_and_adds_nothing():
    default = plan()
    assert default["model_backend"]["name"] == "torch"
    assert not any(dep.startswith(("onnx", "onnxruntime")) for dep in default["dependencies"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_onnx_backend_adds_onnx_runtime_and_names_a_file_per_machine(backend):
    chosen = plan(model_backend=backend)
    assert chosen["model_backend"]["onnx"]
    names = {dep.split(">")[0].split("=")[0] for dep in chosen["dependencies"]}
    assert {"onnxruntime", "onnx"} <= names
    files = chosen["model_backend"]["files"]
    assert set(files) == {"x86_64", "aarch64"}
    if backend == "onnx-int8":
        assert files == {
            "x86_64": "onnx/model_qint8_avx512_vnni.onnx",
            "aarch64": "onnx/model_qint8_arm64.onnx",
        }
    else:
        assert set(files.values()) == {"onnx/model.onnx"}


def test_without_a_model_to_run_the_backend_falls_back_to_torch():
    for answers in ({"ml_libraries": ["torch"]}, {"vector_store": "none", "serve": "none"}):
        chosen = plan(model_backend="onnx-int8", **answers)
        assert chosen["model_backend"]["name"] == "torch"
        assert not any(dep.startswith("onnx") for dep in chosen["dependencies"])


def test_onnx_runtime_gpu_builds_and_providers_are_gpu_packages():
    patterns = plan()["gpu_packages"]
    assert {"onnxruntime-gpu", "tensorrt*"} <= set(patterns["pypi"])
    assert {"CUDA*", "Tensorrt*"} <= set(patterns["execution_providers"])


# ------------------------------------------------------------------ each backend, locked and run


@pytest.fixture(scope="module", params=BACKENDS)
def onnx_project(request, mirror_url, tmp_path_factory) -> tuple[str, Path]:
    backend = request.param
    answers = answers_for("default", model_backend=backend, **local_answers(mirror_url))
    return backend, synced_project(tmp_path_factory.mktemp(backend), answers)


@pytest.mark.slow
def test_the_lock_holds_onnx_runtime_and_no_gpu_package(onnx_project):
    _, project = onnx_project
    packages = locked_packages(project)
    assert {"onnxruntime", "onnx"} <= set(packages)
    report = run(project, "uv", "run", "--script", "scripts/lock_report.py")
    assert report.returncode == 0, report.stdout + report.stderr
    assert "onnxruntime-gpu" not in packages


@pytest.mark.slow
def test_generated_tests_export_and_embed_offline(onnx_project):
    _, project = onnx_project
    report = assert_generated_tests_pass(project)
    for test in (
        "test_embeddings.py::test_the_model_matches_meaning_where_no_word_is_shared",
        "test_cli.py::test_the_model_finds_texts_by_meaning_offline_without_progress_bars",
    ):
        assert f"tests/{test} PASSED" in report, report[-3000:]


@pytest.mark.slow
def test_mypy_finds_no_errors(onnx_project):
    _, project = onnx_project
    assert_types_check(project)


@pytest.mark.slow
def test_doctor_lists_only_the_cpu_provider(onnx_project):
    _, project = onnx_project
    result = run(project, "uv", "run", "--locked", "python", "-m", package_of(project), "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CPU-only: yes" in result.stdout
    [line] = [line for line in result.stdout.splitlines() if line.startswith("ONNX Runtime")]
    assert "CPUExecutionProvider" in line and "CUDA" not in line, line


@pytest.mark.slow
def test_onnx_vectors_agree_with_torch_on_the_fixed_query_set(onnx_project):
    """Quality, not speed: mean cosine to torch's vectors and the same nearest document."""
    backend, project = onnx_project
    model = run(
        project,
        "uv",
        "run",
        "--locked",
        "python",
        "-c",
        f"import {MODEL_WHEEL['import']} as m; print(m.get_model_path())",
    )
    assert model.returncode == 0, model.stderr
    texts = json.dumps({"documents": DOCUMENTS, "queries": QUERIES, "corpus": []})
    probe = run(
        project,
        "uv",
        "run",
        "--locked",
        "python",
        str(PROBE),
        package_of(project),
        model.stdout.strip(),
        input=texts,
        timeout=1200,
    )
    assert probe.returncode == 0, probe.stdout[-2000:] + probe.stderr[-3000:]
    measured = json.loads(probe.stdout.splitlines()[-1])[backend]
    print(backend, measured, file=sys.stderr)
    for figure, floor in QUALITY[backend].items():
        assert measured[figure] >= floor, (figure, measured)
