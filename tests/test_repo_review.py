"""Every generated project holds to the Scientific Python development guide, as its own tool
(sp-repo-review) judges it: no check fails, and each one the project sets aside is named in its
`[tool.repo-review.ignore]` table with a reason, and really fails without it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import tomlkit

from harness.checks import tool
from harness.compat import tomllib
from harness.projects import synced_project
from harness.render import ANSWER_SETS, answers_for, local_answers, render


def repo_review(project: Path) -> dict[str, dict]:
    """repo-review's verdict on each check, from its JSON report."""
    result = subprocess.run(
        [tool("repo-review"), "--format", "json", str(project)],
        capture_output=True,
        text=True,
        check=False,
    )
    # It exits non-zero when a check fails; the report says which.
    assert result.stdout, result.stderr
    return json.loads(result.stdout)["checks"]


def failures(checks: dict[str, dict]) -> dict[str, str]:
    return {name: c["err_msg"] for name, c in checks.items() if c["result"] is False}


def ignores(project: Path) -> dict[str, str]:
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    return pyproject["tool"]["repo-review"]["ignore"]


@pytest.fixture(scope="module", params=list(ANSWER_SETS))
def rendered(request, tmp_path_factory) -> Path:
    return render(tmp_path_factory.mktemp(request.param) / "project", answers_for(request.param))


def test_no_check_fails(rendered):
    assert failures(repo_review(rendered)) == {}


def test_every_ignore_has_a_one_line_reason_the_tool_reads(rendered):
    reasons = ignores(rendered)
    assert isinstance(reasons, dict) and reasons, "ignore must be a table of check = reason"
    checks = repo_review(rendered)
    for name, reason in reasons.items():
        assert reason.strip() and "\n" not in reason, name
        assert checks[name]["result"] is None and checks[name]["skip_reason"] == reason, name


def test_every_ignored_check_fails_without_its_ignore(rendered, tmp_path):
    """No stale ignore: without the table, the ignored checks are exactly the ones that fail."""
    bare = shutil.copytree(rendered, tmp_path / "bare")
    pyproject = tomlkit.parse((bare / "pyproject.toml").read_text(encoding="utf-8"))
    del pyproject["tool"]["repo-review"]
    (bare / "pyproject.toml").write_text(tomlkit.dumps(pyproject), encoding="utf-8")
    assert set(failures(repo_review(bare))) == set(ignores(rendered))


def test_a_license_answer_brings_its_file_and_spdx_expression(tmp_path):
    for license in ("MIT", "Apache-2.0", "none"):
        project = render(tmp_path / license, answers_for("default", license=license))
        pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
        if license == "none":
            assert not (project / "LICENSE").exists()
            assert "license" not in pyproject["project"]
            assert "PY003" in ignores(project)
        else:
            assert pyproject["project"]["license"] == license
            assert pyproject["project"]["license-files"] == ["LICENSE"]
            assert "PY003" not in ignores(project)
        assert failures(repo_review(project)) == {}


# A closed loopback port: any attempt to reach a hook repository or an index fails at once.
NO_NETWORK = {
    proxy: "http://127.0.0.1:9"
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy")
}


@pytest.mark.slow
def test_pre_commit_hooks_run_offline_on_a_synced_project(mirror_url, tmp_path):
    """A fresh clone, synced once, runs every hook with no network and no pre-commit cache."""
    answers = answers_for("default", ml_libraries=[], vector_store="faiss")
    project = synced_project(tmp_path, {**answers, **local_answers(mirror_url)})
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    home = tmp_path / "home"
    env = {
        **os.environ,
        **NO_NETWORK,
        "HOME": str(home),
        "PRE_COMMIT_HOME": str(home / "pre-commit"),
        "UV_OFFLINE": "1",
        "UV_CACHE_DIR": str(home / "uv"),
    }
    result = subprocess.run(
        ["uv", "run", "--frozen", "pre-commit", "run", "--all-files"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for hook in ("ruff check", "ruff format", "mypy"):
        assert re.search(rf"^{hook}\.+Passed$", result.stdout, re.M), result.stdout
