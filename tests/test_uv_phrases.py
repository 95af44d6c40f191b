"""uv's failure messages, captured from real uv runs, against catalogue.yml's uv_phrases.

uv has no structured errors, so the lock hook names a failure from phrases of uv's message
(hooks/contracts.py reads them from the catalogue). Each case here runs `uv lock` on a small
project against a loopback index that refuses, demands credentials, lacks torch, fails with
503, cuts its answer short or stalls, or on requirements that conflict, a platform without
wheels, or no Python: the captured output must name its own kind. Every phrase in the catalogue
must be needed by some captured output, so a uv upgrade that rewords a message fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import mirror
from harness.index_server import IndexFiles, IndexServer
from harness.loopback import closed_port_url
from harness.read_only import read_only_prefix
from harness.render import CATALOGUE, ROOT

sys.path.insert(0, str(ROOT / "hooks"))
import contracts  # noqa: E402  (the hook's own module, as Copier runs it by path)

PHRASES = CATALOGUE["contracts"]["uv_phrases"]
X86 = "sys_platform == 'linux' and platform_machine == 'x86_64'"
ARM = "sys_platform == 'linux' and platform_machine == 'aarch64'"
CAPTURED: dict[str, str] = {}  # case -> uv's output, for the coverage check at the end


@pytest.fixture(scope="module")
def index_files(tmp_path_factory) -> IndexFiles:
    root = tmp_path_factory.mktemp("phrase-wheels")
    mirror.build_mirror(root, synthetic=True)
    return IndexFiles.from_mirror(root / "simple")


def project(folder: Path, url: str, deps: list[str], environments: list[str], **extra) -> Path:
    """A project whose torch comes from `url`, as the template's pyproject.toml routes it."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "[project]",
        'name = "probe"',
        'version = "0.1.0"',
        f'requires-python = "{extra.get("requires_python", ">=3.11,<3.12")}"',
        f"dependencies = {json.dumps(deps)}",
        "[[tool.uv.index]]",
        'name = "pytorch-cpu"',
        f'url = "{url}"',
        "explicit = true",
        "[tool.uv.sources]",
        'torch = { index = "pytorch-cpu" }',
        "[tool.uv]",
        f"environments = {json.dumps(environments)}",
        f"required-environments = {json.dumps(environments)}",
    ]
    (folder / "pyproject.toml").write_text("\n".join(lines) + "\n")
    return folder


def uv_lock(folder: Path, tmp_path: Path, **env: str) -> str:
    environment = {**os.environ, "UV_CACHE_DIR": str(tmp_path / "cache"), **env}
    for key in [k for k in environment if k.startswith("UV_INDEX_")]:
        del environment[key]
    result = subprocess.run(
        ["uv", "lock"],
        cwd=folder,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0, "uv locked: the case proves nothing"
    return result.stdout + result.stderr


@pytest.fixture
def server(request, index_files) -> Iterator[IndexServer]:
    fault, auth = request.param
    with IndexServer(index_files, fault, delay=30, auth=auth) as running:
        yield running


def record(case: str, kind: str, output: str) -> None:
    CAPTURED[case] = output
    assert contracts.uv_kind(output) == kind, f"{case}: uv said\n{output}"


@pytest.mark.parametrize(
    ("server", "kind"),
    [
        (("503", None), "network"),
        (("truncated", None), "network"),
        (("404", None), "missing"),
        (("none", ("user", "secret")), "auth"),
    ],
    indirect=["server"],
    ids=["503", "truncated", "404", "401"],
)
def test_an_index_fault_is_named(tmp_path, server, kind):
    folder = project(tmp_path / "p", server.url, ["torch==2.13.*"], [X86])
    record(f"{server.fault}-{bool(server.auth)}", kind, uv_lock(folder, tmp_path))


def test_a_refused_connection_is_the_network(tmp_path):
    folder = project(tmp_path / "p", closed_port_url(), ["torch==2.13.*"], [X86])
    record("refused", "network", uv_lock(folder, tmp_path))


@pytest.mark.parametrize("server", [("slow", None)], indirect=True)
def test_a_stalled_index_times_out_as_the_network(tmp_path, server):
    folder = project(tmp_path / "p", server.url, ["torch==2.13.*"], [X86])
    output = uv_lock(folder, tmp_path, UV_HTTP_TIMEOUT="2", UV_HTTP_RETRIES="0")
    record("timeout", "network", output)


@pytest.mark.parametrize("server", [("none", None)], indirect=True)
def test_conflicting_requirements_are_a_conflict(tmp_path, server):
    folder = project(tmp_path / "p", server.url, ["torch==2.13.*", "torch==2.11.*"], [X86])
    record("conflict", "conflict", uv_lock(folder, tmp_path))


@pytest.mark.parametrize("server", [("none", None)], indirect=True)
def test_a_platform_without_wheels_is_named(tmp_path, server):
    """The mirror has x86_64 torch wheels only."""
    folder = project(tmp_path / "p", server.url, ["torch==2.13.*"], [ARM])
    record("platform", "platform", uv_lock(folder, tmp_path))


@pytest.mark.parametrize("downloads", ["never", "dead-mirror"])
def test_no_python_is_named(tmp_path, downloads):
    folder = project(tmp_path / "p", closed_port_url(), [], [X86])
    env = {
        "UV_PYTHON_PREFERENCE": "only-managed",
        "UV_PYTHON_INSTALL_DIR": str(tmp_path / "no-pythons"),
        "UV_PYTHON_DOWNLOADS": "never" if downloads == "never" else "automatic",
    }
    if downloads != "never":
        env["UV_PYTHON_INSTALL_MIRROR"] = closed_port_url().removesuffix("/simple")
    record(f"python-{downloads}", "python", uv_lock(folder, tmp_path, **env))


@pytest.mark.parametrize("server", [("none", None)], indirect=True)
def test_a_read_only_cache_is_a_permission_problem(tmp_path, server):
    """uv's cache cannot be written: read-only for root (a private bind mount), 0555 otherwise."""
    folder = project(tmp_path / "p", server.url, ["torch==2.13.*"], [X86])
    cache = tmp_path / "cache"
    cache.mkdir()
    command = ["uv", "lock"]
    if os.geteuid() == 0:
        prefix = read_only_prefix(cache)
        if prefix is None:
            pytest.skip("as root, and no private read-only bind mount is permitted here")
        command = [*prefix, *command]
    else:
        cache.chmod(0o555)
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_INDEX_")}
    result = subprocess.run(
        command,
        cwd=folder,
        env={**env, "UV_CACHE_DIR": str(cache)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    cache.chmod(0o755)
    assert result.returncode != 0, "uv locked: the case proves nothing"
    record("permission", "permission", result.stdout + result.stderr)


def test_every_phrase_is_needed_by_captured_output():
    """Runs last in this module (pytest keeps file order): each phrase matches some capture."""
    if len(CAPTURED) < 10:
        pytest.skip("the capturing cases did not all run in this process")
    texts = [text.lower() for text in CAPTURED.values()]
    unused = [
        f"{kind}: {phrase}"
        for kind, phrases in PHRASES.items()
        for phrase in phrases
        # Either permission phrase, as the user running the tests (root or not) sees one.
        if kind != "permission" and not any(phrase in text for text in texts)
    ]
    assert unused == [], "phrases no captured uv output holds"
    if "permission" in CAPTURED:
        assert any(phrase in CAPTURED["permission"].lower() for phrase in PHRASES["permission"])
