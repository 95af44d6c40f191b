"""Tests for the generated scripts/lock_report.py (default answers) against real `uv lock` locks.

The CPU index is a local PEP 503 mirror (harness/mirror.py); the "plain PyPI" case
resolves torch from PyPI, which brings in the CUDA wheels the report must flag.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.pylock import Pylock

from harness.locks import load_lock_report, locked_package, read_lock, uv_lock
from harness.mirror import build_mirror
from harness.render import CATALOGUE

AMD64 = "sys_platform == 'linux' and platform_machine == 'x86_64'"
ARM64 = "sys_platform == 'linux' and platform_machine == 'aarch64'"
ML_DEPS = ["torch==2.13.*", "sentence-transformers>=5"]

lock_report = load_lock_report()


# --------------------------------------------------------------------------- helpers


def write_pyproject(
    folder: Path,
    name: str,
    deps: list[str],
    *,
    index_url: str | None = None,
    environments: list[str] | None = None,
    requires_python: str = ">=3.11,<3.12",
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "[project]",
        f'name = "{name}"',
        'version = "0.1.0"',
        f'requires-python = "{requires_python}"',
        f"dependencies = {json.dumps(deps)}",
    ]
    if index_url:
        lines += [
            "[[tool.uv.index]]",
            'name = "pytorch-cpu"',
            f'url = "{index_url}"',
            "explicit = true",
            "[tool.uv.sources]",
            'torch = { index = "pytorch-cpu" }',
        ]
    if environments:
        lines += ["[tool.uv]", f"environments = {json.dumps(environments)}"]
    (folder / "pyproject.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def locked(folder: Path) -> Path:
    result = uv_lock(folder)
    assert result.returncode == 0, f"uv lock failed in {folder}:\n{result.stderr}"
    return folder


def run_script(project: Path, *args: str) -> subprocess.CompletedProcess:
    """The report as users run it: `uv run --script`, with its inline dependencies."""
    script = lock_report.__file__
    assert script is not None  # imported from the rendered file
    command = ["uv", "run", "--quiet", "--script", script, "--project", str(project)]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=300, check=False
    )


def copy_project(source: Path, destination: Path) -> Path:
    destination.mkdir(parents=True)
    for name in ("pyproject.toml", "uv.lock"):
        shutil.copy2(source / name, destination / name)
    return destination


def problem_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("problem:")]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cpu_project(tmp_path_factory, mirror_url) -> Path:
    folder = tmp_path_factory.mktemp("cpu") / "p1"
    write_pyproject(folder, "p1", ML_DEPS, index_url=mirror_url, environments=[AMD64])
    return locked(folder)


@pytest.fixture(scope="module")
def pypi_project(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pypi") / "p2"
    write_pyproject(folder, "p2", ML_DEPS, environments=[AMD64, ARM64])
    return locked(folder)


@pytest.fixture(scope="module")
def forked_project(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fork") / "p3"
    write_pyproject(
        folder,
        "p3",
        [
            "numpy<2; platform_machine == 'aarch64'",
            "numpy>=2; platform_machine == 'x86_64'",
            "requests[socks]",
            "colorama; sys_platform == 'win32'",
            "tomli; python_version < '3.12'",
        ],
        environments=[AMD64, ARM64],
        requires_python=">=3.11",
    )
    with (folder / "pyproject.toml").open("a", encoding="utf-8") as handle:
        handle.write('[dependency-groups]\ndev = ["pytest"]\n')
    return locked(folder)


@pytest.fixture
def synthetic_project(tmp_path) -> tuple[Path, Path]:
    """A torch-only project on a mirror with a throwaway wheel, referenced by a relative
    index URL (so uv records the wheel path relative to the index). Returns (project, wheel)."""
    build_mirror(tmp_path / "mirror", synthetic=True)
    folder = write_pyproject(
        tmp_path / "proj",
        "p4",
        ["torch==2.13.*"],
        index_url="../mirror/simple",
        environments=[AMD64],
    )
    locked(folder)
    wheels = list((tmp_path / "mirror" / "wheels").glob("torch-2.13.*.whl"))
    assert len(wheels) == 1
    return folder, wheels[0]


# --------------------------------------------------------------------------- end to end


def test_cpu_lock_reports_clean_footprint(cpu_project):
    result = run_script(cpu_project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert problem_lines(result.stdout) == []
    assert "linux/amd64" in result.stdout and "(cpu index)" in result.stdout

    report = lock_report.load_report(cpu_project)
    assert report["python"] == "3.11"
    assert list(report["platforms"]) == ["linux/amd64"]  # from [tool.uv] environments
    amd64 = report["platforms"]["linux/amd64"]
    assert amd64["gpu_packages"] == []
    torch = amd64["torch"]
    assert (torch["version"], torch["local"], torch["from_cpu_index"]) == (
        "2.13.0+cpu",
        "cpu",
        True,
    )
    locked = locked_package(cpu_project, "torch")
    assert locked is not None
    assert torch["source"] == locked["source"]["registry"]
    assert amd64["unknown_size"] == []
    # The project itself is not counted; sentence-transformers and torch are.
    assert amd64["packages"] == len(read_lock(cpu_project)["package"]) - 1


def test_cpu_torch_size_comes_from_the_local_wheel(cpu_project):
    torch = locked_package(cpu_project, "torch")
    assert torch is not None
    (wheel,) = torch["wheels"]
    assert "size" not in wheel, "a local index should record no size; the test premise broke"
    wheel_bytes = Path(wheel["path"]).stat().st_size

    amd64 = lock_report.load_report(cpu_project)["platforms"]["linux/amd64"]
    assert "torch" not in amd64["unknown_size"]
    assert amd64["download_bytes"] > wheel_bytes  # PyPI packages carry `size` and count too


def test_pypi_torch_is_flagged(pypi_project):
    result = run_script(pypi_project)
    assert result.returncode == 1, result.stdout + result.stderr
    problems = problem_lines(result.stdout)
    assert any("GPU packages" in line and "nvidia-" in line for line in problems)
    assert any("torch 2.13.0 comes from https://pypi.org/simple" in line for line in problems)

    report = lock_report.load_report(pypi_project)
    assert list(report["platforms"]) == ["linux/amd64", "linux/arm64"]
    assert report["ok"] is False
    amd64 = report["platforms"]["linux/amd64"]
    assert "triton" in amd64["gpu_packages"]
    assert any(name.startswith("nvidia-") for name in amd64["gpu_packages"])
    assert amd64["torch"]["from_cpu_index"] is False
    assert amd64["torch"]["local"] is None
    assert amd64["unknown_size"] == []
    # CUDA wheels are gigabytes; the CPU footprint test above is a few hundred MB at most.
    assert amd64["download_bytes"] > 1_000_000_000


def test_json_output_parses(cpu_project):
    result = run_script(cpu_project, "--json", "--platform", "linux/amd64")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["problems"] == []
    assert report["python"] == "3.11"
    amd64 = report["platforms"]["linux/amd64"]
    assert set(amd64) >= {"packages", "gpu_packages", "torch", "download_bytes", "unknown_size"}
    assert amd64["torch"]["from_cpu_index"] is True
    assert amd64 == lock_report.load_report(cpu_project)["platforms"]["linux/amd64"]


def test_platform_outside_the_lock_is_a_problem(cpu_project):
    result = run_script(cpu_project, "--platform", "linux/arm64")
    assert result.returncode == 1
    assert any("not solved for this platform" in line for line in problem_lines(result.stdout))


@pytest.mark.parametrize(
    ("pin", "status"),
    [
        ("pytorch-cpu=2.12", 1),
        ("conda-forge::pytorch-cpu==2.12.1", 1),
        ("pytorch-cpu=2.13", 0),
        ("pytorch-cpu=2.13.*", 0),
        ("pytorch-cpu>=2.13,<2.14", 0),
        ("pytorch-cpu  # unpinned: nothing to compare", 0),
    ],
)
def test_environment_yml_pin_must_match_lock(cpu_project, tmp_path, pin, status):
    project = copy_project(cpu_project, tmp_path / "proj")
    (project / "environment.yml").write_text(
        "name: demo\nchannels:\n  - conda-forge\ndependencies:\n"
        f"  - python=3.11\n  - {pin}\n  - pip\n  - pip:\n    - pytorch-cpu==9.9\n",
        encoding="utf-8",
    )
    result = run_script(project)
    assert result.returncode == status, result.stdout + result.stderr
    problems = problem_lines(result.stdout)
    if status:
        assert problems == [
            "problem: linux/amd64: environment.yml pins pytorch-cpu=2.12 but uv.lock has "
            "torch 2.13.0+cpu"
        ]
    else:
        assert problems == []


def test_missing_lock_exits_2(tmp_path):
    project = write_pyproject(tmp_path / "proj", "p5", ["torch"])
    result = run_script(project)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "uv.lock" in result.stderr and "uv lock" in result.stderr
    # One line for people, then the result line for the lock hook.
    message, last = result.stderr.strip().splitlines()
    outcome = json.loads(last)[CATALOGUE["contracts"]["name"]]
    assert outcome["status"] == "error" and outcome["exit"] == 2 and outcome["message"] in message


def test_missing_pyproject_exits_2(tmp_path):
    result = run_script(tmp_path)
    assert result.returncode == 2
    assert "pyproject.toml" in result.stderr


def test_unparsable_lock_exits_2(tmp_path):
    project = write_pyproject(tmp_path / "proj", "p6", ["torch"])
    (project / "uv.lock").write_text("version = 1\n[[package]\nname =\n", encoding="utf-8")
    result = run_script(project)
    assert result.returncode == 2
    assert "cannot parse" in result.stderr and "uv.lock" in result.stderr


def test_relative_index_and_wheel_paths_resolve(synthetic_project):
    project, wheel = synthetic_project
    torch = locked_package(project, "torch")
    assert torch is not None
    # uv writes both relative: the registry to the project, the wheel to the registry.
    assert torch["source"] == {"registry": "../mirror/simple"}
    assert not Path(torch["wheels"][0]["path"]).is_absolute()

    amd64 = lock_report.load_report(project)["platforms"]["linux/amd64"]
    assert amd64["torch"]["from_cpu_index"] is True
    assert amd64["unknown_size"] == []
    assert amd64["download_bytes"] >= wheel.stat().st_size


def test_missing_local_wheel_is_unknown_not_zero(synthetic_project):
    project, wheel = synthetic_project
    before = lock_report.load_report(project)["platforms"]["linux/amd64"]
    wheel_bytes = wheel.stat().st_size
    wheel.unlink()

    after = lock_report.load_report(project)["platforms"]["linux/amd64"]
    assert after["unknown_size"] == ["torch"]
    assert after["download_bytes"] == before["download_bytes"] - wheel_bytes
    result = run_script(project)
    assert "MB+" in result.stdout  # the total is marked as a lower bound, and says so:
    assert "linux/amd64: + means at least; size unknown, not counted: torch" in result.stdout
    # No conda lock here: the layers table cannot compare, and says so instead of "0".
    row = next(line for line in result.stdout.splitlines() if "no conda lock" in line)
    assert row.endswith("n/a") and "overlaps cannot be checked" in result.stdout
    assert after["layers"]["compared"] is False
    # The last stderr line is the report's result, for the lock hook.
    outcome = json.loads(result.stderr.strip().splitlines()[-1])
    assert outcome[CATALOGUE["contracts"]["name"]] == {
        "script": "lock_report",
        "status": "ok",
        "exit": CATALOGUE["contracts"]["lock_report"]["ok"],
        "problems": [],
    }


def test_forked_lock_follows_markers_extras_and_skips_dev(forked_project):
    exported = lock_report.export_lock(forked_project)
    versions = {}
    for platform in ("linux/amd64", "linux/arm64"):
        chosen = {
            package.name: (package, artifact)
            for package, artifact in _select(exported, platform, "3.11.0")
        }
        assert {"requests", "pysocks", "tomli"} <= set(chosen)  # extra + python marker
        assert not {"p3", "pytest", "colorama"} & set(chosen)  # root, dev group, win32 marker
        numpy, artifact = chosen["numpy"]
        versions[platform] = str(numpy.version)
        assert artifact.filename.endswith(".whl"), f"no {platform} wheel chosen for numpy"
    assert versions["linux/arm64"].startswith("1.")
    assert versions["linux/amd64"].split(".")[0] == "2"
    report = lock_report.load_report(forked_project)
    assert report["ok"] is True and report["python"] == "3.11"


def test_a_bad_marker_is_exit_2_in_one_line(tmp_path):
    project = write_pyproject(tmp_path / "proj", "p7", [], environments=["os_name ==="])
    (project / "uv.lock").write_text('version = 1\n[[package]]\nname = "p7"\n')
    result = run_script(project)
    assert result.returncode == 2, result.stdout + result.stderr
    # One line for people, then the result line for the lock hook.
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 2


# --------------------------------------------------------------------------- units


def _select(exported: Pylock, platform: str, python: str) -> list:
    environment = lock_report.marker_environment(platform, python)
    return list(
        exported.select(environment=environment, tags=lock_report.wheel_tags(platform, python))
    )


@pytest.mark.parametrize(
    ("marker", "platform", "python", "expected"),
    [
        (AMD64, "linux/amd64", "3.11.0", True),
        (AMD64, "linux/arm64", "3.11.0", False),
        (ARM64, "linux/arm64", "3.11.0", True),
        ("python_full_version >= '3.12'", "linux/amd64", "3.11.0", False),
        ("python_full_version >= '3.12'", "linux/amd64", "3.12.0", True),
        (
            "python_version == '3.11' and implementation_name == 'cpython'",
            "linux/amd64",
            "3.11.4",
            True,
        ),
        ("os_name == 'nt' or platform_system == 'Darwin'", "linux/amd64", "3.11.0", False),
        ("extra == 'extra-2-p1-cuda'", "linux/amd64", "3.11.0", False),
    ],
)
def test_marker_environment_is_a_linux_cpython_container(marker, platform, python, expected):
    assert lock_report.holds(marker, platform, python) is expected


def _pick(filenames: list[str], platform: str, python: str) -> str:
    hashes = {"sha256": "0" * 64}
    package = {
        "name": "pkg",
        "version": "1.0",
        "wheels": [{"url": f"https://x/{name}", "hashes": hashes} for name in filenames],
        "sdist": {"url": "https://x/pkg-1.0.tar.gz", "hashes": hashes},
    }
    exported = Pylock.from_dict(
        {"lock-version": "1.0", "created-by": "test", "packages": [package]}
    )
    ((_, artifact),) = _select(exported, platform, python)
    return artifact.filename


def test_wheel_choice_prefers_the_most_specific_tag():
    wheels = [
        "pkg-1.0-py3-none-any.whl",
        "pkg-1.0-cp39-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "pkg-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "pkg-1.0-cp312-abi3-manylinux_2_28_x86_64.whl",
        "pkg-1.0-cp312-cp312-musllinux_1_2_x86_64.whl",
        "pkg-1.0-cp312-cp312-manylinux_2_28_aarch64.whl",
        "pkg-1.0-cp312-cp312-macosx_11_0_arm64.whl",
        "pkg-1.0-cp313-cp313t-manylinux_2_28_x86_64.whl",
    ]
    assert _pick(wheels, "linux/amd64", "3.12.0") == wheels[2]
    assert _pick([wheels[1], wheels[3]], "linux/amd64", "3.12.0") == wheels[3]  # own abi3
    older = ["pkg-1.0-cp38-abi3-manylinux2014_x86_64.whl", "pkg-1.0-cp310-abi3-linux_x86_64.whl"]
    assert _pick(older, "linux/amd64", "3.12.0") == older[1]  # newest stable ABI first
    assert _pick(wheels, "linux/arm64", "3.12.0") == wheels[5]
    assert _pick(wheels, "linux/amd64", "3.11.0") == wheels[1]  # abi3 beats pure Python
    assert _pick(wheels, "linux/arm64", "3.11.0") == wheels[0]
    assert _pick(wheels, "linux/amd64", "3.8.0") == wheels[0]  # cp39 abi3 is too new
    newest = [
        "pkg-1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
        "pkg-1.0-cp311-cp311-manylinux_2_34_x86_64.whl",
    ]
    assert _pick(newest, "linux/amd64", "3.11.0") == newest[1]  # the newest glibc wins


def test_wheel_choice_falls_back_to_sdist():
    only_other = [
        "pkg-1.0-cp313-cp313-manylinux_2_28_x86_64.whl",
        "pkg-1.0-pp311-pypy311_pp73-manylinux_2_28_x86_64.whl",
        "pkg-1.0-cp311-cp311-win_amd64.whl",
    ]
    assert _pick(only_other, "linux/amd64", "3.11.0") == "pkg-1.0.tar.gz"
    assert (
        _pick(["pkg-1.0-cp311-cp311-linux_x86_64.whl"], "linux/amd64", "3.11.0")
        == "pkg-1.0-cp311-cp311-linux_x86_64.whl"
    )


@pytest.mark.parametrize(
    ("spec", "python"),
    [
        (">=3.12,<3.13", "3.12.0"),
        ("==3.11.*", "3.11.0"),
        ("~=3.10", "3.10.0"),
        (">=3.11.4", "3.11.4"),
        ("<3.13", None),
    ],
)
def test_target_python_is_the_lowest_allowed(spec, python):
    pyproject = {"project": {"requires-python": spec}}
    if python is None:
        with pytest.raises(lock_report.ReportError, match="requires-python"):
            lock_report.target_python(pyproject, {})
    else:
        assert lock_report.target_python(pyproject, {}) == python


def test_platforms_come_from_uv_environments():
    def platforms(environments):
        uv = {} if environments is None else {"environments": environments}
        return lock_report.locked_platforms({"tool": {"uv": uv}}, "3.12.0")

    assert platforms(None) == ["linux/amd64", "linux/arm64"]
    assert platforms([ARM64]) == ["linux/arm64"]
    assert platforms([AMD64, ARM64, "sys_platform == 'darwin'"]) == ["linux/amd64", "linux/arm64"]


@pytest.mark.parametrize(
    ("name", "platform"),
    [("amd64", "linux/amd64"), ("X86_64", "linux/amd64"), ("linux/arm64/v8", "linux/arm64")],
)
def test_platform_names_normalise(name, platform):
    assert lock_report.normalise_platform(name) == platform


@pytest.mark.parametrize("platform", list(CATALOGUE["platforms"]))
def test_each_platform_machine_satisfies_its_catalogue_marker(platform):
    other = next(p for p in CATALOGUE["platforms"] if p != platform)
    assert set(lock_report.PLATFORMS) == set(CATALOGUE["platforms"])
    assert lock_report.holds(CATALOGUE["platforms"][platform]["marker"], platform, "3.12.0")
    assert not lock_report.holds(CATALOGUE["platforms"][platform]["marker"], other, "3.12.0")


@pytest.mark.parametrize(
    ("name", "gpu"),
    [
        ("nvidia-cublas-cu12", True),
        ("triton", True),
        ("pytorch-triton-rocm", True),
        ("cuda-bindings", True),
        ("tritonclient", False),
        ("torch", False),
    ],
)
def test_gpu_packages_follow_the_catalogue_patterns(name, gpu):
    assert lock_report.is_gpu_package(name) is gpu


@pytest.mark.parametrize(
    ("location", "configured"),
    [
        ("/srv/m/simple", "file:///srv/m/simple/"),
        ("../m/simple", "file:///work/m/simple"),
        ("https://download.pytorch.org/whl/cpu", "https://download.pytorch.org/whl/cpu/"),
    ],
)
def test_index_locations_normalise_alike(location, configured):
    base = Path("/work/proj")
    assert lock_report.normalise_index(location, base) == lock_report.normalise_index(
        configured, base
    )


def test_environment_pin_reads_only_top_level_dependencies(tmp_path):
    (tmp_path / "environment.yml").write_text(
        "name: x  # comment\n"
        "channels:\n  - pytorch-cpu=1.0\n"
        "dependencies:\n"
        "  - python=3.12\n"
        "  - pip:\n"
        "    - pytorch-cpu==2.0\n"
        "  - 'pytorch-cpu=2.13.*'  # cpu build\n"
        "variables:\n  FOO: '1'\n",
        encoding="utf-8",
    )
    assert lock_report.environment_pin(tmp_path) == "2.13"
