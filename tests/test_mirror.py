"""The local CPU mirror finds the real torch wheel wherever pip would, and says which it serves.

pip reads find-links from PIP_FIND_LINKS as well as from its config; a run under another HOME
(CI, containers, sudo) sees no user config, so the environment variable alone must be enough.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.mirror import TORCH_VERSION, WHEEL_TAG, find_torch_wheel
from tests.support.render import ROOT

WHEEL_NAME = f"torch-{TORCH_VERSION}-{WHEEL_TAG}.whl"


def header_under_another_home(home: Path, find_links: str) -> str:
    """The torch line of the test run's header, for a run with no pip config at all."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PIP_", "XDG_", "MLCT_"))
    }
    # PIP_CONFIG_FILE=os.devnull makes pip load no configuration file, even a global one.
    env.update(HOME=str(home), PIP_CONFIG_FILE=os.devnull, PIP_FIND_LINKS=find_links)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-n",
            "0",
            "-p",
            "no:cacheprovider",
            "tests/test_mirror.py",
            "-k",
            "no_test_has_this_name",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("torch wheel:")]
    assert len(lines) == 1, result.stdout + result.stderr
    return lines[0]


def test_pip_find_links_alone_finds_the_wheel(tmp_path):
    links = tmp_path / "wheels"
    links.mkdir()
    (links / WHEEL_NAME).write_bytes(b"")  # only its name matters to the finder
    header = header_under_another_home(tmp_path / "home", f"https://example.invalid/ {links}")
    assert header == f"torch wheel: real {links / WHEEL_NAME} (found through PIP_FIND_LINKS)"


def test_without_find_links_the_header_names_the_synthetic_wheel(tmp_path):
    header = header_under_another_home(tmp_path / "home", "")
    assert header.startswith("torch wheel: synthetic (no 2.13.0+cpu ")


def test_the_real_wheel_is_found_under_another_home(tmp_path):
    wheel, _ = find_torch_wheel()
    if wheel is None:
        pytest.skip("no real CPU torch wheel on this machine")
    header = header_under_another_home(tmp_path / "home", wheel.parent.as_uri())
    assert header == f"torch wheel: real {wheel} (found through PIP_FIND_LINKS)"
