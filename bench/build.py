"""Benchmark the image build: the seed's "before" against the generated defaults, side by side.

Run on demand from the repository root, with a Docker engine (`bash .ci/docker-engine start`):

    uv run python -m bench.build [--rebuilds 3] [--throttle]

Both builds run in this process, on the same engine, through one loopback proxy that counts the
bytes each downloads: PyPI through CONNECT, and the local CPU index and conda channel over
loopback http. Each cold build starts with an empty build cache (`docker builder prune -af`,
which also empties the cache mounts) and no image of its own. Base images are the image tests'
local stand-ins, built before any timing. Prints Markdown tables, PASS/FAIL per target, each
build's slowest steps, and ends with one line `BENCH {json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from bench import counting_proxy
from bench.footprint import output_to  # fds 1 and 2 into a log, as the hook writes
from tests.support import conda_channel
from tests.support import docker as engine
from tests.support.cache import cache_root
from tests.support.images import base_images as standins
from tests.support.index_server import IndexFiles, IndexServer
from tests.support.mirror import build_mirror
from tests.support.render import render

ROOT = Path(__file__).resolve().parents[1]
CACHE = cache_root() / "bench"
PYPI = {"pypi.org:443", "files.pythonhosted.org:443"}
LINK_MBIT = 100
COLD_ATTEMPTS = 3
LOGS = CACHE / "logs"
BUILT: set[str] = set()  # ids of every image this run built
BEFORE_TAG, GENERATED_TAG = "mlct-bench/before:latest", "mlct-bench/generated:latest"
# A local stand-in for the official python image, under its own name so it never hides one.
PYTHON_STANDIN = "mlct-stand-in/python:3.11-slim"
SEED_INSTALL = "pip install --no-cache-dir torch sentence-transformers chromadb"
GENERATED_ANSWERS = {
    "project_name": "Bench Service",
    "python_version": "3.11",
    "lock_platforms": ["linux/amd64"],
}


# ---------------------------------------------------------------------------- pure helpers


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


def explicit_lock_bytes(lock_text: str, channel_url: str, channel: Path) -> int:
    """Bytes of the packages an @EXPLICIT lock names from a channel served out of `channel`."""
    urls = [
        line.split("#", 1)[0]
        for line in lock_text.splitlines()
        if line.startswith(channel_url.rstrip("/") + "/")
    ]
    return sum((channel / url[len(channel_url.rstrip("/")) + 1 :]).stat().st_size for url in urls)


def slowest(steps: list[Step], count: int = 5) -> list[Step]:
    timed = [step for step in steps if step.seconds is not None and not step.cached]
    return sorted(timed, key=lambda step: step.seconds or 0.0, reverse=True)[:count]  # never None


def at_link(seconds: float, bytes_down: int, busy_seconds: float, rate: float) -> float:
    """The build's time had its downloads come at `rate` bytes/s instead of as measured.

    The measured download share is the wall time in which bytes were flowing (`busy_seconds`);
    it is replaced by the time the same bytes take at `rate`.
    """
    return seconds - busy_seconds + bytes_down / rate


def human_bytes(count: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            digits = 2 if count < 10 * size else 0
            return f"{count / size:,.{digits}f} {unit}"
    return f"{count:.0f} B"


def seconds_text(value: float) -> str:
    return f"{value:,.1f} s" if value < 10 else f"{value:,.0f} s"


ROWS = (  # label, key, how a value is shown
    ("cold build, as measured", "cold_seconds", seconds_text),
    ("cold build at {link}", "link_seconds", seconds_text),
    ("downloaded", "bytes_down", human_bytes),
    ("image size", "image_bytes", human_bytes),
    ("source-only rebuild", "rebuild_seconds", seconds_text),
)


def results_table(before: dict, generated: dict, link: str) -> str:
    """Markdown: one row per figure, both builds, and "before" divided by generated."""
    lines = ['| | "before" | generated | "before" / generated |', "|---|--:|--:|--:|"]
    for label, key, show in ROWS:
        ratio = before[key] / generated[key] if generated[key] else float("nan")
        lines.append(
            f"| {label.format(link=link)} | {show(before[key])} | "
            f"{show(generated[key])} | {ratio:.1f}x |"
        )
    return "\n".join(lines)


def verdicts(before: dict, generated: dict, link: str) -> list[tuple[bool, str]]:
    """(passed, line) for each of the build's targets."""
    smaller = before["image_bytes"] / generated["image_bytes"]
    faster = before["link_seconds"] / generated["link_seconds"]
    share = generated["rebuild_seconds"] / generated["cold_seconds"]
    return [
        (smaller >= 4, f'image at most 1/4 of "before"  ({smaller:.1f}x smaller)'),
        (faster >= 4, f"cold build at least 4x faster at {link}  ({faster:.1f}x)"),
        (
            share <= 0.1,
            "source-only rebuild at most 1/10 of the generated cold build  "
            f"({seconds_text(generated['rebuild_seconds'])} / "
            f"{seconds_text(generated['cold_seconds'])} = {share:.1%})",
        ),
    ]


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


