"""The template repository itself: what git ignores, its licence, and its own lint and types."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from harness.compat import tomllib
from harness.render import ROOT

# Files that running the suite, ruff, mypy or uv leaves in the clone. Copier renders from the
# clone, so any of these left untracked would dirty it and record a `_commit` only it has.
CACHES = [
    "tests/__pycache__/test_render.cpython-311.pyc",
    "harness/__pycache__/render.cpython-313.pyc",
    "hooks/__pycache__/lock_project.cpython-310.pyc",
    "tools/__pycache__/pins.cpython-312.pyc",
    "bench/__pycache__/build.cpython-311.pyc",
    "template/scripts/__pycache__/lock_report.cpython-311.pyc",
    ".pytest_cache/v/cache/nodeids",
    ".mypy_cache/3.11/cache.db",
    ".ruff_cache/0.8.0/123",
    ".venv/bin/python",
    "dist/ml_container_template-0.3.0.tar.gz",
]
# The SPDX id in pyproject.toml and the first line of that licence's text.
LICENCE_TITLES = {"MIT": "MIT License"}
# The template's own Python, as pyproject.toml configures each tool (mypy: its `files`).
CHECKS = {
    "ruff format": ["ruff", "format", "--check", "--diff", "."],
    "ruff check": ["ruff", "check", "."],
    "mypy": ["mypy"],
}
# The repository's own Python: what imports whom, and how long a function may grow.
OWN_CODE = ("hooks", "tools", "harness", "bench")
MAX_FUNCTION_LINES = 60


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("path", CACHES)
def test_caches_and_builds_are_ignored(path):
    result = git("check-ignore", "--no-index", "--quiet", path)
    assert result.returncode == 0, f"git would show {path} as untracked: add it to .gitignore"


def test_no_tracked_file_is_ignored():
    """An ignore rule must never hide a file the template ships, such as template/.gitignore."""
    result = git("ls-files", "--cached", "--ignored", "--exclude-standard")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "", f"tracked files matched by .gitignore:\n{result.stdout}"


def test_compiling_the_repo_leaves_nothing_untracked():
    """Bytecode for every module, as importing them would write it: git must not see any."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "bench", "harness", "hooks", "tests", "tools"],
        cwd=ROOT,
        capture_output=True,
        check=False,  # a file mid-edit may not compile; the others still get their bytecode
    )
    status = git("status", "--porcelain", "--untracked-files=all", "--ignored=no")
    assert status.returncode == 0, status.stderr
    untracked = [line[3:] for line in status.stdout.splitlines() if line.startswith("??")]
    # Only caches count: new source files may be untracked while someone works on them.
    caches = [path for path in untracked if "__pycache__" in path or path.endswith(".pyc")]
    assert caches == [], f"untracked bytecode dirties the clone Copier renders from: {caches}"


@pytest.mark.parametrize("name", CHECKS)
def test_the_repo_is_formatted_linted_and_type_checked(name):
    result = subprocess.run(
        [sys.executable, "-m", *CHECKS[name]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"{name}:\n{result.stdout}{result.stderr}"


def test_licence_file_matches_pyproject():
    spdx = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "license"
    ]
    lines = (ROOT / "LICENSE").read_text(encoding="utf-8").splitlines()
    assert spdx in LICENCE_TITLES, f"no licence text known for {spdx!r}"
    assert lines[0] == LICENCE_TITLES[spdx]
    assert "Copyright (c) 2026 The ml-container-template authors" in lines


def imported_test_modules(source: str, package: str) -> list[str]:
    """The test modules (`tests.test_*`, `tests.conftest`) that `source`, a module of
    `package`, imports, absolutely or relatively."""
    imported: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            imported += [module, *(f"{module}.{alias.name}" for alias in node.names)]
    return [
        name
        for name in imported
        if name == "tests.conftest" or name.startswith(("tests.test_", "tests.conftest."))
    ]


def long_functions(source: str) -> list[tuple[str, int, int]]:
    """(name, first line, length) of every function in `source` over MAX_FUNCTION_LINES."""
    functions = [
        node
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    lengths = [
        (node.name, node.lineno, (node.end_lineno or node.lineno) - node.lineno + 1)
        for node in functions
    ]
    return [found for found in lengths if found[2] > MAX_FUNCTION_LINES]


def python_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def package_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).parent.parts)


def test_the_checks_below_see_what_they_look_for():
    """Each finds its fault in a sample, so an empty finding on the repo means something."""
    sample = "import tests.test_a\nfrom tests import conftest\nfrom .test_b import c\n"
    assert imported_test_modules(sample, "tests") == [
        "tests.test_a",
        "tests.conftest",
        "tests.test_b",
        "tests.test_b.c",
    ]
    assert imported_test_modules("from harness import render\n", "tests") == []
    body = "".join(f"    x = {n}\n" for n in range(MAX_FUNCTION_LINES - 1))
    assert long_functions(f"def fits():\n{body}") == []
    assert long_functions(f"def too_long():\n{body}    x = 0\n") == [
        ("too_long", 1, MAX_FUNCTION_LINES + 1)
    ]


def test_no_module_imports_a_test_module():
    """Tests and benchmarks share helpers through harness/, never by importing a test module;
    harness/ itself never imports one either."""
    found = {
        str(path.relative_to(ROOT)): names
        for path in python_files("tests", "bench", "harness")
        if (names := imported_test_modules(path.read_text(encoding="utf-8"), package_of(path)))
    }
    assert found == {}, f"move what these share into harness/: {found}"


def test_no_function_of_the_repos_own_code_is_too_long():
    found = {
        str(path.relative_to(ROOT)): names
        for path in python_files(*OWN_CODE)
        if (names := long_functions(path.read_text(encoding="utf-8")))
    }
    assert found == {}, f"functions over {MAX_FUNCTION_LINES} lines: split them: {found}"
