"""Build the suite's slow, cached fixtures once, before pytest starts: `python -m harness.warm`.

Every fixture here is cached and guarded by a lock, so the tests would build it anyway; built
here, no pytest worker sits idle on a lock while the other builds, and the arm64 root
filesystem (debootstrap, mostly downloads) overlaps the CPU-bound channel. Each step prints
its time, so a slow one shows.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from harness import conda_channel, docker
from harness.images import base_images


def timed(name: str, step: Callable[[], object]) -> str:
    started = time.monotonic()
    step()
    return f"warm: {name} in {time.monotonic() - started:.0f} s"


def steps() -> dict[str, Callable[[], object]]:
    """What to build: the channel always; stand-ins where the engine (and arm64) answers."""
    chosen: dict[str, Callable[[], object]] = {"conda channel": conda_channel.build_channel}
    if docker.engine_answers():
        chosen["amd64 stand-ins"] = base_images.ensure
        if docker.arm64_unavailable() is None:
            chosen["arm64 stand-ins"] = lambda: base_images.ensure_platform("linux/arm64")
    return chosen


def main() -> int:
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(timed, name, step) for name, step in steps().items()]
        for future in futures:
            print(future.result(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
