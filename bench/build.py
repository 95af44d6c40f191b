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
import platform
import re
import shutil
import stat
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

import yaml

from bench import counting_proxy, footprint
from bench.footprint import output_to  # fds 1 and 2 into a log, as the hook writes
from harness import conda_channel
from harness import docker as engine
from harness.cache import cache_root
from harness.compat import tomllib
from harness.images import base_images as standins
from harness.index_server import IndexFiles, IndexServer
from harness.locks import uv_lock
from harness.mirror import build_mirror
from harness.render import CATALOGUE, render

ROOT = Path(__file__).resolve().parents[1]
CACHE = cache_root() / "bench"
PYPI = {"pypi.org:443", "files.pythonhosted.org:443"}
LINK_MBIT = 100
COLD_ATTEMPTS = 3
LOGS = CACHE / "logs"
BUILT: set[str] = set()  # ids of every image this run built
BEFORE_TAG, UV_GUIDE_TAG = "mlct-bench/before:latest", "mlct-bench/uv-guide:latest"
GENERATED_TAGS = {
    "conda": "mlct-bench/generated-conda:latest",
    "uv": "mlct-bench/generated-uv:latest",
}
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


VARIANTS = (  # key in the results, column heading
    ("before", '"before"'),
    ("uv_guide", "uv guide"),
    ("generated_conda", "generated, conda"),
    ("generated_uv", "generated, uv"),
    ("floor", "floor"),
)
ROWS = (  # label, key, how a value is shown
    ("base image (local stand-in)", "base_bytes", human_bytes),
    ("cold build, as measured", "cold_seconds", seconds_text),
    ("cold build at {link}", "link_seconds", seconds_text),
    ("downloaded", "bytes_down", human_bytes),
    ("image size", "image_bytes", human_bytes),
    ("added above its base", "above_base_bytes", human_bytes),
    ("source-only rebuild", "rebuild_seconds", seconds_text),
    ("rebuild / cold build", "rebuild_share", lambda value: f"{value:.1%}"),
    ("`docker run` to the doctor passing", "doctor_seconds", seconds_text),
    ("`docker run` to the three imports", "import_seconds", seconds_text),
)
RATIOS = (  # label, key, the variant divided into it
    ("added above its base / the uv guide's", "above_base_bytes", "uv_guide"),
    ("added above its base / the floor's", "above_base_bytes", "floor"),
    ("cold build at {link} / the uv guide's", "link_seconds", "uv_guide"),
    ("cold build at {link} / the floor's", "link_seconds", "floor"),
    ("downloaded / the floor's", "bytes_down", "floor"),
)
IMAGE_SIZE_TARGETS = (1.05, 1.15)  # x the uv guide's, x the floor's: added above the base
LINK_TARGET = 1.05  # x the uv guide's cold build at the link rate
REBUILD_SHARE = 0.05  # source-only rebuild / cold build


def above_base(image_bytes: int, base_bytes: int) -> int:
    """What a Dockerfile adds to its base: the image's size minus the base image's."""
    if image_bytes < base_bytes:
        raise ValueError(f"an image of {image_bytes} bytes is smaller than its base ({base_bytes})")
    return image_bytes - base_bytes


def with_derived(result: dict) -> dict:
    """A variant's figures plus the ones computed from them: above base, rebuild share."""
    derived = dict(result)
    if result.get("image_bytes") is not None and result.get("base_bytes") is not None:
        derived["above_base_bytes"] = above_base(result["image_bytes"], result["base_bytes"])
    if result.get("rebuild_seconds") is not None and result.get("cold_seconds"):
        derived["rebuild_share"] = result["rebuild_seconds"] / result["cold_seconds"]
    return derived


