"""One variant measured: its cold build, its source-only rebuilds, its `docker run` start-up."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.build_figures import at_link
from bench.build_log import Step, parse_steps, uv_phases, warm_installs
from bench.counting_proxy import CountingProxy, Traffic
from harness import docker as engine
from harness.cache import cache_root
from harness.images import base_images as standins

CACHE = cache_root() / "bench"
LOGS = CACHE / "logs"
COLD_ATTEMPTS = 3
BUILT: set[str] = set()  # ids of every image this run built


@dataclass
class Build:
    seconds: float
    steps: list[Step]
    log: str


class BuildFailed(Exception):
    pass


def build(context: Path, tag: str, proxy_url: str) -> Build:
    """Build with the proxy as the predefined proxy build args, which stay out of the history."""
    args = {"HTTPS_PROXY": proxy_url, "HTTP_PROXY": proxy_url, **standins.names().build_args}
    started = time.monotonic()
    result = engine.build(context, tag, build_args=args)
    seconds = time.monotonic() - started
    if result.returncode:
        raise BuildFailed(
            f"the build of {tag} failed:\n" + "\n".join(result.log.splitlines()[-40:])
        )
    BUILT.add(image_id(tag))  # a rebuild leaves the previous image untagged: remove it too
    return Build(seconds, parse_steps(result.log), result.log)


def image_id(tag: str) -> str:
    return subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def empty_caches(tag: str) -> None:
    """No build cache, no cache-mount contents, no image of our own: a cold start."""
    engine.remove_images(tag)
    subprocess.run(
        ["docker", "builder", "prune", "--all", "--force"], check=True, capture_output=True
    )


def image_bytes(tag: str) -> int:
    return int(
        subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Size}}", tag],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )


def history_mentions(tag: str, text: str) -> bool:
    """Whether any layer's history (its command and comment) contains `text`."""
    history = subprocess.run(
        ["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}} {{.Comment}}", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return text in history


def source_edit(path: Path, count: int) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"# source-only edit {count}\n")


@dataclass
class Side:
    key: str  # as in VARIANTS
    label: str
    tag: str
    context: Path
    source: Path  # the file a source-only edit touches
    base: str  # the image its final stage starts FROM
    doctor: tuple[str, ...] = ()  # the command that runs its doctor, when it has one
    channel_host: str = ""  # the conda channel's host:port, when the build uses one
    conda_bytes: int = 0  # what a cold conda step downloads from it


IMPORTS = ("python", "-c", "import torch, sentence_transformers, chromadb")
STARTS = 3  # `docker run`s per command; the median is reported


def startup_seconds(tag: str, command: tuple[str, ...]) -> float | None:
    """Median wall time from `docker run` to the command's exit 0; None when it fails."""
    times = []
    for _ in range(STARTS):
        started = time.monotonic()
        result = engine.run(tag, *command)
        if result.returncode:
            print(
                f"{tag}: {' '.join(command)} failed:\n{(result.stdout + result.stderr)[-2000:]}",
                file=sys.stderr,
                flush=True,
            )
            return None
        times.append(time.monotonic() - started)
    return statistics.median(times)


def say(text: str) -> None:
    """Progress, on stderr: stdout carries only the report."""
    print(text, file=sys.stderr, flush=True)


def cold_build(side: Side, proxy: CountingProxy) -> tuple[Build, Traffic, list[str]]:
    """The cold build, its traffic, and any sign that it was not cold after all."""
    for attempt in range(1, COLD_ATTEMPTS + 1):
        empty_caches(side.tag)
        proxy.reset()
        try:
            cold = build(side.context, side.tag, proxy.url)
        except BuildFailed as failure:
            # Cache mounts are shared with other builds on the engine, which can race ours.
            if attempt == COLD_ATTEMPTS:
                sys.exit(str(failure))
            say(f"{failure}\n{side.label}: retrying, attempt {attempt + 1} of {COLD_ATTEMPTS}")
            continue
        traffic = proxy.reset()
        LOGS.mkdir(parents=True, exist_ok=True)
        (LOGS / f"{side.key}-cold.log").write_text(cold.log)
        warm = warm_installs(cold.log)
        from_channel = traffic.down.get(side.channel_host, 0)
        if from_channel < side.conda_bytes:
            warm.append(f"conda: fetched {from_channel:,} of the lock's {side.conda_bytes:,} bytes")
        if not warm:
            break
        then = "keeping it, marked" if attempt == COLD_ATTEMPTS else "retrying"
        say(f"{side.label}: not cold (another build refilled a cache mount): {warm}; {then}")
    return cold, traffic, warm


def source_rebuilds(
    side: Side, proxy: CountingProxy, rebuilds: int
) -> tuple[list[float], list[Step]]:
    """The time of each source-only rebuild, and the steps of the last one."""
    rebuild_times, rebuild_steps = [], []
    for count in range(1, rebuilds + 1):
        source_edit(side.source, count)
        try:
            rebuilt = build(side.context, side.tag, proxy.url)
        except BuildFailed as failure:  # the engine dropped the build: once more, then give up
            say(f"{failure}\n{side.label}: rebuilding again")
            try:
                rebuilt = build(side.context, side.tag, proxy.url)
            except BuildFailed as again:
                sys.exit(str(again))
        rebuild_times.append(rebuilt.seconds)
        rebuild_steps = rebuilt.steps
    return rebuild_times, rebuild_steps


def measure(
    side: Side,
    proxy: CountingProxy,
    rebuilds: int,
    rate: float,
    throttled: bool,
    hosts: dict[str, str],
) -> dict:
    say(f"{side.label}: cold build ...")
    cold, traffic, warm = cold_build(side, proxy)
    rebuild_times, rebuild_steps = source_rebuilds(side, proxy, rebuilds)
    say(f"{side.label}: cold {cold.seconds:.0f} s, rebuilds {rebuild_times}")
    busy = traffic.busy_seconds
    say(f"{side.label}: timing docker run ...")
    return {
        "base": side.base,
        "base_bytes": image_bytes(side.base),
        "doctor_seconds": startup_seconds(side.tag, side.doctor) if side.doctor else None,
        "import_seconds": startup_seconds(side.tag, IMPORTS),
        "cold_seconds": cold.seconds,
        "link_seconds": cold.seconds
        if throttled
        else at_link(cold.seconds, traffic.bytes_down, busy, rate),
        "bytes_down": traffic.bytes_down,
        "bytes_up": traffic.bytes_up,
        "download_busy_seconds": busy,
        "bytes_by_host": {hosts.get(host, host): count for host, count in traffic.down.items()},
        "refused": traffic.refused,
        "image_bytes": image_bytes(side.tag),
        "proxy_in_history": history_mentions(side.tag, proxy.url),
        "rebuild_seconds": statistics.median(rebuild_times),
        "rebuild_runs": rebuild_times,
        "steps": [asdict(step) for step in cold.steps],
        "rebuild_steps": [asdict(step) for step in rebuild_steps],
        "warm_installs": warm,
        "uv_phases": uv_phases(cold.log),
    }
