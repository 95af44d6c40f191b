"""The real post-generation lock, and the Dockerfile's uv steps replayed against a stand-in prefix.

Projects are locked by the template's own hook, with real uv, against the local CPU mirror.
"""

from __future__ import annotations

import shutil
import subprocess
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from harness import checks
from harness.dockerfile_uv import CONDA_PREFIX, sync_steps
from harness.locks import UV_ENV, locked_package, read_lock
from harness.mirror import build_wheel
from harness.render import ANSWER_SETS, CATALOGUE, answers_for, local_answers, render

AMD64_PY311 = {
    "sys_platform": "linux",
    "platform_machine": "x86_64",
    "python_version": "3.11",
    "python_full_version": "3.11.7",
    "platform_system": "Linux",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


def would_install(project: Path) -> set[str]:
    """What `uv sync --no-dev` installs on linux/amd64, read with `uv export` (not our report)."""
    exported = subprocess.run(
        [
            "uv",
            "export",
            "--frozen",
            "--no-dev",
            "--no-emit-project",
            "--no-hashes",
            "--no-header",
            "--no-annotate",
        ],
        cwd=project,
        env=UV_ENV,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names: set[str] = set()
    for line in exported.splitlines():
        if line.strip() and not line.startswith(("#", "-")):
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(AMD64_PY311):
                names.add(canonicalize_name(requirement.name))
    return names


@pytest.fixture(scope="module")
def default_project(tmp_path_factory, mirror_url) -> Path:
    destination = tmp_path_factory.mktemp("default") / "project"
    return render(destination, answers_for("default", **local_answers(mirror_url)), tasks=True)


def gpu_packages(project: Path) -> set[str]:
    names = {p["name"] for p in read_lock(project)["package"]}
    return {n for n in names if any(fnmatchcase(n, p) for p in CATALOGUE["gpu_packages"]["pypi"])}


def assert_cpu_torch_from(project: Path, mirror_url: str) -> None:
    assert gpu_packages(project) == set()
    torch = locked_package(project, "torch")
    assert torch is not None
    assert torch["version"].endswith("+cpu")
    assert Path(torch["source"]["registry"]) == Path(mirror_url.removeprefix("file://"))


def test_hook_locks_cpu_torch_and_no_gpu_package(default_project, mirror_url):
    assert_cpu_torch_from(default_project, mirror_url)
    names = {p["name"] for p in read_lock(default_project)["package"]}
    assert "sentence-transformers" in names and "chromadb" in names


def test_an_upgrade_keeps_torch_on_the_cpu_index(default_project, mirror_url, tmp_path):
    """What dependabot's uv updater runs: `uv lock --upgrade`, every package at its newest."""
    project = shutil.copytree(default_project, tmp_path / "project")
    upgrade = subprocess.run(
        ["uv", "lock", "--upgrade"], cwd=project, env=UV_ENV, capture_output=True, text=True
    )
    assert upgrade.returncode == 0, upgrade.stderr
    assert_cpu_torch_from(project, mirror_url)
    report = subprocess.run(
        ["uv", "run", "--script", "scripts/lock_report.py"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert report.returncode == 0, report.stdout + report.stderr


def test_lock_matches_pyproject(default_project):
    check = subprocess.run(
        ["uv", "lock", "--check"], cwd=default_project, env=UV_ENV, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr


def test_lock_report_ships_and_passes(default_project):
    report = subprocess.run(
        ["uv", "run", "--script", "scripts/lock_report.py"],
        cwd=default_project,
        capture_output=True,
        text=True,
    )
    assert report.returncode == 0, report.stdout + report.stderr
    assert "linux/amd64" in report.stdout


def make_prefix(root: Path, conda_packages: dict[str, str]) -> Path:
    """A venv standing in for /opt/conda, with 'conda' builds of the given packages."""
    prefix = root / "opt-conda"
    # The lock is solved for Python 3.11 whatever Python runs the tests.
    subprocess.run(
        ["uv", "venv", "--python", "3.11", str(prefix)], env=UV_ENV, check=True, capture_output=True
    )
    for name, version in conda_packages.items():
        module = name.replace("-", "_")
        wheel = build_wheel(
            root / "conda-wheels",
            name,
            version,
            {f"{module}/__init__.py": b'BUILT_BY = "conda"\n'},
            tag="py3-none-any",
        )
        subprocess.run(
            [
                "uv",
                "pip",
                "install",
                "--python",
                str(prefix / "bin" / "python"),
                "--no-deps",
                str(wheel),
            ],
            env=UV_ENV,
            check=True,
            capture_output=True,
        )
    return prefix


def installed(prefix: Path) -> dict[str, str]:
    listing = subprocess.run(
        ["uv", "pip", "list", "--python", str(prefix / "bin" / "python"), "--format", "json"],
        env=UV_ENV,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    import json

    return {canonicalize_name(item["name"]): item["version"] for item in json.loads(listing)}


def replay(project: Path, prefix: Path, workdir: Path) -> None:
    """Run the Dockerfile's uv steps with its ENV, /opt/conda mapped to the stand-in prefix."""
    env_vars, steps = sync_steps(project / "Dockerfile")
    assert [step.argv[:2] for step in steps] == [["uv", "sync"], ["uv", "sync"]]
    env = {**UV_ENV, **{k: v.replace(CONDA_PREFIX, str(prefix)) for k, v in env_vars.items()}}
    for number, step in enumerate(steps):
        context = workdir / f"step{number}"
        if step.binds == ["."]:
            shutil.copytree(project, context, ignore=shutil.ignore_patterns(".venv"))
        else:  # only the bind-mounted files exist, as in the image
            context.mkdir(parents=True)
            for name in step.binds:
                shutil.copy2(project / name, context / name)
        result = subprocess.run(step.argv, cwd=context, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_docker_uv_steps_keep_conda_torch_and_install_the_app(default_project, tmp_path):
    owned = checks.conda_provides(default_project)
    assert owned == {"torch"}
    prefix = make_prefix(tmp_path, {"torch": "2.13.0"})
    replay(default_project, prefix, tmp_path)
    after = installed(prefix)
    assert after["torch"] == "2.13.0", "uv replaced conda's torch"
    assert (
        prefix / "lib" / "python3.11" / "site-packages" / "torch" / "__init__.py"
    ).read_text() == 'BUILT_BY = "conda"\n'
    missing = would_install(default_project) - owned - set(after)
    assert not missing, f"locked app packages not installed: {sorted(missing)}"
    package = answers_for("default")["project_name"].lower().replace(" ", "-")
    assert package in after, "the project itself was not installed"


def test_docker_uv_steps_install_locked_torch_under_the_uv_installer(tmp_path, http_mirror_url):
    answers = answers_for("torch-uv-bare", **local_answers(http_mirror_url))
    project = render(tmp_path / "project", answers, tasks=True)
    assert checks.conda_provides(project) == set()
    prefix = make_prefix(tmp_path, {})
    replay(project, prefix, tmp_path)
    assert installed(prefix)["torch"].endswith("+cpu")


@pytest.mark.parametrize("answer_set", sorted(ANSWER_SETS))
def test_one_owner_per_package(answer_set, tmp_path, http_mirror_url):
    """What conda provides and what the image's uv steps install never overlap."""
    answers = answers_for(answer_set, **local_answers(http_mirror_url))
    project = render(tmp_path / "project", answers, tasks=True)
    _, steps = sync_steps(project / "Dockerfile")
    uv_installs = would_install(project) - set().union(*(step.skipped for step in steps))
    assert not checks.conda_provides(project) & uv_installs
    # Versions: conda's torch release and the locked torch agree on major.minor.
    torch = locked_package(project, "torch")
    env_text = (project / "environment.yml").read_text()
    if torch and "pytorch-cpu" in env_text:
        version = Version(torch["version"])
        release = f"{version.major}.{version.minor}"
        assert f"pytorch-cpu={release}.*" in env_text


def test_make_verify_speaks_to_people_in_80_columns(default_project):
    """`make verify` ends each lock script with a line for people, not the hook's JSON line
    (which the scripts still write when the hook runs them), and nothing it prints wraps."""
    result = subprocess.run(
        ["make", "verify"], cwd=default_project, env=UV_ENV, capture_output=True, text=True
    )
    lines = (result.stdout + result.stderr).splitlines()
    assert result.returncode == 0, "\n".join(lines)
    assert [line for line in lines if len(line) > 80] == [], "\n".join(lines)
    assert not [line for line in lines if line.lstrip().startswith("{")], "\n".join(lines)
    assert "conda locks: fresh" in result.stderr.splitlines()
    assert result.stderr.splitlines()[-1] == "lock report: ok"
