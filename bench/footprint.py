"""Prove the footprint: what a generated project's lock downloads, and what rendering costs.

Run on demand from the repository root (needs PyPI; the CPU index is the local test mirror):

    uv run python -m bench.footprint [--runs 5]

Prints Markdown tables, PASS/FAIL per goal, and ends with one line `BENCH {json}`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.metadata
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from packaging.requirements import Requirement

from harness.locks import load_lock_report, uv_lock
from harness.mirror import build_mirror, real_torch_wheel
from harness.render import render as harness_render

ROOT = Path(__file__).resolve().parents[1]
UV = os.environ.get("UV") or shutil.which("uv") or "uv"  # the uv the hook would use
PLATFORM = "linux/amd64"
AMD64 = "sys_platform == 'linux' and platform_machine == 'x86_64'"
LOCAL = {"project_name": "Footprint Bench", "python_version": "3.11", "lock_platforms": [PLATFORM]}
SCENARIOS = {
    "guide's stack": {
        "ml_libraries": ["torch", "sentence-transformers"],
        "vector_store": "chromadb",
        "torch_installer": "uv",
    },
    "template defaults": {},
    "all libraries": {
        "ml_libraries": [
            "torch",
            "torchvision",
            "torchaudio",
            "sentence-transformers",
            "transformers",
            "scikit-learn",
        ],
        "vector_store": "qdrant",
        "torch_installer": "uv",
    },
}
TIMED_SCENARIO = "template defaults"
NAIVE_UV = f'\n[tool.uv]\nenvironments = ["{AMD64}"]\n'
# "Fix 2" of the Docker build-speed guide this template started from: its [tool.uv] snippet,
# verbatim (uv refuses it: the sources name an index it never declares).
GUIDE_UV = """
[tool.uv]
# Configure UV to prefer CPU-only packages for containers
index-strategy = "unsafe-best-match"
extra-index-url = [
    "https://download.pytorch.org/whl/cpu"  # PyTorch CPU-only index
]

[tool.uv.sources]
# Force CPU-only PyTorch packages when available
torch = { index = "pytorch-cpu" }
torchvision = { index = "pytorch-cpu" }
torchaudio = { index = "pytorch-cpu" }
"""


@contextlib.contextmanager
def output_to(log: Path):
    """Send fds 1 and 2 to `log`: the hook's subprocesses write there, not through sys.stdout."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log, "ab") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)


def render(src: Path, dst: Path, data: dict | None = None, tasks: bool = False) -> Path:
    """`copier copy` as the tests render; output goes to dst's sibling log."""
    with warnings.catch_warnings(), output_to(dst.with_name(dst.name + ".log")):
        warnings.simplefilter("ignore")  # DirtyLocalWarning: uncommitted edits are meant
        return harness_render(dst, data or {}, tasks=tasks, src=src)


def uv_message(output: str) -> str:
    """uv's innermost cause: its first line only names the throwaway project."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1].removeprefix("cause: ").removeprefix("error: ") if lines else "(no output)"


def footprint(project: Path) -> dict:
    info = load_lock_report().load_report(project, [PLATFORM])["platforms"][PLATFORM]
    return {
        "packages": info["packages"],
        "gpu": len(info["gpu_packages"]),
        "mb": round(info["download_bytes"] / 1e6, 1),
        "unknown_size": info["unknown_size"],
    }


def dependencies(project: Path) -> list[str]:
    with open(project / "pyproject.toml", "rb") as handle:
        return load_lock_report().tomllib.load(handle)["project"]["dependencies"]


def throwaway(folder: Path, deps: list[str], tool_uv: str) -> Path:
    """A bare project with `deps`, Python 3.11 only, and the given uv settings."""
    folder.mkdir(parents=True)
    listed = "".join(f'    "{dep}",\n' for dep in deps)
    (folder / "pyproject.toml").write_text(
        f'[project]\nname = "{folder.name}"\nversion = "0"\nrequires-python = "==3.11.*"\n'
        f"dependencies = [\n{listed}]\n{tool_uv}",
        encoding="utf-8",
    )
    return folder


def locked(project: Path) -> dict:
    """Footprint after `uv lock`, or uv's message when it refuses."""
    result = uv_lock(project)
    if result.returncode:
        return {"error": uv_message(result.stdout + result.stderr)}
    return footprint(project)


