"""Projects with a server store, generated, locked and run against real servers on loopback.

pgvector runs as the PostgreSQL 17 + pgvector image built from Debian trixie (harness/pg_server.py,
password from a file), Chroma as `chroma run` from the chromadb wheel (harness/chroma_server.py).
Each project's own tests read the server's address from the environment, as a developer's CI
would give it, and must pass without a skip. No Qdrant server can run here: its project's tests
prove what they can without one (an unreachable server is StoreUnavailable, no secret is shown,
and under CI=true a missing address fails saying what to set); the live workflow runs the rest
against the official image.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from harness import docker
from harness.chroma_server import ChromaServer, chroma_server
from harness.pg_server import DATABASE, USER, pgvector_server
from harness.projects import (
    OFFLINE,
    assert_generated_tests_pass,
    assert_types_check,
    run,
    synced_project,
)
from harness.render import ANSWER_SETS, CATALOGUE, answers_for, local_answers, render


def prefix_of(project: Path) -> str:
    (package,) = [p.name for p in (project / "src").iterdir() if p.is_dir()]
    return package.upper() + "_"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def pgvector_project(mirror_url, tmp_path_factory) -> Path:
    answers = answers_for("pgvector-http", ml_libraries=[], **local_answers(mirror_url))
    return synced_project(tmp_path_factory.mktemp("pgvector"), answers)


@pytest.fixture(scope="module")
def chroma_project(mirror_url, tmp_path_factory) -> Path:
    answers = answers_for("chromadb-server", **local_answers(mirror_url))
    return synced_project(tmp_path_factory.mktemp("chroma"), answers)


@pytest.fixture(scope="module")
def qdrant_project(mirror_url, tmp_path_factory) -> Path:
    answers = answers_for("qdrant-server-mcp", **local_answers(mirror_url))
    return synced_project(tmp_path_factory.mktemp("qdrant"), answers)


@pytest.mark.slow
@pytest.mark.image
def test_the_pgvector_project_passes_its_own_tests_against_a_real_postgresql(
    pgvector_project, tmp_path, stand_in_audit
):
    docker.require_engine()
    prefix = prefix_of(pgvector_project)
    with pgvector_server(tmp_path) as server:
        stand_in_audit.add(server.image)
        env = {
            f"{prefix}STORE_URL": f"postgresql://127.0.0.1:{server.port}/{DATABASE}?user={USER}",
            f"{prefix}STORE_SECRET_FILE": str(server.password_file),
            "CI": "true",
        }
        report = assert_generated_tests_pass(pgvector_project, env)
    assert (
        "test_store_server.py::test_the_same_id_from_two_replicas_leaves_one_document PASSED"
        in report
    )
    assert_types_check(pgvector_project)


@pytest.mark.slow
def test_the_chroma_server_project_passes_its_own_tests_against_a_real_chroma(
    chroma_project, tmp_path
):
    prefix = prefix_of(chroma_project)
    with chroma_server(tmp_path / "chroma", tmp_path / "chroma.log") as server:
        env = {f"{prefix}STORE_URL": server.url, "CI": "true"}
        report = assert_generated_tests_pass(chroma_project, env)
    assert "test_a_fresh_replica_with_another_embedder_is_refused_in_one_line PASSED" in report
    assert_types_check(chroma_project)
    # The thin client only: no Chroma server, onnxruntime or tokenizers in the project.
    lock = (chroma_project / "uv.lock").read_text(encoding="utf-8")
    assert 'name = "chromadb-client"' in lock
    assert 'name = "chromadb"\n' not in lock and 'name = "onnxruntime"' not in lock


@pytest.mark.slow
def test_the_qdrant_server_project_proves_what_it_can_without_a_server(qdrant_project):
    prefix = prefix_of(qdrant_project)
    tests = "tests/test_store_server.py"
    unreachable = {f"{prefix}STORE_URL": f"http://127.0.0.1:{closed_port()}", "CI": "true"}
    # The MCP tools, too, say the store is unavailable rather than wait for it.
    tool = run(
        qdrant_project,
        *("uv", "run", "--locked", "pytest", "-q", "tests/test_mcp_server.py"),
        *("-k", "does_not_answer"),
        env=unreachable,
    )
    assert tool.returncode == 0 and "1 passed" in tool.stdout, tool.stdout[-3000:]
    result = run(
        qdrant_project,
        "uv",
        "run",
        "--locked",
        "pytest",
        "-q",
        tests,
        "-k",
        "unreachable or password",
        env=unreachable,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 passed" in result.stdout
    # Under CI=true, no address is a failure that says what to set, never a skip.
    missing = run(
        qdrant_project,
        "uv",
        "run",
        "--locked",
        "pytest",
        "-q",
        tests,
        "-k",
        "nearest",
        env={f"{prefix}STORE_URL": "", "CI": "true"},
    )
    assert missing.returncode == 1, missing.stdout[-3000:]
    assert f"set {prefix}STORE_URL to a qdrant server's address" in missing.stdout
    assert_types_check(qdrant_project)


# ------------------------------------------------------------------ the service through an outage

DRIVER = Path(__file__).resolve().parents[1] / "harness" / "outage_driver.py"


class Driver:
    """The project's app under FastAPI's TestClient, in the project's own environment."""

    def __init__(self, project: Path, env: dict[str, str]) -> None:
        package = prefix_of(project).rstrip("_").lower()
        command = ["uv", "run", "--locked", "python", str(DRIVER), package]
        self.process = subprocess.Popen(
            command,
            cwd=project,
            env={**os.environ, **OFFLINE, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.read() == {"started": True}

    def read(self) -> dict:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise AssertionError(f"the driver stopped:\n{self.stop()[-3000:]}")

    def ask(self, command: str) -> dict:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.read()

    def stop(self) -> str:
        """Close stdin, so the app shuts down; its stderr."""
        _, stderr = self.process.communicate(timeout=120)
        return stderr


def assert_unavailable(probe: dict) -> None:
    """/readyz and every call that needs the store: 503 with Retry-After, never another 5xx."""
    assert probe["readyz"] == 503
    for name in ("add", "query", "delete"):
        assert probe[name]["status"] == 503, (name, probe[name])
        assert probe[name]["retry_after"], (name, probe[name])


@pytest.mark.slow
def test_a_chroma_server_down_at_start_then_up_then_down_then_up(chroma_project, tmp_path):
    prefix = prefix_of(chroma_project)
    server = ChromaServer(tmp_path / "chroma", tmp_path / "chroma.log")
    env = {f"{prefix}STORE_URL": server.url, f"{prefix}STORE_TIMEOUT": "2"}
    driver = Driver(chroma_project, env)
    try:
        # The store is not there yet: the service is up, unready, and refuses with 503.
        assert_unavailable(driver.ask("probe"))
        server.start()
        assert driver.ask("wait ready") == {"reached": True}
        assert driver.ask("add kept cats purr in the sun")["status"] == 200
        server.stop()
        assert driver.ask("wait unready") == {"reached": True}
        assert_unavailable(driver.ask("probe"))
        server.start()  # the same port and data
        assert driver.ask("wait ready") == {"reached": True}
        found = driver.ask("query cats")
        assert found["status"] == 200
        assert [hit["id"] for hit in found["body"]["hits"]] == ["kept"]
    finally:
        server.stop()
        driver.stop()


@pytest.mark.slow
@pytest.mark.image
def test_a_postgresql_restart_is_503_then_recovered_and_the_password_never_shows(
    pgvector_project, tmp_path, stand_in_audit
):
    docker.require_engine()
    prefix = prefix_of(pgvector_project)
    with pgvector_server(tmp_path) as server:
        stand_in_audit.add(server.image)
        password = server.password_file.read_text().strip()
        env = {
            f"{prefix}STORE_URL": f"postgresql://127.0.0.1:{server.port}/{DATABASE}?user={USER}",
            f"{prefix}STORE_SECRET": password,
            f"{prefix}STORE_TIMEOUT": "2",
        }
        driver = Driver(pgvector_project, env)
        try:
            assert driver.ask("wait ready") == {"reached": True}
            assert driver.ask("add kept cats purr in the sun")["status"] == 200
            server.stop()
            assert driver.ask("wait unready") == {"reached": True}
            unavailable = driver.ask("probe")
            assert_unavailable(unavailable)
            assert password not in json.dumps(unavailable)
            server.start()  # a new container on the same volume
            assert driver.ask("wait ready") == {"reached": True}
            found = driver.ask("query cats")
            assert [hit["id"] for hit in found["body"]["hits"]] == ["kept"]
        finally:
            logs = driver.stop()
        assert password not in logs


# ------------------------------------------------------------------ compose.yaml, as rendered


@pytest.mark.parametrize("name", ["pgvector-http", "chromadb-server", "qdrant-server-mcp"])
def test_compose_runs_replicas_after_the_pinned_store_is_healthy(tmp_path, name):
    project = render(tmp_path / "project", answers_for(name))
    store = CATALOGUE["stores"][ANSWER_SETS[name]["vector_store"]]["server"]
    compose = yaml.safe_load((project / "compose.yaml").read_text(encoding="utf-8"))
    service = next(value for key, value in compose["services"].items() if key != "store")
    assert service["deploy"]["replicas"] >= 2
    assert service["depends_on"] == {"store": {"condition": "service_healthy"}}
    prefix = prefix_of(project)
    assert service["environment"][f"{prefix}STORE_URL"] == store["url"]
    # The official image, pinned by version, on a named volume of its own, with a health check.
    assert compose["services"]["store"]["image"] == store["image"]
    assert compose["services"]["store"]["volumes"] == [f"store:{store['data']}"]
    assert compose["services"]["store"]["healthcheck"]["test"] == store["health"]
    assert "store" in compose["volumes"] and "ports" not in compose["services"]["store"]
    if store["secret"] == "none":
        assert "secrets" not in compose
    else:
        # From a file git ignores, never from the environment or a rendered value.
        assert compose["secrets"] == {"store-secret": {"file": "./secrets/store-secret"}}
        assert service["environment"][f"{prefix}STORE_SECRET_FILE"] == "/run/secrets/store-secret"
        assert service["secrets"] == compose["services"]["store"]["secrets"] == ["store-secret"]
        assert "secrets/*" in (project / ".gitignore").read_text(encoding="utf-8").splitlines()
        assert (project / "secrets" / "store-secret.example").is_file()