def floor_figures(
    base_bytes: int,
    installed_bytes: int,
    bytes_down: int,
    cold_seconds: float,
    warm_install_seconds: float,
    rate: float,
) -> dict:
    """The floor: the base plus the installed runtime set, and the least time that set takes.

    That time is its wheels' bytes at the link rate plus an install of the same wheels from a
    warm local uv cache; as measured, it is the same install from an empty cache.
    """
    return {
        "base_bytes": base_bytes,
        "image_bytes": base_bytes + installed_bytes,
        "bytes_down": bytes_down,
        "cold_seconds": cold_seconds,
        "link_seconds": bytes_down / rate + warm_install_seconds,
        "warm_install_seconds": warm_install_seconds,
    }


def ratio(results: dict, key: str, variant: str, against: str) -> float | None:
    mine, theirs = results.get(variant, {}).get(key), results.get(against, {}).get(key)
    if mine is None or not theirs:
        return None
    return mine / theirs


def cell(value, show) -> str:
    return "-" if value is None else show(value)


def results_table(results: dict, link: str) -> str:
    """Markdown: one row per figure, one column per variant measured; "-" where none applies."""
    shown = [(key, heading) for key, heading in VARIANTS if key in results]
    lines = [
        "| | " + " | ".join(heading for _, heading in shown) + " |",
        "|---|" + "--:|" * len(shown),
    ]
    for label, key, show in ROWS:
        cells = [cell(results[variant].get(key), show) for variant, _ in shown]
        lines.append(f"| {label.format(link=link)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios_table(results: dict, link: str) -> str:
    """Markdown: each built variant's figures divided by the uv guide's and by the floor's."""
    shown = [(key, heading) for key, heading in VARIANTS if key in results and key != "floor"]
    lines = [
        "| | " + " | ".join(heading for _, heading in shown) + " |",
        "|---|" + "--:|" * len(shown),
    ]
    for label, key, against in RATIOS:
        cells = [
            cell(ratio(results, key, variant, against), lambda value: f"{value:.2f}x")
            for variant, _ in shown
        ]
        lines.append(f"| {label.format(link=link)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdicts(results: dict, link: str) -> list[tuple[bool | None, str]]:
    """(met, line) per target, on what each Dockerfile adds above its base; None: not measured."""
    lines: list[tuple[bool | None, str]] = []
    size_peer, size_floor = IMAGE_SIZE_TARGETS

    def judge(value: float | None, limit: float, text: str) -> None:
        shown = "not measured" if value is None else f"{value:.2f}x"
        lines.append((None if value is None else value <= limit, f"{text}  ({shown})"))

    judge(
        ratio(results, "above_base_bytes", "generated_uv", "uv_guide"),
        size_peer,
        f"generated (uv installer) adds <= {size_peer}x what the uv guide adds to its base",
    )
    judge(
        ratio(results, "link_seconds", "generated_uv", "uv_guide"),
        LINK_TARGET,
        f"generated (uv installer) cold build at {link} <= {LINK_TARGET}x the uv guide's",
    )
    for variant, installer in (("generated_conda", "conda"), ("generated_uv", "uv")):
        judge(
            ratio(results, "above_base_bytes", variant, "floor"),
            size_floor,
            f"generated ({installer} installer) adds <= {size_floor}x the floor's installed bytes",
        )
    for variant, heading in VARIANTS:
        share = results.get(variant, {}).get("rebuild_share")
        if variant.startswith("generated"):
            text = f"{heading}: source-only rebuild <= {REBUILD_SHARE:.0%} of its cold build"
            if share is None:
                lines.append((None, f"{text}  (not measured)"))
            else:
                lines.append(
                    (
                        share <= REBUILD_SHARE,
                        f"{text}  ({seconds_text(results[variant]['rebuild_seconds'])} / "
                        f"{seconds_text(results[variant]['cold_seconds'])} = {share:.1%})",
                    )
                )
    return lines


def verdict_word(met: bool | None) -> str:
    return {True: "MET", False: "MISSED", None: "NOT MEASURED"}[met]


def recorded_sizes(facts: object, names: set[str]) -> dict[str, int]:
    """Sizes a facts file records for the named packages: every mapping with a name and a size.

    facts/conda-forge.yml records recipes (versions, builds, depends), read from feedstocks; a
    package's size is only known from a channel's repodata, so it is usually empty.
    """
    found: dict[str, int] = {}
    if isinstance(facts, dict):
        name, size = facts.get("name"), facts.get("size")
        if name in names and isinstance(size, int):
            found[name] = found.get(name, 0) + size
        for value in facts.values():
            for key, count in recorded_sizes(value, names).items():
                found[key] = found.get(key, 0) + count
    elif isinstance(facts, list):
        for value in facts:
            for key, count in recorded_sizes(value, names).items():
                found[key] = found.get(key, 0) + count
    return found


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
        (LOGS / f"{side.key}-cold.log").write_text(cold.log)
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
        except BuildFailed as failure:  # the engine dropped the build: once more, then give up
            print(f"{failure}\n{side.label}: rebuilding again", file=sys.stderr, flush=True)
            try:
                rebuilt = build(side.context, side.tag, proxy.url)
            except BuildFailed as again:
                sys.exit(str(again))
        rebuild_times.append(rebuilt.seconds)
        rebuild_steps = rebuilt.steps
    print(
        f"{side.label}: cold {cold.seconds:.0f} s, rebuilds {rebuild_times}",
        file=sys.stderr,
        flush=True,
    )
    busy = traffic.busy_seconds
    print(f"{side.label}: timing docker run ...", file=sys.stderr, flush=True)
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


# ---------------------------------------------------------------------------- the variants

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
    return Side("before", '"before"', BEFORE_TAG, folder, source, PYTHON_STANDIN)


def generated_side(
    folder: Path, installer: str, index_url: str, channel_url: str, channel: Path
) -> Side:
    """The template's defaults from this worktree at HEAD, locked by the hook as a user's are."""
    answers = {
        **GENERATED_ANSWERS,
        "torch_installer": installer,
        "torch_index_url": index_url,
        "conda_channel": channel_url,
    }
    log = folder.with_name(f"render-{installer}.log")
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
        f"generated_{installer}",
        f"generated, {installer}",
        GENERATED_TAGS[installer],
        project,
        package / "__init__.py",
        standins.names().micromamba,
        ("python", "-m", package.name, "doctor"),
        urlparse(channel_url).netloc,
        explicit_lock_bytes(lock, channel_url, channel),
    )


def dependencies(project: Path) -> list[str]:
    with open(project / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["project"]["dependencies"]


AMD64 = "sys_platform == 'linux' and platform_machine == 'x86_64'"


def uv_guide_pyproject(deps: list[str], index_url: str, build_requires: list[str]) -> str:
    """uv's PyTorch guide: an explicit CPU index, torch routed to it, for the image's platform."""
    listed = "".join(f'    "{dep}",\n' for dep in deps)
    return (
        '[project]\nname = "peer-app"\nversion = "0.1.0"\nrequires-python = "==3.11.*"\n'
        f"dependencies = [\n{listed}]\n\n"
        f"[build-system]\nrequires = {json.dumps(build_requires)}\n"
        'build-backend = "uv_build"\n\n'
        f'[tool.uv]\nenvironments = ["{AMD64}"]\n\n'
        f'[[tool.uv.index]]\nname = "pytorch-cpu"\nurl = "{index_url}"\nexplicit = true\n\n'
        '[tool.uv.sources]\ntorch = { index = "pytorch-cpu" }\n'
    )


def uv_guide_dockerfile(python_image: str, uv_image: str) -> str:
    """uv's Docker guide, multi-stage: its example's steps, on the same bases as the others.

    One change from that example: bytecode compilation follows the template's default (off,
    `--build-arg UV_COMPILE_BYTECODE=1` turns it on), so both images hold the same files.
    """
    return f"""\
FROM {python_image} AS builder
COPY --from={uv_image} /uv /uvx /bin/
ARG UV_COMPILE_BYTECODE=0
ENV UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=0
WORKDIR /app
RUN --mount=type=cache,target=/root/.cache/uv \\
    --mount=type=bind,source=uv.lock,target=uv.lock \\
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \\
    uv sync --locked --no-install-project --no-dev
COPY . /app
RUN --mount=type=cache,target=/root/.cache/uv \\
    uv sync --locked --no-dev --no-editable

FROM {python_image}
RUN groupadd --system --gid 999 nonroot \\
    && useradd --system --gid 999 --uid 999 --create-home nonroot
COPY --from=builder --chown=nonroot:nonroot /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:$PATH"
USER nonroot
WORKDIR /app
CMD ["python", "-m", "peer_app"]
"""


def uv_guide_side(folder: Path, generated: Path, index_url: str) -> Side:
    """The uv-guide peer: the generated defaults' dependencies, locked by uv on this host."""
    with open(generated / "pyproject.toml", "rb") as handle:
        build_requires = tomllib.load(handle)["build-system"]["requires"]
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        uv_guide_pyproject(dependencies(generated), index_url, build_requires), encoding="utf-8"
    )
    (folder / "README.md").write_text("uv guide peer\n", encoding="utf-8")
    package = folder / "src" / "peer_app"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "__main__.py").write_text(
        "import torch\n\nprint(torch.__version__)\n", encoding="utf-8"
    )
    (folder / ".dockerignore").write_text(".venv\n", encoding="utf-8")
    (folder / "Dockerfile").write_text(
        uv_guide_dockerfile(python_standin(), standins.names().uv),
        encoding="utf-8",
    )
    locked = uv_lock(folder)
    if locked.returncode:
        sys.exit(f"uv lock of the uv-guide peer failed:\n{locked.stdout}{locked.stderr}")
    return Side(
        "uv_guide", "uv guide", UV_GUIDE_TAG, folder, package / "__init__.py", PYTHON_STANDIN
    )