def generated(project: Path) -> dict:
    """Footprint of the lock the hook wrote; the hook exits 0 on failure, so check the file."""
    if not (project / "uv.lock").exists():
        log = project.with_name(project.name + ".log").read_text(errors="replace")
        return {"error": "hook left no uv.lock: " + uv_message(log)}
    return footprint(project)


def scenario(name: str, answers: dict, work: Path) -> dict:
    project = render(ROOT, work / name.replace(" ", "-"), answers, tasks=True)
    pinned = dependencies(project)
    names = [Requirement(dep).name for dep in pinned]  # as the guide's project lists them
    row: dict = {
        "dependencies": pinned,
        "naive": locked(throwaway(work / f"naive-{project.name}", pinned, NAIVE_UV)),
        "naive_unpinned": locked(throwaway(work / f"unpinned-{project.name}", names, NAIVE_UV)),
        "guide": locked(throwaway(work / f"guide-{project.name}", pinned, GUIDE_UV)),
        "generated": generated(project),
    }
    for naive in ("naive", "naive_unpinned"):
        mbs = row[naive].get("mb"), row["generated"].get("mb")
        row[f"ratio_{naive}"] = round(mbs[0] / mbs[1], 2) if all(mbs) else None
    return row


def one_file_template(folder: Path) -> Path:
    """The baseline: a git repository holding a single file and nothing else."""
    folder.mkdir(parents=True)
    (folder / "hello.txt").write_text("hello\n", encoding="utf-8")
    git = ["git", "-C", str(folder), "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "one file"]):
        subprocess.run(git + args, check=True, capture_output=True)
    return folder


def relock(project: Path) -> None:
    """uv's own lock time, from no uv.lock, as the hook runs it."""
    (project / "uv.lock").unlink(missing_ok=True)
    if uv_lock(project).returncode:
        raise RuntimeError(f"uv lock failed in {project}")


def seconds(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def measure_times(answers: dict, runs: int, work: Path) -> dict:
    """Median seconds per step; steps alternate within a round so load drift hits all alike."""
    base = one_file_template(work / "one-file")
    lock_only = render(ROOT, work / "lock-only", answers)
    samples: dict[str, list[float]] = {
        "baseline": [],
        "render": [],
        "render_lock": [],
        "uv_lock": [],
    }
    for run in range(runs + 1):  # round 0 warms uv's cache and Python's imports; dropped
        steps = {
            "baseline": functools.partial(render, base, work / f"baseline-{run}"),
            "render": functools.partial(render, ROOT, work / f"render-{run}", answers),
            "render_lock": functools.partial(
                render, ROOT, work / f"render-lock-{run}", answers, tasks=True
            ),
            "uv_lock": functools.partial(relock, lock_only),
        }
        for step, action in steps.items():
            elapsed = seconds(action)
            if run:
                samples[step].append(elapsed)
    return {step: round(statistics.median(values), 3) for step, values in samples.items()}


def judge(rows: dict, times: dict) -> list[dict]:
    guide = rows["guide's stack"]
    gpu = {name: row["generated"].get("gpu") for name, row in rows.items()}
    render_ratio = times["render"] / times["baseline"]
    added = times["render_lock"] - times["render"]
    goals = [
        {
            "goal": f"naive/generated MB >= 8x on the guide's stack ({label})",
            "pass": (guide[key] or 0) >= 8,
            "value": f"{guide[key] or 0:.2f}x",
        }
        for key, label in (("ratio_naive", "same pins"), ("ratio_naive_unpinned", "unpinned"))
    ]
    return goals + [
        {
            "goal": "zero GPU packages in every generated lock",
            "pass": all(count == 0 for count in gpu.values()),
            "value": str(gpu),
        },
        {
            "goal": "render alone <= 1.5x the baseline copy",
            "pass": render_ratio <= 1.5,
            "value": f"{render_ratio:.2f}x",
        },
        {
            "goal": "render + lock - render <= uv lock + 1 s",
            "pass": added <= times["uv_lock"] + 1,
            "value": f"{added:.2f} s <= {times['uv_lock'] + 1:.2f} s",
        },
    ]


def cell(result: dict) -> str:
    if "error" in result:
        return f"error: {result['error']}"
    unknown = "+" if result["unknown_size"] else ""  # some wheel had no size: a lower bound
    return f"{result['packages']} pkgs, {result['gpu']} GPU, {result['mb']:,.0f}{unknown} MB"


def ratio(value: float | None) -> str:
    return f"{value:.1f}x" if value else "-"


def footprint_table(rows: dict) -> list[str]:
    lines = [
        "| scenario | naive, same pins | naive, unpinned | guide's snippet | generated "
        "| naive/generated (pinned, unpinned) |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        guide = f"refused: {row['guide']['error']}" if "error" in row["guide"] else "accepted (!)"
        ratios = f"{ratio(row['ratio_naive'])}, {ratio(row['ratio_naive_unpinned'])}"
        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    cell(row["naive"]),
                    cell(row["naive_unpinned"]),
                    guide,
                    cell(row["generated"]),
                    ratios,
                ]
            )
            + " |"
        )
    return lines


