"""The serving benchmark's pure parts: its corpus, its statistics, its table and its verdicts."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterator, Sequence

from bench.text import human_bytes, verdict_word

INGEST_TARGET = 4.0  # the service's batched ingest over one text per call, at least
P99_TARGET = 10.0  # p99 under load over one unloaded query, at most

# Words for synthetic documents: sentences of ordinary prose, so the tokenizer sees real words.
SUBJECTS = (
    "the river", "a small cat", "the old library", "our team", "the weather station",
    "a young engineer", "the city council", "the orchestra", "a hungry fox", "the bakery",
    "the research group", "a delivery drone", "the mountain village", "the museum", "a farmer",
    "the school choir", "a night train", "the garden", "the harbour", "a software compiler",
)  # fmt: skip
VERBS = (
    "measures", "watches", "repairs", "describes", "follows", "collects", "builds", "paints",
    "studies", "protects", "explains", "carries", "celebrates", "questions", "welcomes",
)  # fmt: skip
OBJECTS = (
    "the morning light", "fresh bread", "the spring flood", "a quiet melody", "ancient maps",
    "the winter harvest", "a broken bridge", "the election results", "migrating birds",
    "a wooden boat", "the budget report", "distant stars", "the new vaccine", "lost letters",
    "the football match", "a recipe for soup", "the railway timetable", "solar panels",
)  # fmt: skip
PLACES = (
    "near the coast", "after the storm", "in the valley", "during the festival", "at dawn",
    "before the exam", "under the bridge", "across the border", "in the laboratory",
    "on the hill", "beside the lake", "in the old town", "at the market", "through the forest",
)  # fmt: skip


def sentence(rng: random.Random) -> str:
    return (
        f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} {rng.choice(OBJECTS)} "
        f"{rng.choice(PLACES)}."
    )


def synthetic_texts(count: int, sentences: int = 4, seed: int = 17) -> list[str]:
    """`count` documents of `sentences` random sentences each, the same on every run."""
    rng = random.Random(seed)
    return [" ".join(sentence(rng) for _ in range(sentences)) for _ in range(count)]


def queries(count: int, seed: int = 71) -> list[str]:
    """Short questions over the same words, the same on every run."""
    rng = random.Random(seed)
    return [
        f"who {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(PLACES)}?" for _ in range(count)
    ]


def batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile: the smallest value with at least `share` of them at or below."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def status_kib(status: str, field: str) -> int | None:
    """A `kB` field of /proc/<pid>/status (VmHWM: peak resident set), in bytes."""
    match = re.search(rf"^{field}:\s+(\d+) kB$", status, re.M)
    return int(match.group(1)) * 1024 if match else None


def memory_stat(text: str, key: str) -> int | None:
    """One counter of a cgroup's memory.stat ("anon" under v2, "total_rss" under v1)."""
    match = re.search(rf"^{key} (\d+)$", text, re.M)
    return int(match.group(1)) if match else None


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f} ms"


def per_second(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} /s"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def table(figures: dict) -> str:
    """Markdown: one row per figure; "-" where it was not measured."""

    def size(key: str) -> str:
        value = figures.get(key)
        return "-" if value is None else human_bytes(value)

    def x(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}x"

    ingest = figures.get("ingest", {})
    load = figures.get("load", {})
    rows = [
        ("ingest: one text per `encode` call, in the image", per_second(ingest.get("naive_rate"))),
        ("ingest: one document per POST /documents", per_second(ingest.get("single_post_rate"))),
        (
            "ingest: 64 texts per `encode` call, in the image (the model alone)",
            per_second(ingest.get("model_batched_rate")),
        ),
        ("ingest: POST /documents, 64 per request", per_second(ingest.get("batched_rate"))),
        (
            "batched service / one text per call",
            x(ratio(ingest.get("batched_rate"), ingest.get("naive_rate"))),
        ),
        ("documents stored for the load", f"{figures.get('documents', 0):,}"),
        ("one query, unloaded (median)", ms(load.get("unloaded"))),
        (
            f"under load: p50 ({load.get('clients', '-')} clients, "
            f"{load.get('requests', '-')} requests)",
            ms(load.get("p50")),
        ),
        ("under load: p99", ms(load.get("p99"))),
        ("p99 under load / unloaded", x(ratio(load.get("p99"), load.get("unloaded")))),
        ("under load: errors", str(load.get("errors", "-"))),
        ("under load: throughput", per_second(load.get("throughput"))),
        ("serving process: peak RSS (VmHWM)", size("peak_rss")),
        ("container: peak anonymous memory, sampled", size("peak_anon")),
        ("the model on disk", size("model_bytes")),
        ("cold start: `docker run` to /readyz 200 (median)", ms(figures.get("cold_start"))),
    ]
    lines = ["| | |", "|---|--:|"]
    lines += [f"| {label} | {value} |" for label, value in rows]
    return "\n".join(lines)


def verdicts(figures: dict) -> list[tuple[bool | None, str]]:
    """(met, line) per target; None: not measured."""
    ingest, load = figures.get("ingest", {}), figures.get("load", {})
    lines: list[tuple[bool | None, str]] = []
    gain = ratio(ingest.get("batched_rate"), ingest.get("naive_rate"))
    lines.append(
        (
            None if gain is None else gain >= INGEST_TARGET,
            f"batched ingest >= {INGEST_TARGET:g}x one text per call  "
            f"({'not measured' if gain is None else f'{gain:.1f}x'})",
        )
    )
    spread = ratio(load.get("p99"), load.get("unloaded"))
    lines.append(
        (
            None if spread is None else spread <= P99_TARGET,
            f"p99 under load <= {P99_TARGET:g}x one unloaded query  "
            f"({'not measured' if spread is None else f'{spread:.1f}x'}: "
            f"{ms(load.get('p99'))} against {ms(load.get('unloaded'))})",
        )
    )
    errors = load.get("errors")
    lines.append(
        (
            None if errors is None else errors == 0,
            f"no errors under load  ({'not measured' if errors is None else errors})",
        )
    )
    return lines


def verdict_lines(figures: dict) -> str:
    return "\n".join(f"{verdict_word(met):<12}  {line}" for met, line in verdicts(figures))
