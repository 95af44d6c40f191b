"""What the `copier update` tests share: a throwaway template repository with release tags, a
project generated from one release and edited as its user would, and checks on the result."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import yaml
from copier import run_copy
from plumbum import local

from harness.compat import tomllib
from harness.render import ROOT, answers_for, local_answers

IGNORED = shutil.ignore_patterns(
    ".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", "*.pyc"
)
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Template Tests",
    "GIT_AUTHOR_EMAIL": "tests@localhost",
    "GIT_COMMITTER_NAME": "Template Tests",
    "GIT_COMMITTER_EMAIL": "tests@localhost",
}
# What the user changes in a generated project.
README_LINE = "A line the user added to the README."
USER_DEPENDENCY = "six>=1.16"
MARKER = re.compile(r"^(<<<<<<< |=======$|>>>>>>> )", re.MULTILINE)


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def commit_all(cwd: Path, message: str) -> None:
    git(cwd, "add", "-A")
    git(cwd, "commit", "-q", "-m", message)


def uv(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["uv", *args], cwd=cwd, capture_output=True, text=True, check=False)


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{path.name} no longer holds {old!r} once; update this test"
    path.write_text(text.replace(old, new), encoding="utf-8")


def template_copy(dst: Path) -> Path:
    """This working tree, uncommitted edits included, as a fresh git repository at `dst`."""
    shutil.copytree(ROOT, dst, ignore=IGNORED, symlinks=True)
    git(dst, "init", "-q", "-b", "main")
    return dst


@contextmanager
def hook_log(path: Path):
    """Point the hook's run log at `path` for Copier's tasks and migrations.

    Copier starts them with plumbum's `local.env`, a copy of os.environ taken when plumbum is
    imported, so os.environ (or monkeypatch.setenv) set later never reaches them.
    """
    path.unlink(missing_ok=True)
    with local.env(ML_TEMPLATE_HOOK_LOG=str(path)):
        yield path


def log_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def lock_data(project: Path) -> dict:
    return tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))


def generate(
    template: Path, dst: Path, mirror_url: str, log: Path, vcs_ref: str, **answers
) -> Path:
    """A project from release `vcs_ref`, locked by the copy task, committed as its user would."""
    data = answers_for("none-bare-311", **local_answers(mirror_url, **answers))
    with hook_log(log):
        run_copy(
            str(template), dst, data=data, defaults=True, unsafe=True, vcs_ref=vcs_ref, quiet=True
        )
    assert log_lines(log) == [f"copy {dst.resolve()}"], "the lock task must run once, on copy"
    assert (dst / "uv.lock").exists()
    git(dst, "init", "-q", "-b", "main")
    commit_all(dst, "Start from ml-container-template")
    return dst


def edit_like_a_user(project: Path, dependency_list: str = "dependencies") -> Path:
    """A README line, a dependency (relocked), a source file of their own; committed.

    The dependency goes first in `dependency_list` ("dependencies", or "dev" for the group).
    """
    with (project / "README.md").open("a", encoding="utf-8") as readme:
        readme.write(f"\n{README_LINE}\n")
    replace_once(
        project / "pyproject.toml",
        f"\n{dependency_list} = [\n",
        f'\n{dependency_list} = [\n    "{USER_DEPENDENCY}",\n',
    )
    locked = uv(project, "lock")
    assert locked.returncode == 0, locked.stderr
    package = yaml.safe_load((project / ".copier-answers.yml").read_text())["package_name"]
    (project / "src" / package / "extra.py").write_text("def helper():\n    return 42\n")
    commit_all(project, "Add my own changes")
    return project


def assert_user_edits_kept(project: Path) -> None:
    assert README_LINE in (project / "README.md").read_text()
    assert f'"{USER_DEPENDENCY}"' in (project / "pyproject.toml").read_text()
    package = yaml.safe_load((project / ".copier-answers.yml").read_text())["package_name"]
    assert (project / "src" / package / "extra.py").read_text().endswith("return 42\n")
    assert "six" in {package["name"] for package in lock_data(project)["package"]}


def assert_lock_follows(project: Path) -> None:
    text = (project / "uv.lock").read_text()
    assert not MARKER.search(text)
    check = uv(project, "lock", "--check")
    assert check.returncode == 0, check.stderr
