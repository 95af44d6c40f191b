"""The local CPU mirror finds the real torch wheel wherever pip would, and says which it serves.

pip reads find-links from PIP_FIND_LINKS as well as from its config; a run under another HOME
(CI, containers, sudo) sees no user config, so the environment variable alone must be enough.
For arm64 it serves the same releases for aarch64, with PyPI's torch only when a CPU build.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from harness.mirror import (
    AARCH64_WHEEL_TAG,
    TORCH_VERSION,
    WHEEL_TAG,
    build_mirror,
    build_wheel,
    cuda_requirements,
    find_torch_wheel,
)
from harness.render import ROOT

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


# --------------------------------------------------------------------------- aarch64


def wheel_names(index: str, project: str) -> list[str]:
    page = Path(unquote(urlparse(index).path)) / project / "index.html"
    return re.findall(r">([^<]+\.whl)<", page.read_text(encoding="utf-8"))


def test_the_default_mirror_serves_x86_64_only(tmp_path):
    """Tests that need a torch for amd64 alone (an arm64 lock must fail there) keep it so."""
    index = build_mirror(tmp_path, synthetic=True)
    for project in ("torch", "torchvision", "torchaudio"):
        assert all(name.endswith("_x86_64.whl") for name in wheel_names(index, project))


def test_an_aarch64_mirror_serves_the_same_releases_for_both_machines(tmp_path):
    index = build_mirror(tmp_path, synthetic=True, machines=("x86_64", "aarch64"))
    for project in ("torch", "torchvision", "torchaudio"):
        names = wheel_names(index, project)
        x86 = sorted(n.replace("_x86_64.whl", "") for n in names if n.endswith("_x86_64.whl"))
        arm = sorted(n.replace("_aarch64.whl", "") for n in names if n.endswith("_aarch64.whl"))
        assert x86 and x86 == arm, names


def fake_torch(folder: Path, version: str, requires: tuple[str, ...], cuda: str) -> Path:
    files = {"torch/version.py": f"cuda: Optional[str] = {cuda}\n".encode()}
    return build_wheel(folder, "torch", version, files, requires, AARCH64_WHEEL_TAG)


def test_a_cuda_build_is_told_from_a_cpu_build_by_its_requirements_on_aarch64(tmp_path):
    cuda = fake_torch(
        tmp_path / "cuda",
        "2.13.0",
        (
            "filelock",
            'nvidia-cudnn-cu13==9.20.0.48; platform_system == "Linux"',
            'cuda-toolkit[cublas]==13.0.3; platform_system == "Linux"',
        ),
        "'13.0'",
    )
    assert cuda_requirements(cuda) == [
        "nvidia-cudnn-cu13==9.20.0.48",
        "cuda-toolkit==13.0.3",
        "torch.version.cuda is set",
    ]
    # Requirements whose markers name another machine do not make an aarch64 build a CUDA one.
    cpu = fake_torch(
        tmp_path / "cpu",
        "2.10.0+cpu",
        ('nvidia-nccl-cu12==2.27.3; platform_machine == "x86_64"',),
        "None",
    )
    assert cuda_requirements(cpu) == []
