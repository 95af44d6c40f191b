"""Benchmark the image build: the seed's "before" against the generated defaults, side by side.

Run on demand from the repository root, with a Docker engine (`bash .ci/docker-engine start`):

    uv run python bench/build.py [--rebuilds 3] [--throttle]

Both builds run in this process, on the same engine, through one loopback proxy that counts the
bytes each downloads (PyPI through CONNECT, the local CPU index and conda channel over loopback
http). Each cold build starts with an empty build cache (`docker builder prune -af`, which also
empties the cache mounts) and no image of its own. Prints Markdown tables, PASS/FAIL per target,
the generated build's slowest steps, and ends with one line `BENCH {json}`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "ml-container-template" / "bench"
PYPI = {"pypi.org:443", "files.pythonhosted.org:443"}
LINK_MBIT = 100
BEFORE_TAG, GENERATED_TAG = "mlct-bench/before", "mlct-bench/generated"
# Stand-in for the official python image: Debian's Python 3.11 with pip, no registry needed.
PYTHON_STANDIN = "mlct-standin/python:3.11-slim"
SEED_PACKAGES = "torch sentence-transformers chromadb"
GENERATED_ANSWERS = {"project_name": "Bench Service", "python_version": "3.11",
                     "lock_platforms": ["linux/amd64"]}


def load(relative: str):
    """Import a repository file by path: bench/ is not a package and must not need one."""
    sys.dont_write_bytecode = True  # no __pycache__ inside template/ or tests/
    spec = importlib.util.spec_from_file_location(Path(relative).stem, ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


PROXY = load("bench/counting_proxy.py")


# ---------------------------------------------------------------------------- pure helpers

@dataclass
class Step:
    name: str
    seconds: float | None  # None: cached or unfinished
    cached: bool = False


def parse_steps(plain_log: str) -> list[Step]:
    """Per-step timings from BuildKit's `--progress=plain` output, in the order steps appear."""
    names: dict[str, str] = {}
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
        elif vertex not in names and not re.match(r"\d+(\.\d+)? |sha256:|ERROR|CANCELED", rest):
            names[vertex] = rest
            steps[vertex] = Step(rest, None)
    return list(steps.values())


def slowest(steps: list[Step], count: int = 5) -> list[Step]:
    timed = [step for step in steps if step.seconds is not None and not step.cached]
    return sorted(timed, key=lambda step: step.seconds, reverse=True)[:count]


def at_link(seconds: float, bytes_down: int, busy_seconds: float, rate: float) -> float:
    """The build's time had its downloads come at `rate` bytes/s instead of as measured.

    The measured download share is the wall time in which bytes were flowing (`busy_seconds`);
    it is replaced by the time the same bytes take at `rate`.
    """
    return seconds - busy_seconds + bytes_down / rate


def human_bytes(count: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:,.1f} {unit}" if count < 100 * size else f"{count / size:,.0f} {unit}"
    return f"{count:.0f} B"


def ratio(before: float, generated: float) -> str:
    return f"{before / generated:.1f}x" if generated else "n/a"


def results_table(before: dict, generated: dict, link_label: str) -> str:
    """Markdown: one row per figure, the two builds and "before"/generated."""
    rows = [
        ("cold build, measured", "cold_seconds", lambda v: f"{v:,.0f} s"),
        (f"cold build at {link_label}", "link_seconds", lambda v: f"{v:,.0f} s"),
        ("downloaded", "bytes_down", human_bytes),
        ("image size", "image_bytes", human_bytes),
        ("source-only rebuild", "rebuild_seconds", lambda v: f"{v:,.1f} s"),
    ]
    lines = ['| | "before" | generated | "before"/generated |', "|---|--:|--:|--:|"]
    for label, key, show in rows:
        lines.append(f"| {label} | {show(before[key])} | {show(generated[key])} | "
                     f"{ratio(before[key], generated[key])} |")
    return "\n".join(lines)


def verdicts(before: dict, generated: dict, link_label: str) -> list[tuple[bool, str]]:
    image = before["image_bytes"] / generated["image_bytes"]
    cold = before["link_seconds"] / generated["link_seconds"]
    rebuild = generated["rebuild_seconds"] / generated["cold_seconds"]
    return [
        (image >= 4, f'image at most 1/4 of "before"  ({image:.1f}x smaller)'),
        (cold >= 4, f"cold build at least 4x faster at {link_label}  ({cold:.1f}x)"),
        (rebuild <= 0.1, f"source-only rebuild at most 1/10 of the generated cold build  "
                         f"({generated['rebuild_seconds']:.1f} s / "
                         f"{generated['cold_seconds']:.0f} s = {rebuild:.2f})"),
    ]


# ---------------------------------------------------------------------------- docker

def docker(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=capture, text=True, check=check)


def require_engine() -> None:
    if shutil.which("docker") is None or docker("info", check=False).returncode:
        sys.exit("bench/build.py needs a Docker engine with BuildKit: run "
                 "`bash .ci/docker-engine start` first")
    if docker("buildx", "version", check=False).returncode:
        sys.exit("bench/build.py needs the buildx plugin: run `bash .ci/docker-engine start`")


@dataclass
class Build:
    seconds: float
    log: str
    steps: list[Step] = field(default_factory=list)


