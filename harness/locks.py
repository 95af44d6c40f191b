"""Lock utilities shared by the tests: run the real `uv lock`, read uv.lock, load the report."""

from __future__ import annotations

import atexit
import functools
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from harness.compat import tomllib
from harness.render import CATALOGUE, answers_for, render

# The packages that must come from the CPU index, as the catalogue marks them.
TORCH_FAMILY = {lib["pypi"] for lib in CATALOGUE["libraries"].values() if lib.get("torch_family")}
# uv must lock with an installed Python: these machines cannot download one.
UV_ENV = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}


def uv_lock(project: Path, **env: str) -> subprocess.CompletedProcess:
    """Run `uv lock` in `project` (extra environment variables in `env`); the caller checks it."""
    uv = shutil.which("uv")
    assert uv, "uv is needed to lock"
    return subprocess.run(
        [uv, "lock"],
        cwd=project,
        env={**UV_ENV, **env},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def read_lock(project: Path) -> dict:
    return tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))


def locked_packages(project: Path) -> dict[str, dict]:
    """uv.lock's packages by name (a name locked twice, for two platforms, keeps the last)."""
    return {package["name"]: package for package in read_lock(project)["package"]}


def locked_package(project: Path, name: str) -> dict | None:
    return locked_packages(project).get(name)


@functools.cache
def load_lock_report() -> ModuleType:
    """`scripts/lock_report.py` of a project rendered with the default answers, imported.

    Rendered once per test process: the script takes its constants from the catalogue. Python
    is 3.11, the one these machines have: `uv run --script` follows the project's .python-version.
    """
    folder = Path(tempfile.mkdtemp(prefix="lock-report-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    project = render(folder / "project", answers_for("default", python_version="3.11"))
    script = project / "scripts" / "lock_report.py"
    spec = importlib.util.spec_from_file_location("lock_report", script)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
