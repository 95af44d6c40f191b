"""The `serve` question: http renders the API, mcp the MCP server, none the CLI alone; both
servers share one service core and need a store.

Every store renders clean with serve=none here and with http (the default) in test_render.py;
mcp renders once per store here, and one mcp project runs its own tests and mypy.
"""

from __future__ import annotations

import pytest
import yaml

from harness import checks
from harness.compat import tomllib
from harness.projects import assert_generated_tests_pass, assert_types_check, synced_project
from harness.render import ANSWER_SETS, CATALOGUE, ROOT, answers_for, local_answers, render

STORE_SETS = sorted(
    name for name, answers in ANSWER_SETS.items() if answers.get("vector_store") != "none"
)
# The first answer set of each store: enough to render each store once more, with mcp.
STORE_OF = {name: ANSWER_SETS[name].get("vector_store", "chromadb") for name in STORE_SETS}
ONE_PER_STORE = sorted({store: name for name, store in reversed(STORE_OF.items())}.values())
PORT = CATALOGUE["serving"]["http"]["port"]
MCP_PORT = CATALOGUE["serving"]["mcp"]["port"]
WEB_STACK = ("fastapi", "uvicorn", "httpx", "prometheus-client", "mcp")


def package_dir(project):
    (package,) = [p for p in (project / "src").iterdir() if p.is_dir()]
    return package


def requirements(project) -> list[str]:
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    return pyproject["project"]["dependencies"] + pyproject["dependency-groups"]["dev"]


@pytest.mark.parametrize("name", STORE_SETS)
def test_serve_none_renders_the_cli_alone_and_passes_the_file_checks(tmp_path, name):
    project = render(tmp_path / "project", answers_for(name, serve="none"))
    checks.check_project(project)
    for module in ("server", "mcp_server.py", "service.py", "runtime.py"):
        assert not (package_dir(project) / module).exists()
    for test in ("test_server.py", "test_mcp_server.py", "test_service_core.py"):
        assert not (project / "tests" / test).exists()
    assert not [r for r in requirements(project) if r.startswith(WEB_STACK)]
    dockerfile = (project / "Dockerfile").read_text(encoding="utf-8")
    assert "EXPOSE" not in dockerfile and "HEALTHCHECK" not in dockerfile
    assert not (project / "compose.yaml").exists()
    assert not (project / "compose.keys.yaml").exists()


def test_serve_defaults_to_http_with_a_store_and_to_none_without(tmp_path):
    with_store = render(tmp_path / "store", answers_for("default"))
    assert "serve: http\n" in (with_store / ".copier-answers.yml").read_text()
    assert (package_dir(with_store) / "server" / "app.py").is_file()
    assert (package_dir(with_store) / "service.py").is_file()
    assert (package_dir(with_store) / "runtime.py").is_file()
    assert not (package_dir(with_store) / "mcp_server.py").exists()
    assert (with_store / "tests" / "test_server.py").is_file()
    assert (with_store / "tests" / "test_service_core.py").is_file()
    without = render(tmp_path / "none", answers_for("none-bare-311"))
    assert "serve: none\n" in (without / ".copier-answers.yml").read_text()
    assert not (package_dir(without) / "server").exists()


def test_http_serves_from_the_image_on_the_catalogue_port(tmp_path):
    project = render(tmp_path / "project", answers_for("default"))
    dockerfile = (project / "Dockerfile").read_text(encoding="utf-8")
    assert f"EXPOSE {PORT}" in dockerfile and "HEALTHCHECK" in dockerfile
    assert dockerfile.rstrip().endswith('"serve"]')
    compose = yaml.safe_load((project / "compose.yaml").read_text(encoding="utf-8"))
    [service] = compose["services"].values()
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    assert any(str(PORT) in str(port) for port in service["ports"])
    assert_keys_come_as_a_compose_secret(project, compose)