def build(context: Path, tag: str, proxy_url: str) -> Build:
    """`docker buildx build` with the proxy as the predefined build args (kept out of history)."""
    command = ["docker", "buildx", "build", "--progress=plain", "--network=host", "-t", tag,
               "--build-arg", f"HTTPS_PROXY={proxy_url}", "--build-arg", f"HTTP_PROXY={proxy_url}",
               str(context)]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if result.returncode:
        tail = "\n".join(result.stderr.splitlines()[-40:])
        raise SystemExit(f"docker build of {tag} failed:\n{tail}")
    return Build(seconds, result.stderr, parse_steps(result.stderr))


def empty_caches(tag: str) -> None:
    """No build cache, no cache-mount contents, no image of our own: a cold start."""
    docker("rmi", "-f", tag, check=False)
    docker("builder", "prune", "-af")


def image_bytes(tag: str) -> int:
    return int(docker("image", "inspect", "-f", "{{.Size}}", tag).stdout)


# ---------------------------------------------------------------------------- the two sides

def python_standin() -> str:
    """A local stand-in for the official python image: Debian bookworm's Python 3.11 in a venv.

    The machine's egress re-signs TLS, so the image trusts the host's CA files, as the host does.
    """
    if docker("image", "inspect", PYTHON_STANDIN, check=False).returncode == 0:
        return PYTHON_STANDIN
    rootfs = CACHE / "python-rootfs"
    if not (rootfs / "opt/venv/bin/pip").exists():
        shutil.rmtree(rootfs, ignore_errors=True)
        subprocess.run(["debootstrap", "--variant=minbase",
                        "--include=python3,python3-venv,ca-certificates", "bookworm", str(rootfs),
                        "http://deb.debian.org/debian"], check=True, capture_output=True)
        for cert in Path("/usr/local/share/ca-certificates").glob("*.crt"):
            shutil.copy(cert, rootfs / "usr/local/share/ca-certificates" / cert.name)
        subprocess.run(["chroot", str(rootfs), "update-ca-certificates"], check=True,
                       capture_output=True)
        subprocess.run(["chroot", str(rootfs), "python3", "-m", "venv", "/opt/venv"], check=True)
    changes = [
        "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
        'CMD ["python3"]',
    ]
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["docker", "import", *[f"--change={c}" for c in changes], "-", PYTHON_STANDIN],
                   stdin=tar.stdout, check=True, capture_output=True)
    tar.wait()
    return PYTHON_STANDIN


def before_context(folder: Path, base: str) -> Path:
    """The seed's "before": one stage, `pip install` from PyPI, source copied after it."""
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text(
        f"FROM {base}\n"
        "WORKDIR /app\n"
        f"RUN pip install --no-cache-dir {SEED_PACKAGES}\n"
        "COPY app/ app/\n"
        'CMD ["python", "-m", "app"]\n', encoding="utf-8")
    (folder / "app").mkdir()
    (folder / "app" / "__main__.py").write_text(
        "import torch\n\nprint(torch.__version__)\n", encoding="utf-8")
    return folder / "app" / "__main__.py"


def source_edit(path: Path, count: int) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"# source-only edit {count}\n")


@dataclass
class Side:
    label: str
    tag: str
    context: Path
    source: Path  # the file a source-only edit touches


def measure(side: Side, proxy, rebuilds: int, rate: float) -> dict:
    empty_caches(side.tag)
    proxy.reset()
    cold = build(side.context, side.tag, proxy.url)
    traffic = proxy.reset()
    rebuild_times = []
    for count in range(1, rebuilds + 1):
        source_edit(side.source, count)
        rebuild_times.append(build(side.context, side.tag, proxy.url).seconds)
    busy = traffic.busy_seconds
    return {
        "cold_seconds": cold.seconds,
        "link_seconds": at_link(cold.seconds, traffic.bytes_down, busy, rate),
        "bytes_down": traffic.bytes_down,
        "bytes_up": traffic.bytes_up,
        "download_busy_seconds": busy,
        "bytes_by_host": dict(traffic.down),
        "refused": traffic.refused,
        "image_bytes": image_bytes(side.tag),
        "rebuild_seconds": statistics.median(rebuild_times),
        "rebuild_runs": rebuild_times,
        "steps": [asdict(step) for step in cold.steps],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuilds", type=int, default=3,
                        help="source-only rebuilds per side (median reported)")
    parser.add_argument("--throttle", action="store_true",
                        help=f"measure through a proxy throttled to {LINK_MBIT} Mbit/s "
                             "instead of computing the link time from the bytes")
    args = parser.parse_args()
    require_engine()
    rate = LINK_MBIT * 1e6 / 8
    link_label = f"{LINK_MBIT} Mbit/s"
    with tempfile.TemporaryDirectory(prefix="mlct-build-bench-") as tmp, \
            PROXY.CountingProxy(PYPI, rate=rate if args.throttle else None) as proxy:
        work = Path(tmp)
        sides = [
            Side('"before"', BEFORE_TAG, work / "before",
                 before_context(work / "before", python_standin())),
        ]
        results = {}
        for side in sides:
            print(f"building {side.label} ...", flush=True)
            results[side.label] = measure(side, proxy, args.rebuilds, rate)
            if args.throttle:
                results[side.label]["link_seconds"] = results[side.label]["cold_seconds"]
        print(json.dumps(results, indent=1, default=str)[:3000])


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    main()
