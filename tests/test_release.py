"""A pin bump made with `python -m tools.pins --write` reaches projects through a release.

A throwaway copy of this working tree is released as v1.0.0 pinning the older torch line
(2.11 with torchvision 0.26). The registries, stood in for on loopback, then publish torch 2.13
with torchvision 0.28 (the test mirror serves both lines); `--write` moves the catalogue's
newest line, and the change is committed and tagged v1.1.0. Projects generated from v1.0.0,
locked against the mirror and edited by their users, are updated with `copier update`: uv.lock
follows the new pin, and the users' edits survive (one edit sits beside the bumped lines, so
git reports a conflict there, which the user resolves as the README says).
"""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest
import yaml
from copier import run_update

from harness.registry_standins import (
    Standins,
    admitted_ranges,
    closed_port_url,
    conda_channel,
    pypi_project,
)
from harness.render import CATALOGUE, ROOT
from harness.updates import (
    USER_DEPENDENCY,
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
)

pytestmark = pytest.mark.slow

NEW_LINE = '  - {torch: "2.13.*", torchvision: "0.28.*"}'
OLD_LINE = '  - {torch: "2.11.*", torchvision: "0.26.*"}'
CPU_BUILD = "cpu_generic_py311_h1234567_0"


def published(standins: Standins, folder: Path, mirror_url: str) -> dict[str, str]:
    """Registries that have moved on to torch 2.13 and torchvision 0.28; URLs by flag."""
    for name, versions in {
        "torch": ["2.11.0", "2.13.0"],
        "torchvision": ["0.26.0", "0.28.0"],
        "torchaudio": ["2.11.0"],
        "uv": [CATALOGUE["images"]["uv"].split(":")[1]],
    }.items():
        pypi_project(standins, name, versions)
    for name, (_, low) in admitted_ranges(CATALOGUE).items():
        pypi_project(standins, name, [low])
    channel = conda_channel(
        folder / "conda",
        [
            ("pytorch-cpu", "2.11.0", CPU_BUILD),
            ("pytorch-cpu", "2.13.0", CPU_BUILD),
            ("torchvision", "0.26.0", CPU_BUILD),
            ("torchvision", "0.28.0", CPU_BUILD),
            ("torchaudio", "2.11.0", CPU_BUILD),
            ("faiss-cpu", "1.15.0", "py311_h1234567_0"),
        ],
    )
    mirror = Path(url2pathname(urlparse(mirror_url).path))
    unreachable = closed_port_url()  # images and actions play no part in this release
    return {
        "--pypi-url": f"{standins.url}/pypi/simple",
        "--cpu-index-url": standins.serve_folder("cpu", mirror),
        "--conda-channel-url": standins.serve_folder("conda", channel),
        "--registry-url": unreachable,
        "--github-api-url": unreachable,
    }


def torch_pins(project: Path) -> dict[str, str]:
    """The torch family as the project's uv.lock resolved it."""
    return {
        p["name"]: p["version"]
        for p in lock_data(project)["package"]
        if p["name"] in ("torch", "torchvision")
    }


@pytest.fixture(scope="module")
def template(tmp_path_factory, mirror_url) -> Path:
    """Release v1.0.0 pins the older line; v1.1.0 is v1.0.0 plus what `--write` changed."""
    folder = tmp_path_factory.mktemp("release")
    template = template_copy(folder / "ml-container-template")
    replace_once(template / "catalogue.yml", NEW_LINE, OLD_LINE)
    commit_all(template, "Release 1.0.0")
    git(template, "tag", "v1.0.0")

    before = (template / "catalogue.yml").read_text(encoding="utf-8")
    with Standins() as standins:
        urls = published(standins, folder, mirror_url)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "tools.pins",
                "--root",
                str(template),
                "--write",
                "--timeout",
                "10",
                *(part for flag, url in urls.items() for part in (flag, url)),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    assert result.returncode == 0, result.stdout + result.stderr  # nothing left behind
    assert (
        "wrote torch_releases[0].torch: 2.11.* -> torch 2.13.*, torchvision 0.28.*" in result.stdout
    )
    after = (template / "catalogue.yml").read_text(encoding="utf-8")
    diff = [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    assert diff == [f"-{OLD_LINE}", f"+{NEW_LINE}"]
    assert git(template, "status", "--porcelain") == " M catalogue.yml\n"
    commit_all(template, "Release 1.1.0: torch 2.13 with torchvision 0.28")
    git(template, "tag", "v1.1.0")
    return template


def project_on_v1(template: Path, mirror_url: str, folder: Path, dependency_list: str) -> Path:
    project = generate(
        template,
        folder / "project",
        mirror_url,
        folder / "copy.log",
        "v1.0.0",
        ml_libraries=["torch", "torchvision"],
    )
    assert torch_pins(project) == {"torch": "2.11.0+cpu", "torchvision": "0.26.0+cpu"}
    return edit_like_a_user(project, dependency_list)


def update(project: Path, log: Path) -> None:
    with hook_log(log):  # no vcs_ref: the newest release, as a user's update takes
        run_update(str(project), defaults=True, overwrite=True, unsafe=True, quiet=True)
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
    assert answers["_commit"] == "v1.1.0"
    assert log_lines(log) == [f"update {project.resolve()}"]  # once, in the project


def assert_new_pins(project: Path) -> None:
    pyproject = (project / "pyproject.toml").read_text(encoding="utf-8")
    assert '"torch==2.13.*"' in pyproject and '"torchvision==0.28.*"' in pyproject
    assert torch_pins(project) == {"torch": "2.13.0+cpu", "torchvision": "0.28.0+cpu"}
    assert_lock_follows(project)
    assert_user_edits_kept(project)


def test_a_pin_bump_reaches_an_edited_project(template, mirror_url, tmp_path):
    project = project_on_v1(template, mirror_url, tmp_path, "dev")
    update(project, tmp_path / "hook.log")
    assert git(project, "diff", "--name-only", "--diff-filter=U") == ""
    assert_new_pins(project)


def test_a_dependency_added_beside_the_pins_conflicts_until_resolved(
    template, mirror_url, tmp_path
):
    """Git merges line by line: an edit touching the bumped lines is a conflict to resolve."""
    project = project_on_v1(template, mirror_url, tmp_path, "dependencies")
    before = (project / "uv.lock").read_bytes()
    update(project, tmp_path / "hook.log")
    assert git(project, "diff", "--name-only", "--diff-filter=U").split() == ["pyproject.toml"]
    assert (project / "uv.lock").read_bytes() == before  # never merged, never half-locked

    # Resolved as the README says: keep the user's dependency and the release's pins.
    pyproject = (project / "pyproject.toml").read_text(encoding="utf-8")
    resolved = re.sub(
        r"<<<<<<< before updating\n.*?=======\n(.*?)>>>>>>> after updating\n",
        lambda m: f'    "{USER_DEPENDENCY}",\n' + m[1],
        pyproject,
        flags=re.DOTALL,
    )
    (project / "pyproject.toml").write_text(resolved, encoding="utf-8")
    # As the after-update message says: both locks, since the conda pins follow the new line too.
    locked = subprocess.run(
        ["make", "lock"], cwd=project, capture_output=True, text=True, check=False
    )
    assert locked.returncode == 0, locked.stdout + locked.stderr
    assert_new_pins(project)