def assert_keys_come_as_a_compose_secret(project, compose) -> None:
    """compose.keys.yaml adds the key file to compose.yaml's one service as a secret."""
    keys = yaml.safe_load((project / "compose.keys.yaml").read_text(encoding="utf-8"))
    prefix = package_dir(project).name.upper() + "_"
    assert set(keys["services"]) == set(compose["services"])
    [service] = keys["services"].values()
    assert service["secrets"] == ["api_keys"]
    assert service["environment"] == {f"{prefix}API_KEYS_FILE": "/run/secrets/api_keys"}
    assert keys["secrets"]["api_keys"]["file"].startswith(f"${{{prefix}API_KEYS_FILE:?")


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


@pytest.mark.parametrize("name", ONE_PER_STORE)
def test_serve_mcp_renders_the_mcp_server_and_passes_the_file_checks(tmp_path, name):
    project = render(tmp_path / "project", answers_for(name, serve="mcp"))
    checks.check_project(project)
    package = package_dir(project)
    assert (package / "mcp_server.py").is_file() and (package / "service.py").is_file()
    assert not (package / "server").exists()
    assert (project / "tests" / "test_mcp_server.py").is_file()
    assert (project / "tests" / "test_service_core.py").is_file()
    assert not (project / "tests" / "test_server.py").exists()
    names = {r.split(">")[0].split("=")[0].split("<")[0] for r in requirements(project)}
    assert {"mcp", "uvicorn"} <= names and not {"fastapi", "prometheus-client"} & names


def test_mcp_serves_streamable_http_from_the_image_with_compose_and_stdio_from_the_cli(tmp_path):
    project = render(tmp_path / "project", answers_for("default", serve="mcp"))
    dockerfile = (project / "Dockerfile").read_text(encoding="utf-8")
    prefix = package_dir(project).name.upper()
    assert f"EXPOSE {MCP_PORT}" in dockerfile and "/readyz" in dockerfile
    assert f"{prefix}_HOST=0.0.0.0" in dockerfile and f"{prefix}_PORT={MCP_PORT}" in dockerfile
    assert dockerfile.rstrip().endswith('"serve"]')
    compose = yaml.safe_load((project / "compose.yaml").read_text(encoding="utf-8"))
    [service] = compose["services"].values()
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    assert any(str(MCP_PORT) in str(port) for port in service["ports"])
    assert_keys_come_as_a_compose_secret(project, compose)
    cli = (package_dir(project) / "cli.py").read_text(encoding="utf-8")
    assert '"--stdio"' in cli
    # The README's first screen: how to start it, and how a client connects either way.
    first_screen = "\n".join((project / "README.md").read_text(encoding="utf-8").splitlines()[:80])
    assert "docker compose up" in first_screen
    assert f"http://127.0.0.1:{MCP_PORT}/mcp" in first_screen and "serve --stdio" in first_screen


def test_mcp_without_a_store_is_refused_by_name(tmp_path):
    destination = tmp_path / "project"
    with pytest.raises(ValueError, match="question 'serve'") as refused:
        render(destination, answers_for("none-bare-311", serve="mcp"))
    first, *details = str(refused.value).splitlines()
    assert first == "Validation error for question 'serve': mcp needs a vector store"
    assert "MCP server" in " ".join(details) and "serve=none" in " ".join(details)
    assert all(len(line) <= 80 for line in [first, *details])
    assert not destination.exists()


@pytest.fixture(scope="module")
def mcp_project(mirror_url, tmp_path_factory):
    """An mcp project on the default store with the hashing embedder, locked and synced."""
    answers = answers_for("default", ml_libraries=[], serve="mcp", **local_answers(mirror_url))
    return synced_project(tmp_path_factory.mktemp("mcp"), answers)


@pytest.mark.slow
def test_an_mcp_project_passes_its_own_tests_and_mypy(mcp_project):
    assert_generated_tests_pass(mcp_project)
    assert_types_check(mcp_project)
