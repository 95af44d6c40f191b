"""`copier update` from one template release to the next, as a user runs it.

A throwaway git copy of this working tree is tagged v1.0.0, then changed the way a release
changes it (a catalogue pin, a Dockerfile line, the pytest floor in pyproject.toml, a new file)
and tagged v2.0.0. Projects generated from v1.0.0 and edited by their "user" are updated to
v2.0.0: the user's edits must survive, the release must arrive, and uv.lock must follow
pyproject.toml without ever holding a conflict marker, with the lock hook run exactly once, in
the real project. Locks are small (no ML libraries) except where the CPU index must be read.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from copier import run_update

from harness.compat import tomllib
from harness.mirror import build_mirror
from harness.render import CATALOGUE, ROOT
from harness.updates import (
    GIT_ENV,
    MARKER,
    assert_lock_follows,
    assert_user_edits_kept,
    commit_all,
    edit_like_a_user,
    generate,
    git,
    hook_log,
    lock_data,
    log_lines,
    replace_once,
    template_copy,
    uv,
)

HOOK = ROOT / "hooks" / "lock_project.py"
PREFIX = f"[{CATALOGUE['contracts']['name']}]"
COPIER = Path(sys.executable).with_name("copier")
# What v2.0.0 changes.
NEW_UV_IMAGE = "ghcr.io/astral-sh/uv:9.9.9"
DOCKERFILE_LINE = "# Added in template v2.0.0."
NEW_FILE = "CONTRIBUTING.md"
PYTEST_V1, PYTEST_V2 = '"pytest>=9",', '"pytest>=9.1",'


def said(phrase: str, output: str) -> bool:
    """Whether the hook said `phrase`, however it wrapped its lines."""
    return " ".join(phrase.split()) in " ".join(output.replace(PREFIX, " ").split())


def plain_from(output: str, phrase: str) -> str:
    """The hook's words from `phrase` on, its line prefixes and breaks removed."""
    text = " ".join(output.replace(PREFIX, " ").split())
    return text[text.index(phrase) :]


def next_step(project: Path, command: str) -> str:
    """The command the hook names, on a line of its own."""
    return f"\n    cd {project.resolve()} && {command}\n"


def too_wide(text: str, *paths: Path) -> list[str]:
    """Lines over 80 columns, with this run's long temporary paths as short as a user's."""
    for path in paths:
        text = text.replace(str(path.resolve()), "~/p").replace(str(path), "~/p")
    return [line for line in text.splitlines() if len(line) > 80]


def dev_specifiers(project: Path) -> dict[str, str]:
    """The dev group as uv.lock recorded it from pyproject.toml."""
    slug = tomllib.loads((project / "pyproject.toml").read_text())["project"]["name"]
    own = next(p for p in lock_data(project)["package"] if p["name"] == slug)
    return {d["name"]: d.get("specifier", "") for d in own["metadata"]["requires-dev"]["dev"]}


def rej_files(project: Path) -> list[Path]:
    return [p for p in project.rglob("*.rej") if ".git" not in p.parts]


def unmerged(project: Path) -> list[str]:
    return git(project, "diff", "--name-only", "--diff-filter=U").split()


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory) -> Path:
    """This working tree as a template repository with releases v1.0.0 and v2.0.0."""
    repo = template_copy(tmp_path_factory.mktemp("template") / "ml-container-template")
    commit_all(repo, "Release 1.0.0")
    git(repo, "tag", "v1.0.0")

    uv_image = yaml.safe_load((repo / "catalogue.yml").read_text())["images"]["uv"]
    replace_once(repo / "catalogue.yml", f"uv: {uv_image}", f"uv: {NEW_UV_IMAGE}")
    dockerfile = repo / "template" / "Dockerfile.jinja"
    dockerfile.write_text(dockerfile.read_text().rstrip("\n") + f"\n{DOCKERFILE_LINE}\n")
    replace_once(repo / "template" / "pyproject.toml.jinja", PYTEST_V1, PYTEST_V2)
    (repo / "template" / NEW_FILE).write_text("# Contributing\n\nAdded in template v2.0.0.\n")
    commit_all(repo, "Release 2.0.0")
    git(repo, "tag", "v2.0.0")
    return repo


