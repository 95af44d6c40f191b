"""The full file checks every rendered project must pass, as a user or CI would run them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import dockerfile
import yaml
from rattler import MatchSpec

from tests.support.compat import tomllib
from tests.support.render import CATALOGUE

TOOLS = Path(__file__).resolve().parents[2] / ".venv" / "bin"
JINJA_LEFTOVER = re.compile(r"(?<!\$)\{\{\s|\{%|%\}|\{#|#\}")
FORBIDDEN_CONDA = {"cpuonly", "torchvision-cpu", "torchaudio-cpu", "pytorch"}
TORCH_FAMILY_CONDA = {"pytorch-cpu", "pytorch", "torchvision", "torchaudio"}


def tool(name: str) -> str:
    local = TOOLS / name
    return str(local) if local.exists() else name


def text_files(project: Path) -> list[Path]:
    skip = {".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache", "data"}
    return [
        path
        for path in sorted(project.rglob("*"))
        if path.is_file()
        and not skip.intersection(path.relative_to(project).parts)
        and path.name != "uv.lock"
    ]


def check_layout(project: Path) -> None:
    """No leftover Jinja, no blank runs, no trailing spaces, one final newline."""
    for path in text_files(project):
        text = path.read_text(encoding="utf-8")
        assert not JINJA_LEFTOVER.search(text), f"{path.relative_to(project)}: Jinja left over"
    check_whitespace(project)


def check_whitespace(project: Path) -> None:
    """No blank runs, no trailing spaces, one final newline."""
    for path in text_files(project):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(project)
        assert text.endswith("\n") and not text.endswith("\n\n"), f"{name}: bad final newline"
        assert not text.startswith("\n"), f"{name}: starts with a blank line"
        # PEP 8 puts two blank lines between top-level definitions; nothing else needs more.
        blank_run = "\n\n\n\n" if path.suffix == ".py" else "\n\n\n"
        assert blank_run not in text, f"{name}: a run of blank lines"
        assert not re.search(r"[ \t]+$", text, re.M), f"{name}: trailing whitespace"


def check_toml_yaml(project: Path) -> dict:
    """pyproject.toml is TOML and a valid project; the YAML files parse. Returns pyproject."""
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    subprocess.run(
        [tool("validate-pyproject"), str(project / "pyproject.toml")],
        check=True,
        capture_output=True,
    )
    for path in [
        project / "environment.yml",
        project / ".copier-answers.yml",
        *project.glob(".github/workflows/*.yml"),
    ]:
        yaml.safe_load(path.read_text(encoding="utf-8"))
    return pyproject


def check_dockerfile(project: Path) -> tuple:
    """Docker's own parser accepts it, hadolint at default settings is silent."""
    instructions = dockerfile.parse_file(str(project / "Dockerfile"))
    lint = subprocess.run(
        [tool("hadolint"), "--no-color", str(project / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout
    return instructions


def conda_specs(project: Path) -> list[MatchSpec]:
    """environment.yml's dependencies as MatchSpecs; one channel, then nodefaults."""
    env = yaml.safe_load((project / "environment.yml").read_text(encoding="utf-8"))
    assert len(env["channels"]) == 2 and env["channels"][1] == "nodefaults"
    return [MatchSpec(entry) for entry in env["dependencies"]]


# The conda name each catalogue entry installs, mapped back to its PyPI distribution.
CONDA_TO_PYPI = {
    entry["conda"]["name"]: entry["pypi"]
    for group in ("libraries", "stores")
    for entry in CATALOGUE[group].values()
    if "conda" in entry
}


def conda_provides(project: Path) -> set[str]:
    """PyPI names of what environment.yml installs (Python itself excluded)."""
    names = {spec.name.normalized for spec in conda_specs(project)}
    return {CONDA_TO_PYPI[name] for name in names - {"python"}}


def check_environment(project: Path) -> list[MatchSpec]:
    specs = conda_specs(project)
    for spec in specs:
        name = spec.name.normalized
        assert name not in FORBIDDEN_CONDA, f"forbidden conda package {name}"
        if name in TORCH_FAMILY_CONDA - {"pytorch-cpu"}:
            assert str(spec.build).startswith("cpu"), f"{spec} is not pinned to a CPU build"
    return specs


def check_python_lint(project: Path) -> None:
    result = subprocess.run(
        [tool("ruff"), "check", "--no-cache", "--quiet", str(project)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # What `make lint` and the generated CI run: the generated code is as ruff formats it.
    result = subprocess.run(
        [tool("ruff"), "format", "--check", "--diff", "--no-cache", "."],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def check_project(project: Path) -> None:
    """Everything a rendered project must pass, whatever the answers."""
    check_layout(project)
    check_toml_yaml(project)
    check_dockerfile(project)
    check_environment(project)
    check_python_lint(project)
