"""A rendered project driven as its developer drives it: synced, its own tests and its mypy run."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from harness.render import render

# No interpreter downloads, and any attempt to fetch a model fails at once instead of hanging.
OFFLINE = {"UV_PYTHON_DOWNLOADS": "never", "HF_HUB_OFFLINE": "1"}


def run(
    project: Path,
    *args: str,
    env: dict[str, str] | None = None,
    timeout: int = 900,
    input: str | None = None,
) -> subprocess.CompletedProcess:
    """`args` in the project's folder, offline, output captured as text; never raises on exit."""
    return subprocess.run(
        args,
        cwd=project,
        input=input,
        env={**os.environ, **OFFLINE, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def synced_project(root: Path, answers: dict) -> Path:
    """Render, lock through the copy task, then `uv sync --locked` as a developer would."""
    project = render(root / "project", answers, tasks=True)
    assert (project / "uv.lock").is_file(), "the copy task did not lock the project"
    result = run(project, "uv", "sync", "--locked", timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    return project


def assert_generated_tests_pass(project: Path, env: dict[str, str] | None = None) -> str:
    """Run the project's own tests (with `env` over the environment, such as a store server's
    address): all pass and none is skipped. Returns pytest's report."""
    command = ("uv", "run", "--locked", "pytest", "-v", "-p", "no:cacheprovider")
    result = run(project, *command, env=env)
    report = result.stdout[-3000:]
    assert result.returncode == 0, report + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout, report
    assert "SKIPPED" not in result.stdout and " skipped" not in result.stdout, report
    # A fresh project's `make test` is quiet: no pytest deprecation from a plugin it never uses.
    assert "PytestRemovedIn10Warning" not in result.stdout + result.stderr, report
    return result.stdout


def assert_types_check(project: Path) -> None:
    """mypy over src, tests and scripts, as `make lint` and the generated CI run it."""
    result = run(project, "uv", "run", "--locked", "mypy")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert result.stdout.startswith("Success: no issues found"), result.stdout[-3000:]
