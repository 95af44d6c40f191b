"""Render every answer set and check what a user would: files parse, lint clean, CPU-only specs."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from harness import checks
from harness.compat import tomllib
from harness.locks import TORCH_FAMILY
from harness.render import ANSWER_SETS, CATALOGUE, answers_for, render

INDEX_NAME = CATALOGUE["torch_index_name"]


@pytest.fixture(scope="module", params=sorted(ANSWER_SETS))
def rendered(request, tmp_path_factory):
    answers = answers_for(request.param)
    project = render(tmp_path_factory.mktemp(request.param) / "project", answers)
    recorded = yaml.safe_load((project / ".copier-answers.yml").read_text())
    return project, recorded


def requirement_names(pyproject: dict) -> set[str]:
    return {
        canonicalize_name(Requirement(req).name) for req in pyproject["project"]["dependencies"]
    }


def test_project_passes_the_full_file_checks(rendered):
    project, _ = rendered
    checks.check_project(project)


def test_the_project_name_reaches_the_files_intact(rendered, request):
    """Quotes and `#` survive the answers file and the README title (escaped for Markdown)."""
    project, answers = rendered
    name = answers_for(request.node.callspec.params["rendered"])["project_name"]
    assert answers["project_name"] == name
    title = (project / "README.md").read_text(encoding="utf-8").splitlines()[0]
    assert title.startswith("# ") and re.sub(r"\\(.)", r"\1", title[2:]) == name


def test_some_answer_set_names_a_project_with_quotes_and_a_hash():
    assert any(
        '"' in s.get("project_name", "") and "#" in s.get("project_name", "")
        for s in ANSWER_SETS.values()
    )


def test_mypy_covers_every_python_folder(rendered):
    project, _ = rendered
    files = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["mypy"]["files"]
    folders = {path.relative_to(project).parts[0] for path in project.rglob("*.py")}
    assert folders <= set(files), f"mypy leaves out {sorted(folders - set(files))}"


def test_scripts_type_check(rendered):
    """The project's own mypy settings, on the Python it targets; src/ needs its environment."""
    project, answers = rendered
    # No cache: it would land in the project, among the files the other tests read.
    options = ["--cache-dir", os.devnull, "--python-version", answers["python_version"]]
    result = subprocess.run(
        [sys.executable, "-m", "mypy", *options, "scripts"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dependabot_covers_uv_and_actions(rendered):
    project, _ = rendered
    config = project / ".github" / "dependabot.yml"
    result = subprocess.run(
        [checks.tool("check-jsonschema"), "--builtin-schema", "vendor.dependabot", str(config)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    updates = yaml.safe_load(config.read_text())["updates"]
    # No docker entry: Dependabot does not read the ARG defaults the FROM lines use.
    assert {u["package-ecosystem"] for u in updates} == {"uv", "github-actions"}
    assert all(u["directory"] == "/" for u in updates)


def test_python_version_is_the_same_everywhere(rendered):
    project, answers = rendered
    version = answers["python_version"]
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    minor = int(version.split(".")[1])
    assert pyproject["project"]["requires-python"] == f">={version},<3.{minor + 1}"
    python = next(s for s in checks.conda_specs(project) if s.name.normalized == "python")
    assert str(python.version) == f"{version}.*"
    assert (project / ".python-version").read_text().strip() == version


def test_torch_family_only_from_the_explicit_cpu_index(rendered):
    project, answers = rendered
    uv = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["uv"]
    assert uv["index"] == [
        {"name": INDEX_NAME, "url": answers["torch_index_url"], "explicit": True}
    ]
    assert {
        name for name, source in uv["sources"].items() if source == {"index": INDEX_NAME}
    } == TORCH_FAMILY
    assert "index-strategy" not in uv and "extra-index-url" not in uv


def test_anything_that_pulls_torch_makes_it_a_direct_dependency(rendered):
    project, answers = rendered
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    names = requirement_names(pyproject)
    needs_torch = any(
        CATALOGUE["libraries"][lib].get("needs_torch") for lib in answers["ml_libraries"]
    )
    assert ("torch" in names) == needs_torch
    chosen = {CATALOGUE["libraries"][lib]["pypi"] for lib in answers["ml_libraries"]}
    assert chosen <= names


def test_lock_environments_follow_the_platforms(rendered):
    project, answers = rendered
    uv = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["uv"]
    expected = [CATALOGUE["platforms"][p]["marker"] for p in answers["lock_platforms"]]
    assert uv["environments"] == expected
    assert uv["required-environments"] == expected


def test_conda_owns_the_torch_family_only_under_the_conda_installer(rendered):
    project, answers = rendered
    conda = {spec.name.normalized for spec in checks.conda_specs(project)}
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    torch_in_resolution = "torch" in requirement_names(pyproject)
    if answers["torch_installer"] == "conda" and torch_in_resolution:
        assert "pytorch-cpu" in conda
    else:
        assert not conda & {"pytorch-cpu", "torchvision", "torchaudio"}
    assert ("faiss-cpu" in conda) == (answers["vector_store"] == "faiss")


def test_dockerfile_skips_exactly_what_conda_owns(rendered):
    project, _ = rendered
    instructions = checks.check_dockerfile(project)
    syncs = [i.value[0] for i in instructions if i.cmd == "RUN" and "uv sync" in i.value[0]]
    assert len(syncs) == 2
    conda_as_pypi = checks.conda_provides(project)
    for command in syncs:
        words = command.split()
        skipped = {words[i + 1] for i, w in enumerate(words) if w == "--no-install-package"}
        assert skipped == conda_as_pypi
        assert "--inexact" in words and "--locked" in words and "--no-dev" in words


def test_dockerfile_dependency_layer_sees_only_the_project_metadata(rendered):
    project, _ = rendered
    instructions = checks.check_dockerfile(project)
    first_sync = next(i for i in instructions if i.cmd == "RUN" and "uv sync" in i.value[0])
    binds = [f for f in first_sync.flags if "type=bind" in f]
    assert sorted(b.split("source=")[1].split(",")[0] for b in binds) == [
        "pyproject.toml",
        "uv.lock",
    ]
    assert "--no-install-project" in first_sync.value[0]


def test_runtime_guard_and_user(rendered):
    project, answers = rendered
    instructions = checks.check_dockerfile(project)
    stages = [i.value[2] for i in instructions if i.cmd == "FROM"]
    assert stages == ["uv", "conda", "app", "runtime"]
    last_from = max(n for n, i in enumerate(instructions) if i.cmd == "FROM")
    runtime = instructions[last_from:]
    package = answers["package_name"]
    assert any(i.cmd == "RUN" and list(i.value[-2:]) == [package, "doctor"] for i in runtime)
    user = next(i for i in runtime if i.cmd == "USER").value[0]
    assert user.split(":")[0].isdigit() and user.split(":")[0] != "0"
    cmd = next(i for i in runtime if i.cmd == "CMD")
    serve = ["serve"] if answers["serve"] != "none" else []
    assert list(cmd.value) == ["python", "-m", package, *serve]
    env = dict(zip(*[iter(next(i for i in runtime if i.cmd == "ENV").value)] * 2, strict=True))
    assert env["UV_INDEX"].strip('"') == f"{INDEX_NAME}={answers['torch_index_url']}"
    assert env["PIP_EXTRA_INDEX_URL"].strip('"') == answers["torch_index_url"]


def test_every_dockerfile_instruction_has_a_why_comment(rendered):
    project, _ = rendered
    lines = (project / "Dockerfile").read_text().splitlines()
    previous = ""
    for number, line in enumerate(lines):
        starts_instruction = line and not line[0].isspace() and not line.startswith("#")
        if starts_instruction and not lines[number - 1].endswith("\\"):
            same_kind = previous.split(" ")[0] == line.split(" ")[0] == "ARG"
            assert lines[number - 1].startswith("#") or same_kind, f"no comment above: {line}"
            previous = line


@pytest.mark.parametrize("installer", ["conda", "uv"])
def test_torchaudio_takes_the_release_line_that_has_it(tmp_path, installer):
    """torchaudio stopped at 2.11: choosing it moves the whole torch family, conda and uv alike.

    conda-forge has no torchaudio built for its pytorch 2.11, so that line says `conda: false`
    and the family comes from the CPU index under either installer.
    """
    answers = answers_for(
        "default", ml_libraries=["torchaudio", "torchvision"], torch_installer=installer
    )
    project = render(tmp_path / "project", answers)
    requirements = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    assert {"torch==2.11.*", "torchvision==0.26.*", "torchaudio==2.11.*"} <= set(
        requirements["dependencies"]
    )
    specs = {str(spec) for spec in checks.conda_specs(project)}
    assert not any(spec.startswith(("pytorch", "torch")) for spec in specs)
    dockerfile = (project / "Dockerfile").read_text()
    assert "--no-install-package torch" not in dockerfile, "uv must install the family"
