"""The release workflow: a version in pyproject.toml without its tag becomes tag vX.Y.Z and a
GitHub release with that version's CHANGELOG.md section (docs/decisions/0009). Its scripts are
run here as the runner would, on throwaway repositories, with a stand-in `gh` that records.
The schema, zizmor, actionlint, shellcheck and pinning checks are tests/test_workflows.py's."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness.compat import tomllib
from harness.render import ROOT
from harness.updates import commit_all, git
from harness.workflows import load

WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
CHANGELOG = """# Changelog

## Unreleased

- Not released yet.

## 1.2.3

What 1.2.3 is about.

- A change.

## 1.2.2

- An older change.
"""
NOTES = "What 1.2.3 is about.\n\n- A change.\n"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return load(WORKFLOW)


def step(job: dict, name: str) -> dict:
    return next(s for s in job["steps"] if s.get("name") == name)


def run(script: str, cwd: Path, tmp_path: Path, env: dict[str, str] | None = None):
    """A step's script as the runner runs it (bash -eo pipefail), with its output files."""
    (tmp_path / "output").write_text("", encoding="utf-8")
    return subprocess.run(
        ["bash", "-eo", "pipefail", "-c", script],
        cwd=cwd,
        env={
            **os.environ,
            **(env or {}),
            "GITHUB_OUTPUT": str(tmp_path / "output"),
            "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
        },
        capture_output=True,
        text=True,
        check=False,
    )


def outputs(path: Path) -> dict[str, str]:
    """GITHUB_OUTPUT as GitHub reads it: name=value lines and name<<DELIMITER blocks."""
    lines = path.read_text(encoding="utf-8").splitlines()
    result: dict[str, str] = {}
    while lines:
        line = lines.pop(0)
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter)
            result[name], lines = "\n".join(lines[:end]) + "\n", lines[end + 1 :]
        else:
            name, value = line.split("=", 1)
            result[name] = value
    return result


def repository(folder: Path, version: str, changelog: str = CHANGELOG) -> Path:
    """A repository with the two files the version job reads, committed on main."""
    folder.mkdir()
    (folder / "pyproject.toml").write_text(
        f'[project]\nname = "t"\nversion = "{version}"\n', encoding="utf-8"
    )
    (folder / "CHANGELOG.md").write_text(changelog, encoding="utf-8")
    git(folder, "init", "-q", "-b", "main")
    commit_all(folder, "Release")
    return folder


def read_version(workflow: dict, repo: Path, tmp_path: Path):
    script = step(workflow["jobs"]["version"], "Read the version and its CHANGELOG.md section")
    return run(script["run"], repo, tmp_path)


def test_runs_on_pushes_to_main_only(workflow):
    assert workflow["on"] == {"push": {"branches": ["main"]}}
    assert workflow["concurrency"]["cancel-in-progress"] is False  # a release is never cut off


def test_only_the_tag_job_writes_and_it_runs_no_repository_code(workflow):
    version, tag = workflow["jobs"]["version"], workflow["jobs"]["tag"]
    assert "permissions" not in version  # the workflow's contents: read
    assert tag["permissions"] == {"contents": "write"}
    assert tag["needs"] == "version" and tag["if"] == "needs.version.outputs.release == 'true'"
    assert all("uses" not in s for s in tag["steps"])  # no checkout, no action: only gh
    assert step(tag, "gh release create")["env"]["TARGET"] == "${{ github.sha }}"
    checkout = version["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["fetch-depth"] == 0  # every tag, to compare with


def test_a_new_version_is_released_with_its_changelog_section(workflow, tmp_path):
    result = read_version(workflow, repository(tmp_path / "repo", "1.2.3"), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert outputs(tmp_path / "output") == {"release": "true", "tag": "v1.2.3", "notes": NOTES}


def test_a_tagged_version_is_left_alone(workflow, tmp_path):
    repo = repository(tmp_path / "repo", "1.2.3")
    git(repo, "tag", "v1.2.3")
    result = read_version(workflow, repo, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert outputs(tmp_path / "output") == {"release": "false"}
    assert "v1.2.3 exists" in result.stdout


@pytest.mark.parametrize("version", ["1.3.0.dev0", "1.3.0rc1", "1.3"])
def test_only_a_final_x_y_z_is_tagged(workflow, tmp_path, version):
    result = read_version(workflow, repository(tmp_path / "repo", version), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert outputs(tmp_path / "output") == {"release": "false"}


def test_a_version_without_its_changelog_section_fails(workflow, tmp_path):
    result = read_version(workflow, repository(tmp_path / "repo", "1.2.4"), tmp_path)
    assert result.returncode == 1
    assert '::error file=CHANGELOG.md::No "## 1.2.4" section' in result.stdout
    assert outputs(tmp_path / "output") == {}


def test_this_repositorys_version_is_releasable(workflow, tmp_path):
    """A branch-only clone has no tags: main's version would be released, with real notes."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]
    repo = repository(
        tmp_path / "repo", version, (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    )
    result = read_version(workflow, repo, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    found = outputs(tmp_path / "output")
    assert found["release"] == "true" and found["tag"] == f"v{version}"
    assert found["notes"].strip() and "\n## " not in found["notes"]


def test_the_tag_job_creates_tag_and_release_at_the_pushed_commit(workflow, tmp_path):
    """gh stood in for by a script that records its arguments and the notes it was given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gh = bin_dir / "gh"
    gh.write_text(
        '#!/bin/sh\nprintf "%s\\n" "$@" > "$RECORD/args"\ncp notes.md "$RECORD/notes"\n',
        encoding="utf-8",
    )
    gh.chmod(0o755)
    record = tmp_path / "record"
    record.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    script = step(workflow["jobs"]["tag"], "gh release create")
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "RECORD": str(record),
        "TAG": "v1.2.3",
        "NOTES": NOTES.rstrip("\n"),  # as GitHub hands a multi-line output back
        "TARGET": "0123456789abcdef0123456789abcdef01234567",
    }
    result = run(script["run"], work, tmp_path, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (record / "args").read_text(encoding="utf-8").splitlines() == [
        "release",
        "create",
        "v1.2.3",
        "--target",
        env["TARGET"],
        "--title",
        "v1.2.3",
        "--notes-file",
        "notes.md",
    ]
    assert (record / "notes").read_text(encoding="utf-8") == NOTES
