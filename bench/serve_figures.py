"""The serving benchmark's pure parts: its corpus, its statistics, its table and its verdicts."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterator, Sequence

# Issue 25's targets this bench measures (the ONNX backend's are its own bench's).
EMBED_OF_LIMIT = 0.85  # saturation on the embeddings endpoint over the in-process limit, at least
QUERY_OF_LIMIT = 0.7  # saturation on /query over the in-process embed-and-search limit, at least
OVER_NAIVE = 2.0  # throughput over the naive tutorial service at 32 clients, at least
OVER_INFINITY = 1.0  # saturation over infinity-emb's, same backend, at least
P99_AT_HALF = 5.0  # p99 at 50% of saturation, open loop, over the unloaded p50, at most
COLD_START = 6.0  # seconds from `docker run` to ready, model baked in, at most

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
