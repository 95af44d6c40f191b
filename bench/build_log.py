"""What a BuildKit `--progress=plain` log tells: its steps and their times, and what uv did."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass
class Step:
    name: str
    seconds: float | None = None  # None: cached, or never finished
    cached: bool = False


def parse_steps(plain_log: str) -> list[Step]:
    """Per-step timings from BuildKit's `--progress=plain` output, in the order steps start."""
    steps: dict[str, Step] = {}
    for line in plain_log.splitlines():
        match = re.match(r"#(\d+) (.*)", line)
        if not match:
            continue
        vertex, rest = match.groups()
        if done := re.fullmatch(r"DONE (\d+(?:\.\d+)?)s", rest):
            if vertex in steps:
                steps[vertex].seconds = float(done.group(1))
        elif rest == "CACHED":
            if vertex in steps:
                steps[vertex].cached = True
        elif vertex not in steps and not re.match(r"\d+(\.\d+)? |sha256:|ERROR|CANCELED", rest):
            steps[vertex] = Step(rest)
    return list(steps.values())


def warm_installs(plain_log: str) -> list[str]:
    """uv steps that installed packages they did not download: their cache was not empty.

    uv prints "Prepared N packages" for what it fetched and "Installed M packages" for what it
    put in place; in a cold build the two agree.
    """
    counts: dict[str, dict[str, int]] = {}
    for vertex, word, count in re.findall(
        r"^#(\d+) [\d.]+ (Prepared|Installed) (\d+) packages? in", plain_log, re.M
    ):
        counts.setdefault(vertex, {})[word] = int(count)
    return [
        f"#{vertex}: prepared {seen.get('Prepared', 0)}, installed {seen['Installed']}"
        for vertex, seen in counts.items()
        if seen.get("Installed", 0) > seen.get("Prepared", 0)
    ]


def uv_phases(plain_log: str) -> list[str]:
    """What uv reports doing inside each step: fetching, installing, byte-compiling."""
    return [
        f"#{vertex} {what}"
        for vertex, what in re.findall(
            r"^#(\d+) [\d.]+ ((?:Prepared|Installed|Bytecode compiled) \d+ \w+ in \S+)$",
            plain_log,
            re.M,
        )
    ]


def slowest(steps: list[Step], count: int = 5) -> list[Step]:
    timed = [step for step in steps if step.seconds is not None and not step.cached]
    return sorted(timed, key=lambda step: step.seconds or 0.0, reverse=True)[:count]  # never None