def generate_v1(template: Path, dst: Path, mirror_url: str, log: Path, **answers) -> Path:
    return generate(template, dst, mirror_url, log, "v1.0.0", **answers)


@pytest.fixture(scope="module")
def edited_v1(template_repo, mirror_url, tmp_path_factory) -> Path:
    """A v1.0.0 project its user has changed: a README line, a dependency, a source file."""
    base = tmp_path_factory.mktemp("edited") / "project"
    generate_v1(template_repo, base, mirror_url, base.parent / "copy.log")
    return edit_like_a_user(base)


def clone(project: Path, dst: Path) -> Path:
    shutil.copytree(project, dst, symlinks=True)
    return dst


def with_a_raised_pytest_floor(project: Path) -> Path:
    """The user raises the pytest floor that v2 also raises, to another version; relocked."""
    replace_once(project / "pyproject.toml", PYTEST_V1, '"pytest>=9.2",')
    assert uv(project, "lock").returncode == 0
    commit_all(project, "Require a newer pytest")
    return project


def update_api(project: Path, log: Path, **options) -> None:
    with hook_log(log):
        run_update(
            str(project), vcs_ref="v2.0.0", defaults=True, overwrite=True, unsafe=True, **options
        )


def assert_release_arrived(project: Path) -> None:
    dockerfile = (project / "Dockerfile").read_text()
    assert f"ARG UV_IMAGE={NEW_UV_IMAGE}" in dockerfile
    assert DOCKERFILE_LINE in dockerfile
    assert (project / NEW_FILE).exists()
    assert yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"] == "v2.0.0"


def assert_clean_update(project: Path, log: Path) -> None:
    assert_user_edits_kept(project)
    assert_release_arrived(project)
    assert_lock_follows(project)
    names = {package["name"] for package in lock_data(project)["package"]}
    assert "six" in names
    assert dev_specifiers(project)["pytest"] == ">=9.1"  # relocked from the new pyproject.toml
    assert log_lines(log) == [f"update {project.resolve()}"]
    assert rej_files(project) == []
    assert unmerged(project) == []


def test_update_through_the_api(edited_v1, tmp_path, capfd):
    project = clone(edited_v1, tmp_path / "project")
    update_api(project, tmp_path / "hook.log")
    assert_clean_update(project, tmp_path / "hook.log")
    out, err = capfd.readouterr()
    assert "template updated from v1.0.0 to v2.0.0" in out
    assert said("none committed yet: review, then commit.", out), out
    assert "now follows ml-container-template v2.0.0" in err
    assert "CHANGELOG.md" in err and "make verify" in err


