"""Render every answer set at two revisions of the template and report any file that differs.

    uv run python -m tools.render_compare REV_A REV_B

Each revision is cloned into a temporary folder and rendered with Copier's `run_copy`, as
harness/render.py renders (tasks skipped), for every set in tests/answers.yml as that file
stands in REV_B. The answers file's `_commit` and `_src_path` lines name the revision and the
clone, so they are masked before comparing. Exit status: 0 when the trees are identical, 1 when a
file differs or exists on one side only, 2 when a revision cannot be cloned or rendered.
"""

from __future__ import annotations

import argparse
import difflib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from copier import run_copy

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NAME = "Test Service"  # harness/render.py's project name
# The answers file names the revision and the clone it was rendered from: never the same twice.
MASKED = re.compile(r"^(_commit|_src_path): .*$", re.MULTILINE)


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def clone(rev: str, where: Path) -> tuple[Path, str]:
    """A clone of this repository at `rev`, detached; its full commit hash."""
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    path = where / commit[:12]
    if not path.exists():
        git("clone", "--quiet", "--shared", "--no-checkout", str(ROOT), str(path))
        git("checkout", "--quiet", "--detach", commit, cwd=path)
    return path, commit


def answer_sets(rev: str) -> dict[str, dict]:
    return yaml.safe_load(git("show", f"{rev}:tests/answers.yml"))


def render(source: Path, commit: str, answers: dict, dst: Path) -> Path:
    run_copy(
        str(source),
        dst,
        data={"project_name": DEFAULT_NAME, **answers},
        defaults=True,
        unsafe=True,
        vcs_ref=commit,
        skip_tasks=True,
        quiet=True,
    )
    return dst


def files(tree: Path) -> dict[str, bytes]:
    found = {}
    for path in sorted(tree.rglob("*")):
        if path.is_file() and ".git" not in path.relative_to(tree).parts:
            data = path.read_bytes()
            if path.name == ".copier-answers.yml":
                data = MASKED.sub(r"\1: <masked>", data.decode()).encode()
            found[str(path.relative_to(tree))] = data
    return found


def compare(a: Path, b: Path, label: str) -> list[str]:
    """Differences between two rendered trees, as printable lines."""
    left, right = files(a), files(b)
    lines = []
    for name in sorted(left.keys() | right.keys()):
        if name not in right:
            lines.append(f"{label}: only in A: {name}")
        elif name not in left:
            lines.append(f"{label}: only in B: {name}")
        elif left[name] != right[name]:
            lines.append(f"{label}: differs: {name}")
            lines += difflib.unified_diff(
                left[name].decode(errors="replace").splitlines(),
                right[name].decode(errors="replace").splitlines(),
                f"A/{name}",
                f"B/{name}",
                lineterm="",
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev_a")
    parser.add_argument("rev_b")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="render-compare-") as temp:
        where = Path(temp)
        try:
            (source_a, commit_a), (source_b, commit_b) = (
                clone(args.rev_a, where),
                clone(args.rev_b, where),
            )
            sets = answer_sets(commit_b)
        except subprocess.CalledProcessError as error:
            print(f"render_compare: error: {error.stderr.strip()}", file=sys.stderr)
            return 2
        print(f"A = {commit_a[:12]}  B = {commit_b[:12]}  ({len(sets)} answer sets)")
        differences = []
        for name, answers in sets.items():
            try:
                a = render(source_a, commit_a, answers, where / "out" / "a" / name)
                b = render(source_b, commit_b, answers, where / "out" / "b" / name)
            except Exception as error:  # Copier raises many kinds; any of them ends the run
                print(f"render_compare: error: {name}: {error}", file=sys.stderr)
                return 2
            found = compare(a, b, name)
            count = len(files(b))
            print(f"{name}: {'identical' if not found else 'DIFFERENT'} ({count} files)")
            differences += found
        print("\n".join(differences) if differences else "no differences")
        return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