def time_table(times: dict, runs: int) -> list[str]:
    labels = {
        "baseline": "`copier copy` of a one-file template (baseline)",
        "render": "render alone (skip_tasks=True)",
        "render_lock": "render + lock (tasks on)",
        "uv_lock": "`uv lock` alone, on the rendered project",
    }
    lines = [f"| step (median of {runs}, warm uv cache) | seconds | x baseline |", "|---|--:|--:|"]
    for step, label in labels.items():
        lines.append(f"| {label} | {times[step]:.2f} | {times[step] / times['baseline']:.2f} |")
    return lines


def versions() -> dict:
    uv = subprocess.run([UV, "--version"], capture_output=True, text=True, check=False)
    torch = real_torch_wheel()
    return {
        "copier": importlib.metadata.version("copier"),
        "uv": uv.stdout.split()[1],
        "python": sys.version.split()[0],
        "load_average": round(os.getloadavg()[0], 1),
        "mirror_torch": f"real {torch.name}" if torch else "synthetic",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per step (default 5)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="footprint-") as temp:
        work = Path(temp)
        index = {"torch_index_url": build_mirror(work / "mirror")}
        answers = {name: {**LOCAL, **index, **extra} for name, extra in SCENARIOS.items()}
        rows = {name: scenario(name, answers[name], work) for name in SCENARIOS}
        times = measure_times(answers[TIMED_SCENARIO], args.runs, work)
    goals = judge(rows, times)
    info = versions()
    print(
        f"Footprint, Python 3.11, {PLATFORM}; copier {info['copier']}, uv {info['uv']}; "
        f"CPU index: local mirror ({info['mirror_torch']}; torchvision/torchaudio synthetic); "
        f"load average {info['load_average']}"
    )
    print("\n".join(footprint_table(rows)), end="\n\n")
    print(f"Time, scenario '{TIMED_SCENARIO}'")
    print("\n".join(time_table(times, args.runs)), end="\n\n")
    for goal in goals:
        print(f"{'PASS' if goal['pass'] else 'FAIL'}  {goal['goal']}  ({goal['value']})")
    result = {
        "versions": info,
        "runs": args.runs,
        "scenarios": rows,
        "times": times,
        "goals": goals,
    }
    print("BENCH " + json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
