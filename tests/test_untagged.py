"""Releases reach projects from a template repository that has no tags (docs/decisions/0009).

Only the branch `main` of the template reaches users, and tags made where it is developed stay
there: a clone of main has none. Copier then renders HEAD and records a commit id as `_commit`.
Here the template is developed and tagged in one repository, and users copy from a clone of its
branch alone. A project copied from that clone is edited by its user; the template moves on by
a commit (tagged where it is developed, untagged where users get it); `copier update` brings the
commit to the project, the relock migration runs once, in the project, and the user's edits
survive.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from copier import run_copy, run_update

from harness.render import ROOT, answers_for, local_answers
from harness.updates import (
    assert_lock_follows,
    assert_user_edits_kept,
    commit_all,
    edit_like_a_user,
    git,
    hook_log,
    lock_data,
    log_lines,
    replace_once,
    template_copy,
)

# What the template's next commit changes.
DOCKERFILE_LINE = "# Added after the first copy; never tagged where users get it."
PYTEST_BEFORE, PYTEST_AFTER = '"pytest>=9",', '"pytest>=9.1",'


def test_no_migration_waits_for_a_version():
    """Copier runs a migration with a `version` only when an update crosses that version, which
    never happens without tags: every migration must run on every update, and be idempotent."""
    config = yaml.safe_load((ROOT / "copier.yml").read_text(encoding="utf-8"))
    migrations = config.get("_migrations", [])
    assert migrations, "the relock migration is gone: update this test"
    assert [m for m in migrations if not isinstance(m, dict) or "version" in m] == []


def answers(project: Path) -> dict:
    return yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))


def branch_clone(developed: Path, dst: Path) -> Path:
    """What users get: the branch main, without the tags."""
    git(dst.parent, "clone", "-q", "--no-tags", "--branch", "main", str(developed), str(dst))
    assert git(dst, "tag", "--list") == ""
    return dst


def dev_pytest(project: Path) -> str:
    """The pytest specifier uv.lock recorded from the project's dev group."""
    lock = lock_data(project)
    slug = answers(project)["project_slug"]
    own = next(p for p in lock["package"] if p["name"] == slug)
    dev = own["metadata"]["requires-dev"]["dev"]
    return next(d["specifier"] for d in dev if d["name"] == "pytest")


@pytest.mark.slow
def test_an_untagged_commit_reaches_an_edited_project(mirror_url, tmp_path, capfd):
    developed = template_copy(tmp_path / "developed")
    commit_all(developed, "Release 1.0.0")
    git(developed, "tag", "v1.0.0")
    published = branch_clone(developed, tmp_path / "published")
    first = git(published, "rev-parse", "HEAD").strip()

    # copier copy with no --vcs-ref, as a user runs it: no tag, so HEAD.
    project = tmp_path / "project"
    data = answers_for("none-bare-311", **local_answers(mirror_url))
    with hook_log(tmp_path / "copy.log") as log:
        run_copy(str(published), project, data=data, defaults=True, unsafe=True, quiet=True)
    assert log_lines(log) == [f"copy {project.resolve()}"]
    assert "No git tags found in template; using HEAD as ref" in capfd.readouterr().err
    recorded = answers(project)["_commit"]
    assert git(published, "rev-parse", recorded).strip() == first  # a commit id, not a tag
    git(project, "init", "-q", "-b", "main")
    commit_all(project, "Start from ml-container-template")
    edit_like_a_user(project)

    # The template's next commit: tagged where it is developed, the tag lost on the way.
    dockerfile = developed / "template" / "Dockerfile.jinja"
    dockerfile.write_text(dockerfile.read_text().rstrip("\n") + f"\n{DOCKERFILE_LINE}\n")
    replace_once(developed / "template" / "pyproject.toml.jinja", PYTEST_BEFORE, PYTEST_AFTER)
    commit_all(developed, "Release 1.1.0")
    git(developed, "tag", "v1.1.0")
    git(published, "pull", "-q", "--no-tags", "--ff-only")
    assert git(published, "tag", "--list") == ""
    second = git(published, "rev-parse", "HEAD").strip()
    assert second != first

    # copier update with no --vcs-ref: the newest commit, since there is no tag.
    with hook_log(tmp_path / "update.log") as log:
        run_update(str(project), defaults=True, overwrite=True, unsafe=True, quiet=True)
    assert log_lines(log) == [f"update {project.resolve()}"]  # the migration, once, in place
    recorded = answers(project)["_commit"]
    assert git(published, "rev-parse", recorded).strip() == second
    assert DOCKERFILE_LINE in (project / "Dockerfile").read_text(encoding="utf-8")
    assert PYTEST_AFTER in (project / "pyproject.toml").read_text(encoding="utf-8")
    assert git(project, "diff", "--name-only", "--diff-filter=U") == ""
    assert dev_pytest(project) == ">=9.1"  # relocked by the migration from the new pyproject
    assert_lock_follows(project)
    assert_user_edits_kept(project)
