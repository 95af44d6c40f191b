"""Benchmark the image build: the seed's "before", uv's guide, the generated defaults, the floor.

Run on demand from the repository root, with a Docker engine (`bash .ci/docker-engine start`):

    uv run python -m bench.build [--rebuilds 3] [--throttle]

One run, one engine, one loopback proxy that counts the bytes each build downloads (PyPI
through CONNECT; the local CPU index and conda channel over loopback http). Variants:
- "before": the seed guide's single-stage `pip install` on a python image;
- the seed guide's "after", as written: its `[tool.uv]` snippet is locked in a throwaway project
  (no image): uv refuses it, and its message is recorded;
- uv guide: a Dockerfile written from uv's Docker and PyTorch guides (multi-stage, the python
  base, an explicit CPU index, `uv sync --locked` with cache mounts, `--no-dev`, a non-root user);
- the generated defaults, with torch from conda (`torch_installer=conda`) and from uv (`=uv`);
- the floor: the python base plus the installed bytes of the uv guide's locked set, no image;
  its time is those wheels' bytes at the link rate plus a measured install from a warm uv cache.
Each cold build starts with an empty build cache (`docker builder prune -af`, which also empties
the cache mounts) and no image of its own. Base images are local stand-ins, built before any
timing, so sizes are compared above each variant's base. Prints Markdown tables, met/missed per
target, each build's slowest steps, and ends with one line `BENCH {json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from bench import counting_proxy
from bench.build_figures import LINK_MBIT, VARIANTS
from bench.build_floor import measure_floor
from bench.build_measure import BUILT, LOGS, Side, measure
from bench.build_report import report
from bench.build_variants import (
    BEFORE_TAG,
    GENERATED_TAGS,
    UV_GUIDE_TAG,
    before_side,
    dependencies,
    generated_side,
    guide_after,
    python_standin,
    uv_guide_side,
)
from harness import conda_channel
from harness import docker as engine
from harness.images import base_images as standins
from harness.index_server import IndexFiles, IndexServer
from harness.mirror import build_mirror

PYPI = {"pypi.org:443", "files.pythonhosted.org:443"}


def require_engine() -> None:
    if not engine.engine_answers():
        sys.exit(f"bench.build needs a Docker engine with buildx: {engine.START_HINT}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rebuilds",
        type=int,
        default=3,
        help="source-only rebuilds per variant; the median is reported",
    )
    parser.add_argument(
        "--throttle",
        action="store_true",
        help=f"measure the cold builds through the proxy throttled to {LINK_MBIT} "
        "Mbit/s, instead of computing that time from the bytes",
    )
    parser.add_argument(
        "--only",
        choices=[key for key, _ in VARIANTS],
        help="measure one variant only (for trying the bench; prints no table)",
    )
    return parser.parse_args()


def prepare_sides(
    work: Path, index_url: str, channel_url: str, channel_dir: Path
) -> tuple[list[Side], dict]:
    """Every built variant, in the order they are measured, and the seed guide's "after"."""
    generated = {
        installer: generated_side(
            work / f"generated-{installer}" / "bench-service",
            installer,
            index_url,
            channel_url,
            channel_dir,
        )
        for installer in ("conda", "uv")
    }
    peer = uv_guide_side(work / "uv-guide", generated["conda"].context, index_url)
    after = guide_after(work / "guide-after", dependencies(generated["conda"].context))
    # The floor first and "before" last: what fails fastest runs first.
    return [peer, generated["uv"], generated["conda"], before_side(work / "before")], after


def measure_all(
    sides: list[Side],
    wanted: set[str],
    work: Path,
    proxy: counting_proxy.CountingProxy,
    args: argparse.Namespace,
    rate: float,
    hosts: dict[str, str],
) -> dict:
    """The figures of each wanted variant; every image built is removed at the end."""
    results = {}
    try:
        if "floor" in wanted:
            results["floor"] = measure_floor(sides[0].context, work, proxy, rate, hosts)
        for side in sides:
            if side.key not in wanted:
                continue
            results[side.key] = measure(side, proxy, args.rebuilds, rate, args.throttle, hosts)
            # Kept as it goes, so a run the engine breaks still leaves its figures.
            LOGS.mkdir(parents=True, exist_ok=True)
            (LOGS / "partial.json").write_text(json.dumps(results, default=str))
    finally:
        engine.remove_images(BEFORE_TAG, UV_GUIDE_TAG, *GENERATED_TAGS.values(), *BUILT)
    return results


def run(args: argparse.Namespace, work: Path, rate: float) -> tuple[dict, dict]:
    """The stand-ins, the loopback index, channel and proxy; then every wanted variant measured."""
    wanted = {args.only} if args.only else {key for key, _ in VARIANTS}
    print(
        "preparing stand-in base images, the CPU index and the conda channel ...",
        file=sys.stderr,
        flush=True,
    )
    standins.ensure()
    python_standin()
    mirror = Path(url2pathname(urlparse(build_mirror(work / "mirror")).path))
    channel_dir = conda_channel.build_channel()
    with (
        IndexServer(IndexFiles.from_mirror(mirror)) as index,
        conda_channel.ChannelServer(channel_dir) as channel,
        counting_proxy.CountingProxy(PYPI, rate=rate if args.throttle else None) as proxy,
    ):
        sides, after = prepare_sides(work, index.url, channel.url, channel_dir)
        hosts = {
            urlparse(index.url).netloc: "CPU index (loopback)",
            urlparse(channel.url).netloc: "conda channel (loopback)",
        }
        return measure_all(sides, wanted, work, proxy, args, rate, hosts), after


def main() -> None:
    args = parse_args()
    require_engine()
    load_start = os.getloadavg()[0]
    rate = LINK_MBIT * 1e6 / 8
    with tempfile.TemporaryDirectory(prefix="mlct-build-bench-") as tmp:
        results, after = run(args, Path(tmp), rate)
    if args.only:
        print(json.dumps({"guide_after": after, **results}, indent=1, default=str))
        return
    report(results, after, rate, args.throttle, args.rebuilds, load_start)


if __name__ == "__main__":
    main()
