"""The serving benchmark's picture: latency against throughput, the service and its peers (PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a file, no display
import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)

from bench.serve_report import label  # noqa: E402

COLOURS = {
    "service": "tab:blue",
    "queries": "tab:cyan",
    "naive": "tab:red",
    "infinity": "tab:green",
}


def points(profile: dict) -> list[tuple[float, float, float]]:
    """(answered per second, p50, p99) of every load, open loop and closed, by throughput."""
    loads = [*profile["open"].values(), *profile["closed"].values()]
    found = [
        (load["throughput"], load["p50"] * 1000, load["p99"] * 1000)
        for load in loads
        if load["p50"] is not None
    ]
    return sorted(found)


def plot(figures: dict, path: Path, title: str) -> Path:
    """p50 (dashed) and p99 (solid) against answers per second; the limits as dotted lines."""
    figure, axes = plt.subplots(figsize=(8, 5), dpi=120)
    for name, profile in figures.get("profiles", {}).items():
        found = points(profile)
        if not found:
            continue
        rates, p50, p99 = zip(*found, strict=True)
        colour = COLOURS.get(name, "tab:gray")
        axes.plot(rates, p99, "o-", color=colour, label=f"{label(figures, name)}: p99")
        axes.plot(rates, p50, ".--", color=colour, alpha=0.6, label=f"{label(figures, name)}: p50")
    limit = figures.get("limit", {})
    for key, colour, what in (
        ("texts_rate", "tab:blue", "in-process limit, texts"),
        ("queries_rate", "tab:cyan", "in-process limit, queries"),
    ):
        if limit.get(key):
            axes.axvline(limit[key], color=colour, linestyle=":", label=what)
    axes.set_yscale("log")
    axes.set_xlabel("answered requests per second (one text each)")
    axes.set_ylabel("latency, ms (log scale)")
    axes.set_title(title, fontsize=9)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
