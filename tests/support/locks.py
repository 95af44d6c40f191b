"""Lock utilities shared by the tests: run the real `uv lock`, read uv.lock, load the report."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from tests.support.compat import tomllib
from tests.support.render import CATALOGUE, ROOT

# The packages that must come from the CPU index, as the catalogue marks them.
TORCH_FAMILY = {lib["pypi"] for lib in CATALOGUE["libraries"].values() if lib.get("torch_family")}
# uv must lock with an installed Python: these machines cannot download one.
UV_ENV = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
LOCK_REPORT = ROOT / "template" / "scripts" / "lock_report.py"


def uv_lock(project: Path, **env: str) -> subprocess.CompletedProcess:
    """Run `uv lock` in `project` (extra environment variables in `env`); the caller checks it."""
    uv = shutil.which("uv")
    assert uv, "uv is needed to lock"
    return subprocess.run([uv, "lock"], cwd=project, env={**UV_ENV, **env}, capture_output=True,
                          text=True, timeout=900, check=False)


def read_lock(project: Path) -> dict:
    return tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))


def locked_packages(project: Path) -> dict[str, dict]:
    """uv.lock's packages by name (a name locked twice, for two platforms, keeps the last)."""
    return {package["name"]: package for package in read_lock(project)["package"]}


def locked_package(project: Path, name: str) -> dict | None:
    return locked_packages(project).get(name)


def load_lock_report() -> ModuleType:
    """The generated project's `scripts/lock_report.py`, imported from the template."""
    spec = importlib.util.spec_from_file_location("lock_report", LOCK_REPORT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