def guide_after(folder: Path, deps: list[str]) -> dict:
    """The seed guide's "after" as written: its [tool.uv] snippet, verbatim, on the same deps."""
    project = footprint.throwaway(folder, deps, footprint.GUIDE_UV)
    result = uv_lock(project)
    output = result.stdout + result.stderr
    if result.returncode:
        return {"locked": False, "message": footprint.uv_message(output)}
    return {"locked": True, "message": "uv locked it"}


def tree_bytes(folder: Path) -> int:
    """Bytes of the regular files under `folder` (links counted once, symlinks not at all)."""
    seen: set[int] = set()
    total = 0
    for path in folder.rglob("*"):
        info = path.lstat()
        if stat.S_ISREG(info.st_mode) and info.st_ino not in seen:
            seen.add(info.st_ino)
            total += info.st_size
    return total


def floor_install(project: Path, venv: Path, cache: Path, proxy_url: str) -> float:
    """`uv sync` of the locked set (no project, no dev) into `venv`; its wall time."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in ("no_proxy", "http_proxy", "https_proxy", "all_proxy")
    }
    env.update(
        HTTPS_PROXY=proxy_url,
        HTTP_PROXY=proxy_url,
        UV_CACHE_DIR=str(cache),
        UV_PROJECT_ENVIRONMENT=str(venv),
        UV_LINK_MODE="copy",  # as from a cache mount in a build
        UV_COMPILE_BYTECODE="0",
        UV_PYTHON_DOWNLOADS="never",
    )
    uv = shutil.which("uv") or "uv"
    started = time.monotonic()
    result = subprocess.run(
        [uv, "sync", "--locked", "--no-dev", "--no-install-project"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    if result.returncode:
        sys.exit(f"the floor's install failed:\n{result.stdout}{result.stderr}")
    return seconds


def measure_floor(project: Path, work: Path, proxy, rate: float, hosts: dict[str, str]) -> dict:
    """The uv guide's locked set, installed on this host: once from an empty cache, through the
    proxy (the bytes), then again into a fresh environment from that warm cache (the time)."""
    print("floor: installing the locked set from an empty uv cache ...", file=sys.stderr)
    cache = work / "floor-cache"
    proxy.reset()
    cold = floor_install(project, work / "floor-cold", cache, proxy.url)
    traffic = proxy.reset()
    warm = floor_install(project, work / "floor-warm", cache, proxy.url)
    installed = tree_bytes(work / "floor-warm")
    print(f"floor: cold {cold:.0f} s, warm {warm:.1f} s", file=sys.stderr, flush=True)
    figures = floor_figures(
        image_bytes(PYTHON_STANDIN), installed, traffic.bytes_down, cold, warm, rate
    )
    return {
        **figures,
        "base": PYTHON_STANDIN,
        "installed_bytes": installed,
        "download_busy_seconds": traffic.busy_seconds,
        "bytes_up": traffic.bytes_up,
        "bytes_by_host": {hosts.get(host, host): count for host, count in traffic.down.items()},
        "refused": traffic.refused,
    }


# ---------------------------------------------------------------------------- the run

# Published sizes of the real bases; none was found in the stored docs and pages searched
# (Docker Hub tag pages for python and mambaorg/micromamba, micromamba-docker's docs).
PUBLISHED_BASES = {
    "python:3.11-slim": None,
    CATALOGUE["images"]["micromamba"]: None,
}
CONDA_PYTHON = {"python", "openssl", "sqlite", "tk", "ncurses", "readline", "libffi", "libzlib"}


def conda_python_note() -> str:
    """What the conda layer's real Python would add, if facts/conda-forge.yml records sizes."""
    facts = yaml.safe_load((ROOT / "facts" / "conda-forge.yml").read_text(encoding="utf-8"))
    sizes = recorded_sizes(facts, CONDA_PYTHON)
    if sizes:
        return (
            f"conda-forge's Python and its libraries ({', '.join(sorted(sizes))}) as recorded in "
            f"facts/conda-forge.yml: {human_bytes(sum(sizes.values()))} of packages"
        )
    return (
        "not estimated: facts/conda-forge.yml records recipes (versions, builds, depends) read "
        "from the feedstocks, and no package sizes; sizes live in a channel's repodata, and no "
        "conda channel is reachable here"
    )