# ---------------------------------------------------------------------------- builds


@dataclass
class Build:
    seconds: float
    steps: list[Step]
    log: str


class BuildFailed(Exception):
    pass


def build(context: Path, tag: str, proxy_url: str) -> Build:
    """Build with the proxy as the predefined proxy build args, which stay out of the history."""
    args = {"HTTPS_PROXY": proxy_url, "HTTP_PROXY": proxy_url}
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
    label: str
    tag: str
    context: Path
    source: Path  # the file a source-only edit touches
    channel_host: str = ""  # the conda channel's host:port, when the build uses one
    conda_bytes: int = 0  # what a cold conda step downloads from it


def measure(
    side: Side, proxy, rebuilds: int, rate: float, throttled: bool, hosts: dict[str, str]
) -> dict:
    print(f"{side.label}: cold build ...", file=sys.stderr, flush=True)
    for attempt in range(1, COLD_ATTEMPTS + 1):
        empty_caches(side.tag)
        proxy.reset()
        try:
            cold = build(side.context, side.tag, proxy.url)
        except BuildFailed as failure:
            # Cache mounts are shared with other builds on the engine, which can race ours.
            if attempt == COLD_ATTEMPTS:
                sys.exit(str(failure))
            print(
                f"{failure}\n{side.label}: retrying, attempt {attempt + 1} of {COLD_ATTEMPTS}",
                file=sys.stderr,
                flush=True,
            )
            continue
        traffic = proxy.reset()
        LOGS.mkdir(parents=True, exist_ok=True)
        (LOGS / f"{side.tag.split('/')[1].split(':')[0]}-cold.log").write_text(cold.log)
        warm = warm_installs(cold.log)
        from_channel = traffic.down.get(side.channel_host, 0)
        if from_channel < side.conda_bytes:
            warm.append(f"conda: fetched {from_channel:,} of the lock's {side.conda_bytes:,} bytes")
        if not warm:
            break
        then = "keeping it, marked" if attempt == COLD_ATTEMPTS else "retrying"
        print(
            f"{side.label}: not cold (another build refilled a cache mount): {warm}; {then}",
            file=sys.stderr,
            flush=True,
        )
    rebuild_times, rebuild_steps = [], []
    for count in range(1, rebuilds + 1):
        source_edit(side.source, count)
        try:
            rebuilt = build(side.context, side.tag, proxy.url)
        except BuildFailed as failure:
            sys.exit(str(failure))
        rebuild_times.append(rebuilt.seconds)
        rebuild_steps = rebuilt.steps
    print(
        f"{side.label}: cold {cold.seconds:.0f} s, rebuilds {rebuild_times}",
        file=sys.stderr,
        flush=True,
    )
    busy = traffic.busy_seconds
    return {
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


# ---------------------------------------------------------------------------- the two sides

PYTHON_STANDIN_DOCKERFILE = """\
# STAND-IN for the official python image (ml-container-template's build benchmark): Debian
# bookworm's Python 3.11 in a venv with pip from PyPI; no registry is reachable here.
ARG ROOTFS
FROM ${ROOTFS}
# The host's CA bundle: this machine's egress re-signs TLS, so pip must trust its CA.
COPY host-ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY pip-*.whl /tmp/pip/
RUN python3 -m venv --without-pip /opt/venv \\
    && wheel="$(echo /tmp/pip/pip-*.whl)" \\
    && /opt/venv/bin/python "$wheel/pip" install --no-index --no-cache-dir --quiet "$wheel" \\
    && rm -rf /tmp/pip
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \\
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
"""


def pip_wheel() -> Path:
    """pip's newest wheel from PyPI, cached, for the python stand-in."""
    folder = CACHE / "pip"
    if not list(folder.glob("pip-*.whl")):
        subprocess.run(
            [
                *standins.pip_command(),
                "download",
                "pip",
                "--no-deps",
                "--only-binary=:all:",
                "--dest",
                str(folder),
                "--quiet",
            ],
            check=True,
            capture_output=True,
        )
    return sorted(folder.glob("pip-*.whl"))[-1]


def python_standin() -> str:
    """The official python image's stand-in, on the image tests' Debian rootfs (Python 3.11)."""
    standins.ensure_rootfs()
    wheel = pip_wheel()
    inputs = standins.digest(
        PYTHON_STANDIN_DOCKERFILE,
        standins.rootfs_key(),
        wheel.name,
        standins.HOST_CA_BUNDLE.read_bytes(),
    )
    if engine.image_label(PYTHON_STANDIN, standins.INPUTS_LABEL) == inputs:
        return PYTHON_STANDIN
    with tempfile.TemporaryDirectory() as work:
        context = Path(work)
        (context / "Dockerfile").write_text(PYTHON_STANDIN_DOCKERFILE, encoding="utf-8")
        shutil.copyfile(standins.HOST_CA_BUNDLE, context / "host-ca-certificates.crt")
        shutil.copyfile(wheel, context / wheel.name)
        result = engine.build(
            context,
            PYTHON_STANDIN,
            build_args={"ROOTFS": standins.ROOTFS_TAG},
            labels={standins.INPUTS_LABEL: inputs},
            network="none",
        )
    if result.returncode:
        sys.exit(f"building the python stand-in failed:\n{result.log[-3000:]}")
    return PYTHON_STANDIN


def before_side(folder: Path) -> Side:
    """The seed's "before": one stage on a python image, the three libraries from PyPI with pip.

    The install comes before the source, so a source edit reuses it: the baseline at its best.
    """
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text(
        f"FROM {python_standin()}\nWORKDIR /app\nRUN {SEED_INSTALL}\n"
        'COPY app/ app/\nCMD ["python", "-m", "app"]\n',
        encoding="utf-8",
    )
    source = folder / "app" / "__main__.py"
    source.parent.mkdir()
    source.write_text("import torch\n\nprint(torch.__version__)\n", encoding="utf-8")
    return Side('"before"', BEFORE_TAG, folder, source)


def generated_side(folder: Path, index_url: str, channel_url: str, channel: Path) -> Side:
    """The template's defaults from this worktree at HEAD, locked by the hook as a user's are."""
    answers = {**GENERATED_ANSWERS, "torch_index_url": index_url, "conda_channel": channel_url}
    log = folder.with_name("render.log")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), output_to(log):
        warnings.simplefilter("ignore")  # DirtyLocalWarning: uncommitted edits are meant
        os.environ["ML_TEMPLATE_STRICT"] = "1"  # a failed lock fails the render
        project = render(folder, answers, tasks=True)
    missing = [name for name in ("uv.lock", "conda-linux-64.lock") if not (project / name).exists()]
    if missing:
        sys.exit(f"the lock hook wrote no {', '.join(missing)}; see {log}")
    package = next(path for path in (project / "src").iterdir() if path.is_dir())
    lock = (project / "conda-linux-64.lock").read_text(encoding="utf-8")
    return Side(
        "generated",
        GENERATED_TAG,
        project,
        package / "__init__.py",
        urlparse(channel_url).netloc,
        explicit_lock_bytes(lock, channel_url, channel),
    )