def test_update_through_the_cli(edited_v1, tmp_path):
    project = clone(edited_v1, tmp_path / "project")
    log = tmp_path / "hook.log"
    result = subprocess.run(
        [str(COPIER), "update", "--trust", "--defaults", "--vcs-ref", "v2.0.0"],
        cwd=project,
        env={**os.environ, **GIT_ENV, "ML_TEMPLATE_HOOK_LOG": str(log)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert_clean_update(project, log)
    assert "template updated from v1.0.0 to v2.0.0" in result.stdout
    assert "CHANGELOG.md" in result.stderr
    message = result.stderr[result.stderr.index("now follows") :]
    hook = "\n".join(line for line in result.stdout.splitlines() if line.startswith(PREFIX))
    assert too_wide(message + "\n" + hook, project, edited_v1.parent.parent) == []
    # No conflict, so no word on conflict markers; the hook relocked, so no `make lock` to run.
    assert "<<<<<<<" not in result.stdout + message and "make lock" not in message
    assert said("uv.lock and the conda locks are up to date", result.stdout)


def test_update_with_the_index_unreachable_keeps_the_old_lock(template_repo, tmp_path, capfd):
    """The lock needs the CPU index (torch), which is gone by the time the update runs."""
    mirror_url = build_mirror(tmp_path / "mirror")
    project = generate_v1(
        template_repo,
        tmp_path / "project",
        mirror_url,
        tmp_path / "copy.log",
        ml_libraries=["torch"],
    )
    before = (project / "uv.lock").read_bytes()
    (tmp_path / "mirror" / "simple").rename(tmp_path / "mirror" / "gone")
    capfd.readouterr()

    update_api(project, tmp_path / "hook.log")

    assert_release_arrived(project)
    assert PYTEST_V2 in (project / "pyproject.toml").read_text()
    assert (project / "uv.lock").read_bytes() == before
    assert lock_data(project)["package"]
    assert log_lines(tmp_path / "hook.log") == [f"update {project.resolve()}"]
    out, _ = capfd.readouterr()
    failure = plain_from(out, "could not lock the project:").split("Your project")[0]
    assert "index" in failure  # names the failure: torch's index is missing or unreachable
    assert said("uv.lock was left as it was", out)
    assert next_step(project, "uv lock") in out
    # Once the index is back, the command the message names brings the lock up to date.
    (tmp_path / "mirror" / "gone").rename(tmp_path / "mirror" / "simple")
    assert uv(project, "lock").returncode == 0
    assert_lock_follows(project)


def test_pyproject_conflict_leaves_markers_there_and_none_in_the_lock(edited_v1, tmp_path, capfd):
    """The user raised the same pytest floor the release raises, to another version."""
    project = with_a_raised_pytest_floor(clone(edited_v1, tmp_path / "project"))
    before = (project / "uv.lock").read_bytes()
    capfd.readouterr()

    update_api(project, tmp_path / "hook.log")

    pyproject = (project / "pyproject.toml").read_text()
    assert "<<<<<<< before updating" in pyproject and ">>>>>>> after updating" in pyproject
    assert unmerged(project) == ["pyproject.toml"]
    assert (project / "uv.lock").read_bytes() == before
    assert not MARKER.search(before.decode())
    assert rej_files(project) == []
    assert_release_arrived(project)
    assert log_lines(tmp_path / "hook.log") == [f"update {project.resolve()}"]
    out, _ = capfd.readouterr()
    assert said("pyproject.toml has merge conflict markers", out)
    assert said("Next, after resolving the conflicts in pyproject.toml, run:", out)
    assert next_step(project, "make lock") in out
    # The hook, not Copier's message, names the conflicted files and explains the markers.
    assert said("The update left conflict markers in: pyproject.toml", out)
    assert f"{PREFIX}     <<<<<<< before updating\n" in out
    assert f"{PREFIX}     >>>>>>> after updating\n" in out

    # Keep the user's side ("before updating"), as a user resolving the conflict would.
    resolved = re.sub(
        r"<<<<<<< before updating\n(.*?)=======\n.*?>>>>>>> after updating\n",
        r"\1",
        pyproject,
        flags=re.DOTALL,
    )
    (project / "pyproject.toml").write_text(resolved)
    assert not MARKER.search(resolved)
    assert uv(project, "lock").returncode == 0
    assert_lock_follows(project)
    assert dev_specifiers(project)["pytest"] == ">=9.2"
    assert_user_edits_kept(project)


def test_a_rejected_pyproject_hunk_stops_the_relock(edited_v1, tmp_path, capfd):
    """With --conflict rej, the user's side waits in pyproject.toml.rej: locking now would lock
    without it, so the hook keeps the old lock and says what to do."""
    project = with_a_raised_pytest_floor(clone(edited_v1, tmp_path / "project"))
    before = (project / "uv.lock").read_bytes()
    capfd.readouterr()

    update_api(project, tmp_path / "hook.log", conflict="rej")

    assert (project / "pyproject.toml.rej").exists()
    assert (project / "uv.lock").read_bytes() == before
    assert dev_specifiers(project)["pytest"] == ">=9.2"  # still the user's lock
    assert log_lines(tmp_path / "hook.log") == [f"update {project.resolve()}"]
    out, err = capfd.readouterr()
    assert said("pyproject.toml.rej holds edits of yours", out)
    assert said("Next, after applying pyproject.toml.rej and deleting it, run:", out)
    assert next_step(project, "make lock") in out
    assert said("could not apply wait in: pyproject.toml.rej", out)
    assert "<<<<<<<" not in out + err


def test_a_lock_committed_with_conflict_markers_is_rebuilt(edited_v1, tmp_path, capfd):
    """Markers the user committed in uv.lock (say, from a git merge) never survive an update."""
    project = clone(edited_v1, tmp_path / "project")
    lock = project / "uv.lock"
    lines = lock.read_text().splitlines(keepends=True)
    lock.write_text(
        "".join(
            ["<<<<<<< HEAD\n", *lines[:3], "=======\n", *lines[:3], ">>>>>>> other\n", *lines[3:]]
        )
    )
    commit_all(project, "Commit a conflicted lock")
    capfd.readouterr()

    update_api(project, tmp_path / "hook.log")

    assert said("uv.lock had merge conflict markers", capfd.readouterr().out)
    assert_clean_update(project, tmp_path / "hook.log")


def test_hook_removes_a_conflicted_lock_even_when_pyproject_is_conflicted(tmp_path):
    """No relock is possible then, but the lock must not keep its markers."""
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n<<<<<<< before updating\nversion = "1"\n=======\n'
        'version = "2"\n>>>>>>> after updating\n'
    )
    (tmp_path / "uv.lock").write_text("version = 1\n<<<<<<< HEAD\n=======\n>>>>>>> other\n")
    result = subprocess.run(
        [sys.executable, str(HOOK), "--project", str(tmp_path), "--after-update"],
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "ML_TEMPLATE_STRICT"},
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "uv.lock").exists()
    assert said("pyproject.toml has merge conflict markers", result.stdout)
    assert said("uv.lock is absent", result.stdout)