def require_engine() -> None:
    if not engine.engine_answers():
        sys.exit(f"bench.build needs a Docker engine with buildx: {engine.START_HINT}")


def report(
    results: dict, after: dict, rate: float, throttled: bool, rebuilds: int, load_start: float
) -> None:
    results = {key: with_derived(result) for key, result in results.items()}
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
        f"{rebuilds}; `docker run` = median of {STARTS}; at {link}: {how} "
        f"{rate / 1e6:.1f} MB/s.\n"
    )
    verdict = "refused by `uv lock`" if not after["locked"] else "LOCKED (unexpected)"
    print(f'The seed guide\'s "after", as written: {verdict}: {after["message"]}\n')
    print(results_table(results, link))
    print("\nEach built variant against the uv guide and the floor:\n")
    print(ratios_table(results, link))
    print("\nBases (sizes from `docker image inspect`):\n")
    print("| base | used by | stand-in here | real, published |\n|---|---|--:|---|")
    bases: dict[str, list[str]] = {}
    for key, heading in VARIANTS:
        if key in results:
            bases.setdefault(results[key]["base"], []).append(heading)
    for base, users in bases.items():
        real = {PYTHON_STANDIN: "python:3.11-slim"}.get(base, CATALOGUE["images"]["micromamba"])
        published = PUBLISHED_BASES.get(real)
        print(
            f"| {real} (stand-in `{base}`) | {', '.join(users)} | "
            f"{human_bytes(image_bytes(base))} | "
            f"{published or 'not found in the stored docs and pages'} |"
        )
    print(
        "\nMissing above the micromamba stand-in: its Python is Debian's, in a venv, and the "
        "stand-in channel's `python` package is empty, so the generated images' conda layer "
        "lacks the real conda-forge Python (openssl, sqlite, tk, ...) that a real build adds "
        f"above mambaorg/micromamba. Its size: {conda_python_note()}."
    )
    for key, heading in VARIANTS:
        result = results.get(key)
        if not result:
            continue
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
            f"\n{heading}: downloaded {human_bytes(result['bytes_down'])} in "
            f"{result['download_busy_seconds']:.0f} s of transfer "
            f"({rate_seen / 1e6:.0f} MB/s): {hosts}; sent {human_bytes(result['bytes_up'])}"
            + (f"; refused {result['refused']}" if result["refused"] else "")
        )
        if key == "floor":
            print(
                f"floor: {human_bytes(result['installed_bytes'])} installed; install from a "
                f"warm uv cache {seconds_text(result['warm_install_seconds'])}"
            )
            continue
        print(f"\nslowest steps of the {heading} cold build\n")
        print(steps_table(slowest([Step(**step) for step in result["steps"]])))
        print(f"\nslowest steps of the {heading} source-only rebuild (the last one)\n")
        print(steps_table(slowest([Step(**step) for step in result["rebuild_steps"]], 3)))
        if result["proxy_in_history"]:
            print(f"\nWARNING: the proxy's address is in the {heading} image's history")
        if result["warm_installs"]:
            print(f"\nWARNING: this cold build was not cold: {result['warm_installs']}")
        if result["uv_phases"]:
            print("\ninside its uv steps: " + "; ".join(result["uv_phases"]))
    print("\n```text")
    for met, line in verdicts(results, link):
        print(f"{verdict_word(met):<12}  {line}")
    print("```")
    print(
        "BENCH "
        + json.dumps(
            {"date": today, "load_start": load_start, "guide_after": after, **results},
            default=str,
        )
    )


