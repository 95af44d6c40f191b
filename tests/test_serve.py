"""The `serve` question: http renders the API, none the CLI alone; http needs a store."""

from __future__ import annotations

import pytest
import yaml

from tests.support import checks
from tests.support.compat import tomllib
from tests.support.render import ANSWER_SETS, CATALOGUE, ROOT, answers_for, render

STORE_SETS = sorted(
    name for name, answers in ANSWER_SETS.items() if answers.get("vector_store") != "none"
)
PORT = CATALOGUE["serving"]["http"]["port"]


def package_dir(project):
    (package,) = [p for p in (project / "src").iterdir() if p.is_dir()]
    return package


@pytest.mark.parametrize("name", STORE_SETS)
def test_serve_none_renders_the_cli_alone_and_passes_the_file_checks(tmp_path, name):
    project = render(tmp_path / "project", answers_for(name, serve="none"))
    checks.check_project(project)
    assert not (package_dir(project) / "server.py").exists()
    assert not (project / "tests" / "test_server.py").exists()
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    requirements = pyproject["project"]["dependencies"] + pyproject["dependency-groups"]["dev"]
    assert not [r for r in requirements if r.startswith(("fastapi", "uvicorn", "httpx"))]
    dockerfile = (project / "Dockerfile").read_text(encoding="utf-8")
    assert "EXPOSE" not in dockerfile and "HEALTHCHECK" not in dockerfile
    assert not (project / "compose.yaml").exists()


def test_serve_defaults_to_http_with_a_store_and_to_none_without(tmp_path):
    with_store = render(tmp_path / "store", answers_for("default"))
    assert "serve: http\n" in (with_store / ".copier-answers.yml").read_text()
    assert (package_dir(with_store) / "server.py").is_file()
    assert (with_store / "tests" / "test_server.py").is_file()
    without = render(tmp_path / "none", answers_for("none-bare-311"))
    assert "serve: none\n" in (without / ".copier-answers.yml").read_text()
    assert not (package_dir(without) / "server.py").exists()


def test_http_serves_from_the_image_on_the_catalogue_port(tmp_path):
    project = render(tmp_path / "project", answers_for("default"))
    dockerfile = (project / "Dockerfile").read_text(encoding="utf-8")
    assert f"EXPOSE {PORT}" in dockerfile and "HEALTHCHECK" in dockerfile
    assert dockerfile.rstrip().endswith('"serve"]')
    compose = yaml.safe_load((project / "compose.yaml").read_text(encoding="utf-8"))
    [service] = compose["services"].values()
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    assert any(str(PORT) in str(port) for port in service["ports"])


def test_http_without_a_store_is_refused_by_name(tmp_path):
    destination = tmp_path / "project"
    with pytest.raises(ValueError, match="question 'serve'") as refused:
        render(destination, answers_for("none-bare-311", serve="http"))
    first, *details = str(refused.value).splitlines()
    assert first == "Validation error for question 'serve': http needs a vector store"
    assert "serve=none" in " ".join(details)
    assert all(len(line) <= 80 for line in [first, *details])
    assert not destination.exists()


def test_the_serve_question_offers_every_serving_the_catalogue_knows():
    question = yaml.safe_load((ROOT / "copier.yml").read_text())["serve"]
    assert question["choices"] == ["http", "mcp", "none"]
    assert set(CATALOGUE["serving"]) == set(question["choices"])