def run_hook_after_update(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HOOK), "--project", str(project), "--after-update"],
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "ML_TEMPLATE_STRICT"},
    )


def test_conflict_markers_in_a_script_the_hook_runs_stop_the_relock(edited_v1, tmp_path):
    """Markers left in scripts/lock_report.py (say, by an update after `ruff format`): the hook
    names that file and relocks nothing, rather than run it and misread its SyntaxError."""
    project = clone(edited_v1, tmp_path / "project")
    report = project / "scripts" / "lock_report.py"
    lines = report.read_text().splitlines(keepends=True)
    report.write_text(
        "".join(
            [*lines[:5], "<<<<<<< before updating\n", "=======\n", ">>>>>>> after updating\n"]
            + lines[5:]
        )
    )
    before = (project / "uv.lock").read_bytes()

    result = run_hook_after_update(project)

    out = result.stdout
    assert (project / "uv.lock").read_bytes() == before
    assert said("scripts/lock_report.py has merge conflict markers", out), out
    assert said("uv.lock was left as it was", out), out
    assert next_step(project, "make lock") in out
    assert not said("not CPU-only", out) and not said("problems above", out), out


def test_a_crashing_report_is_not_a_finding(edited_v1, tmp_path):
    """A report that dies (no JSON result line) is a crash, not "the lock is not CPU-only"."""
    project = clone(edited_v1, tmp_path / "project")
    report = project / "scripts" / "lock_report.py"
    report.write_text(report.read_text() + "\ndef broken(:\n")

    result = run_hook_after_update(project)

    out = result.stdout
    assert said("scripts/lock_report.py crashed", out), out
    assert said("uv.lock is written", out) and not said("was left as it was", out), out
    assert not said("not CPU-only", out), out
    assert next_step(project, "uv run --script scripts/lock_report.py") in out
    assert_lock_follows(project)


def test_a_baked_model_does_not_stop_the_update(edited_v1, tmp_path, capfd):
    """The README's bake recipe saves a model in baked/; Copier must not take it for
    uncommitted work (`Destination repository is dirty`), and git must not see it."""
    project = clone(edited_v1, tmp_path / "project")
    model = project / "baked" / "model"
    model.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"\0" * 1024)
    (project / "baked" / "Dockerfile").write_text("FROM test-service\nCOPY model/ /opt/model/\n")
    assert git(project, "status", "--porcelain") == ""

    update_api(project, tmp_path / "hook.log")

    assert_release_arrived(project)
    assert (model / "model.safetensors").read_bytes() == b"\0" * 1024


def test_an_update_that_changes_nothing_says_so(template_repo, mirror_url, tmp_path, capfd):
    """Updating to the release a project already follows changes no file: the closing words
    must not tell the user to check and commit what is not there."""
    project = generate(
        template_repo, tmp_path / "project", mirror_url, tmp_path / "copy.log", "v2.0.0"
    )
    capfd.readouterr()

    update_api(project, tmp_path / "hook.log")

    out, err = capfd.readouterr()
    assert git(project, "status", "--porcelain") == ""
    assert said("The update changed no file", out), out
    assert "Nothing is committed yet" not in err