# ---------------------------------------------------------------------------- the run


def require_engine() -> None:
    if not engine.engine_answers():
        sys.exit(f"bench.build needs a Docker engine with buildx: {engine.START_HINT}")


def report(results: dict, rate: float, throttled: bool, rebuilds: int, load_start: float) -> None:
    before, generated = results['"before"'], results["generated"]
    link = f"{LINK_MBIT} Mbit/s"
    today = datetime.now(timezone.utc).strftime("%d %B %Y, %H:%M UTC")
    how = (
        "measured through the proxy throttled to"
        if throttled
        else "computed: measured time - time bytes were flowing + bytes at"
    )
    print(
        f"Run of {today}: {platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{load_start:.1f} at the start and {os.getloadavg()[0]:.1f} at the end; "
        "cold builds from an empty build cache; rebuild = median of "
        f"{rebuilds}; at {link}: {how} {rate / 1e6:.1f} MB/s.\n"
    )
    print(results_table(before, generated, link))
    for label, result in results.items():
        rate_seen = (
            result["bytes_down"] / result["download_busy_seconds"]
            if result["download_busy_seconds"]
            else 0
        )
        hosts = ", ".join(
            f"{host} {human_bytes(count)}"
            for host, count in sorted(result["bytes_by_host"].items())
        )
        print(
            f"\n{label}: downloaded {human_bytes(result['bytes_down'])} in "
            f"{result['download_busy_seconds']:.0f} s of transfer "
            f"({rate_seen / 1e6:.0f} MB/s): {hosts}; sent {human_bytes(result['bytes_up'])}"
            + (f"; refused {result['refused']}" if result["refused"] else "")
        )
        print(f"\nslowest steps of the {label} cold build\n")
        print(steps_table(slowest([Step(**step) for step in result["steps"]])))
        print(f"\nslowest steps of the {label} source-only rebuild (the last one)\n")
        print(steps_table(slowest([Step(**step) for step in result["rebuild_steps"]], 3)))
        if result["proxy_in_history"]:
            print(f"\nWARNING: the proxy's address is in the {label} image's history")
        if result["warm_installs"]:
            print(f"\nWARNING: this cold build was not cold: {result['warm_installs']}")
        if result["uv_phases"]:
            print("\ninside its uv steps: " + "; ".join(result["uv_phases"]))
    print("\n```text")
    for passed, line in verdicts(before, generated, link):
        print(f"{'PASS' if passed else 'FAIL'}  {line}")
    print("```")
    print("BENCH " + json.dumps({"date": today, "load_start": load_start, **results}, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rebuilds",
        type=int,
        default=3,
        help="source-only rebuilds per side; the median is reported",
    )
    parser.add_argument(
        "--throttle",
        action="store_true",
        help=f"measure the cold builds through the proxy throttled to {LINK_MBIT} "
        "Mbit/s, instead of computing that time from the bytes",
    )
    parser.add_argument(
        "--only",
        choices=["before", "generated"],
        help="build one side only (for trying the bench; prints no table)",
    )
    args = parser.parse_args()
    require_engine()
    load_start = os.getloadavg()[0]
    rate = LINK_MBIT * 1e6 / 8
    with tempfile.TemporaryDirectory(prefix="mlct-build-bench-") as tmp:
        work = Path(tmp)
        print(
            "preparing stand-in base images, the CPU index and the conda channel ...",
            file=sys.stderr,
            flush=True,
        )
        standins.ensure()
        mirror = Path(url2pathname(urlparse(build_mirror(work / "mirror")).path))
        channel_dir = conda_channel.build_channel()
        with (
            IndexServer(IndexFiles.from_mirror(mirror)) as index,
            conda_channel.ChannelServer(channel_dir) as channel,
            counting_proxy.CountingProxy(PYPI, rate=rate if args.throttle else None) as proxy,
        ):
            sides = []
            if args.only != "generated":
                sides.append(before_side(work / "before"))
            if args.only != "before":
                sides.append(
                    generated_side(
                        work / "generated" / "bench-service", index.url, channel.url, channel_dir
                    )
                )
            hosts = {
                urlparse(index.url).netloc: "CPU index (loopback)",
                urlparse(channel.url).netloc: "conda channel (loopback)",
            }
            try:
                results = {
                    side.label: measure(side, proxy, args.rebuilds, rate, args.throttle, hosts)
                    for side in sides
                }
            finally:
                engine.remove_images(BEFORE_TAG, GENERATED_TAG, *BUILT)
    if args.only:
        print(json.dumps(results, indent=1, default=str))
        return
    report(results, rate, args.throttle, args.rebuilds, load_start)


if __name__ == "__main__":
    main()
