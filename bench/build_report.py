"""The build benchmark's report: Markdown tables, each build's slowest steps, the verdicts and
the closing `BENCH {json}` line."""

from __future__ import annotations

import json
import os
import platform
import re
from datetime import datetime, timezone
from pathlib import Path

import yaml

from bench.build_figures import (
    LINK_MBIT,
    VARIANTS,
    ratios_table,
    results_table,
    verdicts,
    with_derived,
)
from bench.build_log import Step, slowest
from bench.build_measure import STARTS, image_bytes
from bench.build_variants import PYTHON_STANDIN
from bench.text import human_bytes, seconds_text, verdict_word
from harness.render import CATALOGUE

ROOT = Path(__file__).resolve().parents[1]
# Published sizes of the real bases; none was found in the stored docs and pages searched
# (Docker Hub tag pages for python and mambaorg/micromamba, micromamba-docker's docs).
PUBLISHED_BASES = {
    "python:3.11-slim": None,
    CATALOGUE["images"]["micromamba"]: None,
}
CONDA_PYTHON = {"python", "openssl", "sqlite", "tk", "ncurses", "readline", "libffi", "libzlib"}


def recorded_sizes(facts: object, names: set[str]) -> dict[str, int]:
    """Sizes a facts file records for the named packages: every mapping with a name and a size.

    facts/conda-forge.yml records recipes (versions, builds, depends), read from feedstocks; a
    package's size is only known from a channel's repodata, so it is usually empty.
    """
    found: dict[str, int] = {}
    if isinstance(facts, dict):
        name, size = facts.get("name"), facts.get("size")
        if name in names and isinstance(size, int):
            found[name] = found.get(name, 0) + size
        for value in facts.values():
            for key, count in recorded_sizes(value, names).items():
                found[key] = found.get(key, 0) + count
    elif isinstance(facts, list):
        for value in facts:
            for key, count in recorded_sizes(value, names).items():
                found[key] = found.get(key, 0) + count
    return found


def step_label(name: str, width: int = 80) -> str:
    """A step as one short line: mount flags dropped, the middle elided when still too long."""
    text = " ".join(re.sub(r"--mount=\S+", "", name).split())
    if len(text) > width:
        text = f"{text[: width // 2]} ... {text[-(width // 2 - 5) :]}"
    return text.replace("|", "/")


def steps_table(steps: list[Step]) -> str:
    lines = ["| step | seconds |", "|---|--:|"]
    lines += [f"| `{step_label(step.name)}` | {step.seconds:.1f} |" for step in steps]
    return "\n".join(lines)


def conda_python_note() -> str:
    """What the conda layer's real Python would add, if facts/conda-forge.yml records sizes."""
    facts = yaml.safe_load((ROOT / "facts" / "conda-forge.yml").read_text(encoding="utf-8"))
    sizes = recorded_sizes(facts, CONDA_PYTHON)
    if sizes:
        return (
            f"conda-forge's Python and its libraries ({', '.join(sorted(sizes))}) as recorded in "
            f"facts/conda-forge.yml: {human_bytes(sum(sizes.values()))} of packages"
        )
    return (
        "not estimated: facts/conda-forge.yml records recipes (versions, builds, depends) read "
        "from the feedstocks, and no package sizes; sizes live in a channel's repodata, and no "
        "conda channel is reachable here"
    )


def run_line(
    today: str, link: str, rate: float, throttled: bool, rebuilds: int, load_start: float
) -> str:
    """The run's conditions: machine, load, how each figure was taken."""
    how = (
        "measured through the proxy throttled to"
        if throttled
        else "computed: measured time - time bytes were flowing + bytes at"
    )
    return (
        f"Run of {today}: {platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{load_start:.1f} at the start and {os.getloadavg()[0]:.1f} at the end; "
        "cold builds from an empty build cache; rebuild = median of "
        f"{rebuilds}; `docker run` = median of {STARTS}; at {link}: {how} "
        f"{rate / 1e6:.1f} MB/s.\n"
    )


