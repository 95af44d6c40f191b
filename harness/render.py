"""Render the template from this working tree with Copier's own API."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml
from copier import run_copy

from harness.conda_channel import shared_channel_url

ROOT = Path(__file__).resolve().parents[1]
ANSWER_SETS: dict[str, dict] = yaml.safe_load((ROOT / "tests" / "answers.yml").read_text())
CATALOGUE: dict = yaml.safe_load((ROOT / "catalogue.yml").read_text())
DEFAULT_NAME = "Test Service"


def answers_for(name: str, **overrides) -> dict:
    """An answer set from tests/answers.yml, with a project name and any overrides."""
    answers = {"project_name": DEFAULT_NAME, **ANSWER_SETS[name], **overrides}
    return answers


def render(dst: Path, answers: dict, *, tasks: bool = False, src: Path = ROOT) -> Path:
    """Render into `dst` from HEAD of this repository (uncommitted edits included), or of `src`."""
    run_copy(
        str(src),
        dst,
        data=answers,
        defaults=True,
        unsafe=True,
        vcs_ref="HEAD",
        skip_tasks=not tasks,
        quiet=True,
    )
    return dst


def local_answers(mirror_url: str, **overrides) -> dict:
    """What locks on this machine: Python 3.11, linux/amd64, the local CPU mirror and channel."""
    return {
        "python_version": "3.11",
        "lock_platforms": ["linux/amd64"],
        "torch_index_url": mirror_url,
        "conda_channel": overrides.pop("conda_channel", None) or shared_channel_url(),
        **overrides,
    }


def copier_copy_cli(
    answers_file: Path, dst: Path, env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    """`copier copy --trust --defaults` from HEAD through Copier's own CLI, as a user types it."""
    copier = Path(sys.executable).with_name("copier")
    command = [str(copier), "copy", "--trust", "--defaults", "--vcs-ref", "HEAD"]
    return subprocess.run(
        [*command, "--data-file", str(answers_file), str(ROOT), str(dst)],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
