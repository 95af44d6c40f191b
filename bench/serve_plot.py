"""The serving benchmark's picture: latency against load, the service and its peers (PNG).

Left, the embeddings endpoints (the service's, the naive tutorial service's, infinity-emb's) with
the in-process texts limit; right, the service's /query with the embed-and-search limit. Lines
are the open loop (p99 solid, p50 dashed, against the offered rate); a cross marks each server's
saturation in the closed loop, at that load's p99. Redraw from a run's printed output with
`python -m bench.serve_plot OUTPUT PNG` (OUTPUT holds the `BENCH {json}` line).
"""

from __future__ import annotations

import json
import sys
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
LIMITS = {"embeddings": "texts_rate", "queries": "queries_rate"}


def points(profile: dict) -> list[tuple[float, float, float]]:
    """(offered requests per second, p50 ms, p99 ms) of each open-loop load, by rate."""
    found = [
        (load["rate"], load["p50"] * 1000, load["p99"] * 1000)
        for load in profile["open"].values()
        if load["p50"] is not None
    ]
    return sorted(found)


def saturating(profile: dict) -> tuple[float, float] | None:
    """The closed loop's most answers per second, and that load's p99 in ms."""
    loads = [load for load in profile["closed"].values() if load["p99"] is not None]
    if not loads:
        return None
    best = max(loads, key=lambda load: load["throughput"])
    return best["throughput"], best["p99"] * 1000


def draw(axes, figures: dict, name: str, profile: dict) -> None:
    colour, name_text = COLOURS.get(name, "tab:gray"), label(figures, name)
    found = points(profile)
    if found:
        rates, p50, p99 = zip(*found, strict=True)
        axes.plot(rates, p99, "o-", color=colour, label=f"{name_text}: p99")
        axes.plot(rates, p50, ".--", color=colour, alpha=0.6, label=f"{name_text}: p50")
    peak = saturating(profile)
    if peak:
        axes.plot(*peak, "x", color=colour, markersize=10, mew=2, label=f"{name_text}: saturation")


def plot(figures: dict, path: Path, title: str) -> Path:
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 5), dpi=110)
    panes = {"embeddings": left, "queries": right}
    for name, profile in figures.get("profiles", {}).items():
        draw(panes["queries" if name == "queries" else "embeddings"], figures, name, profile)
    limit = figures.get("limit", {})
    for pane, axes in panes.items():
        if limit.get(LIMITS[pane]):
            axes.axvline(
                limit[LIMITS[pane]], color="black", linestyle=":", label="in-process limit"
            )
        axes.set_yscale("log")
        axes.set_xlim(left=0)
        axes.set_xlabel(f"{pane}: requests per second, one text each")
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=7, loc="upper left")
    left.set_ylabel("latency, ms (log scale)")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: python -m bench.serve_plot OUTPUT PNG  (OUTPUT: bench.serve's output)")
    lines = Path(sys.argv[1]).read_text(encoding="utf-8").splitlines()
    found = [line for line in lines if line.startswith("BENCH ")]
    if not found:
        sys.exit(f"no `BENCH {{json}}` line in {sys.argv[1]}")
    figures = json.loads(found[-1].removeprefix("BENCH "))
    print(plot(figures, Path(sys.argv[2]), figures.get("title", figures.get("run", ""))))


if __name__ == "__main__":
    main()
