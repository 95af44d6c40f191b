"""The generated Makefile, read by make itself: what each target would run (`make -n`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.render import answers_for, render

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The default project, rendered without its lock task."""
    return render(tmp_path_factory.mktemp("makefile") / "project", answers_for("default"))


def dry_run(project: Path, *args: str) -> list[list[str]]:
    """The commands `make -n` prints, each split into words."""
    result = subprocess.run(
        ["make", "-n", *args], cwd=project, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [line.split() for line in result.stdout.splitlines()]


def test_build_passes_build_args_to_docker_build(project):
    lines = dry_run(project, "build", "BUILD_ARGS=--network=host --platform linux/arm64")
    assert lines == [
        "time docker build --network=host --platform linux/arm64 -t test-service .".split()
    ]


def test_build_without_build_args_runs_plain_docker_build(project):
    assert dry_run(project, "build") == ["time docker build -t test-service .".split()]


@pytest.mark.parametrize("platform", ["linux/arm64", "linux/amd64,linux/arm64"])
def test_build_takes_a_platform_or_both(project, platform):
    lines = dry_run(project, "build", f"PLATFORM={platform}")
    assert lines == [f"time docker build --platform {platform} -t test-service .".split()]


def test_platform_is_documented_in_the_help_comment(project):
    makefile = (project / "Makefile").read_text(encoding="utf-8")
    build = next(line for line in makefile.splitlines() if line.startswith("build:"))
    assert "PLATFORM=linux/arm64" in build.split("##", 1)[1]


def test_build_args_are_documented_in_the_help_comment(project):
    makefile = (project / "Makefile").read_text(encoding="utf-8")
    build = next(line for line in makefile.splitlines() if line.startswith("build:"))
    assert "BUILD_ARGS" in build.split("##", 1)[1]


@pytest.fixture(scope="module")
def loopback_project(tmp_path_factory) -> Path:
    """A project whose CPU index is a mirror on loopback, as in an air-gapped setup."""
    answers = answers_for("default", torch_index_url="http://127.0.0.1:8000/simple")
    return render(tmp_path_factory.mktemp("makefile") / "project", answers)


def test_build_reaches_loopback_mirrors_on_the_host_network(loopback_project):
    """Without --network host the build cannot reach 127.0.0.1 (`network bridge not found`
    on an engine without a bridge), so the project's own Makefile defaults to it."""
    assert dry_run(loopback_project, "build") == [
        "time docker build --network host -t test-service .".split()
    ]
    # Other flags keep it; NETWORK= drops it.
    lines = dry_run(loopback_project, "build", "BUILD_ARGS=--pull")
    assert lines == ["time docker build --network host --pull -t test-service .".split()]
    assert dry_run(loopback_project, "build", "NETWORK=") == [
        "time docker build -t test-service .".split()
    ]


def test_the_readme_ties_loopback_mirrors_to_the_build_network(project, loopback_project):
    readme = " ".join((loopback_project / "README.md").read_text(encoding="utf-8").split())
    assert "`make build` runs `docker build --network host`" in readme
    assert "network bridge not found" in readme
    default = " ".join((project / "README.md").read_text(encoding="utf-8").split())
    assert "`make build NETWORK=host`" in default


def test_build_network_is_documented_in_the_help_comment(project):
    makefile = (project / "Makefile").read_text(encoding="utf-8")
    build = next(line for line in makefile.splitlines() if line.startswith("build:"))
    assert "NETWORK=host" in build.split("##", 1)[1]