def main() -> None:
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
    args = parser.parse_args()
    require_engine()
    load_start = os.getloadavg()[0]
    rate = LINK_MBIT * 1e6 / 8
    wanted = {args.only} if args.only else {key for key, _ in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="mlct-build-bench-") as tmp:
        work = Path(tmp)
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
            generated = {
                installer: generated_side(
                    work / f"generated-{installer}" / "bench-service",
                    installer,
                    index.url,
                    channel.url,
                    channel_dir,
                )
                for installer in ("conda", "uv")
            }
            peer = uv_guide_side(work / "uv-guide", generated["conda"].context, index.url)
            after = guide_after(work / "guide-after", dependencies(generated["conda"].context))
            # The floor first and "before" last: what fails fastest runs first.
            sides = [
                side
                for side in (
                    peer,
                    generated["uv"],
                    generated["conda"],
                    before_side(work / "before"),
                )
                if side.key in wanted
            ]
            hosts = {
                urlparse(index.url).netloc: "CPU index (loopback)",
                urlparse(channel.url).netloc: "conda channel (loopback)",
            }
            results = {}
            try:
                if "floor" in wanted:
                    results["floor"] = measure_floor(peer.context, work, proxy, rate, hosts)
                for side in sides:
                    results[side.key] = measure(
                        side, proxy, args.rebuilds, rate, args.throttle, hosts
                    )
                    # Kept as it goes, so a run the engine breaks still leaves its figures.
                    LOGS.mkdir(parents=True, exist_ok=True)
                    (LOGS / "partial.json").write_text(json.dumps(results, default=str))
            finally:
                engine.remove_images(BEFORE_TAG, UV_GUIDE_TAG, *GENERATED_TAGS.values(), *BUILT)
    if args.only:
        print(json.dumps({"guide_after": after, **results}, indent=1, default=str))
        return
    report(results, after, rate, args.throttle, args.rebuilds, load_start)


if __name__ == "__main__":
    main()