def print_bases(results: dict) -> None:
    """Each stand-in base, the variants on it, its size here and the real one's published size."""
    print("\nBases (sizes from `docker image inspect`):\n")
    print("| base | used by | stand-in here | real, published |\n|---|---|--:|---|")
    bases: dict[str, list[str]] = {}
    for key, heading in VARIANTS:
        if key in results:
            bases.setdefault(results[key]["base"], []).append(heading)
    for base, users in bases.items():
        real = {PYTHON_STANDIN: "python:3.11-slim"}.get(base, CATALOGUE["images"]["micromamba"])
        published = PUBLISHED_BASES.get(real)
        print(
            f"| {real} (stand-in `{base}`) | {', '.join(users)} | "
            f"{human_bytes(image_bytes(base))} | "
            f"{published or 'not found in the stored docs and pages'} |"
        )
    print(
        "\nMissing above the micromamba stand-in: its Python is Debian's, in a venv, and the "
        "stand-in channel's `python` package is empty, so the generated images' conda layer "
        "lacks the real conda-forge Python (openssl, sqlite, tk, ...) that a real build adds "
        f"above mambaorg/micromamba. Its size: {conda_python_note()}."
    )


def download_line(heading: str, result: dict) -> str:
    """What a variant downloaded, from which hosts, at what rate, and what the proxy refused."""
    rate_seen = (
        result["bytes_down"] / result["download_busy_seconds"]
        if result["download_busy_seconds"]
        else 0
    )
    hosts = ", ".join(
        f"{host} {human_bytes(count)}" for host, count in sorted(result["bytes_by_host"].items())
    )
    return (
        f"\n{heading}: downloaded {human_bytes(result['bytes_down'])} in "
        f"{result['download_busy_seconds']:.0f} s of transfer "
        f"({rate_seen / 1e6:.0f} MB/s): {hosts}; sent {human_bytes(result['bytes_up'])}"
        + (f"; refused {result['refused']}" if result["refused"] else "")
    )


def print_build_details(heading: str, result: dict) -> None:
    """A built variant's slowest steps, and any warning about how it was measured."""
    print(f"\nslowest steps of the {heading} cold build\n")
    print(steps_table(slowest([Step(**step) for step in result["steps"]])))
    print(f"\nslowest steps of the {heading} source-only rebuild (the last one)\n")
    print(steps_table(slowest([Step(**step) for step in result["rebuild_steps"]], 3)))
    if result["proxy_in_history"]:
        print(f"\nWARNING: the proxy's address is in the {heading} image's history")
    if result["warm_installs"]:
        print(f"\nWARNING: this cold build was not cold: {result['warm_installs']}")
    if result["uv_phases"]:
        print("\ninside its uv steps: " + "; ".join(result["uv_phases"]))


def print_variants(results: dict) -> None:
    for key, heading in VARIANTS:
        result = results.get(key)
        if not result:
            continue
        print(download_line(heading, result))
        if key == "floor":
            print(
                f"floor: {human_bytes(result['installed_bytes'])} installed; install from a "
                f"warm uv cache {seconds_text(result['warm_install_seconds'])}"
            )
            continue
        print_build_details(heading, result)


def report(
    results: dict, after: dict, rate: float, throttled: bool, rebuilds: int, load_start: float
) -> None:
    results = {key: with_derived(result) for key, result in results.items()}
    link = f"{LINK_MBIT} Mbit/s"
    today = datetime.now(timezone.utc).strftime("%d %B %Y, %H:%M UTC")
    print(run_line(today, link, rate, throttled, rebuilds, load_start))
    verdict = "refused by `uv lock`" if not after["locked"] else "LOCKED (unexpected)"
    print(f'The seed guide\'s "after", as written: {verdict}: {after["message"]}\n')
    print(results_table(results, link))
    print("\nEach built variant against the uv guide and the floor:\n")
    print(ratios_table(results, link))
    print_bases(results)
    print_variants(results)
    print("\n```text")
    for met, line in verdicts(results, link):
        print(f"{verdict_word(met):<12}  {line}")
    print("```")
    print(
        "BENCH "
        + json.dumps(
            {"date": today, "load_start": load_start, "guide_after": after, **results},
            default=str,
        )
    )
