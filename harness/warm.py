"""Build the suite's slow, cached fixtures once, before pytest starts: `python -m harness.warm`.

Every fixture here is cached and guarded by a lock, so the tests would build it anyway; built
here, no pytest worker sits idle on a lock while the other builds, and the root filesystems
(debootstrap, mostly downloads) overlap the CPU-bound channel. Each step prints its time, so a
slow one shows.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from harness import conda_channel, docker
from harness.images import base_images, chroma_image, pgvector_image


def timed(name: str, step: Callable[[], object]) -> str:
    started = time.monotonic()
    step()
    return f"warm: {name} in {time.monotonic() - started:.0f} s"


def steps() -> dict[str, Callable[[], object]]:
    """What to build: the channel always; images where the engine (and arm64) answers."""
    chosen: dict[str, Callable[[], object]] = {"conda channel": conda_channel.build_channel}
    if docker.engine_answers():
        chosen["amd64 stand-ins"] = base_images.ensure
        chosen["pgvector server image"] = pgvector_image.ensure
        chosen["chroma server image"] = chroma_image.ensure
        if docker.arm64_unavailable() is None:
            chosen["arm64 stand-ins"] = lambda: base_images.ensure_platform("linux/arm64")
    return chosen


def main() -> int:
    chosen = steps()
    with ThreadPoolExecutor(max_workers=len(chosen)) as pool:
        futures = [pool.submit(timed, name, step) for name, step in chosen.items()]
        for future in futures:
            print(future.result(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
