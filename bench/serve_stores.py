"""The service's /query over each store, embedded and server, under the same load in one run.

Run on demand from the repository root, with a Docker engine (`bash .ci/docker-engine start`):

    uv run python -m bench.serve_stores [--stores embedded,chroma-server,pgvector]
        [--documents 1000] [--clients 8,32] [--seconds 6] [--rounds 3]
        [--service-cpus 0] [--store-cpus 0] [--load-cpus 1] [--reuse-images --keep-images]

Each store is the default project rendered with only its store answers changed (as the replica
image tests render them), built as `bench.serve` builds, the model mounted read-only. The Chroma
server is `chroma run` from the chromadb wheel; PostgreSQL with pgvector is the Debian trixie
stand-in image. Every store's server runs on `--store-cpus` and its service on `--service-cpus`,
all up at once; each service stores the same `--documents` through POST /documents. Then the
same query texts in closed loops of each `--clients` count on /query, store after store,
`--rounds` times, so that a shared machine's other work falls on every store alike. Prints the
median p50, p99 and answers per second of the rounds, and each against the embedded store of
this run, then one line `BENCH {json}`. It reports; it never gates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timezone
from pathlib import Path

from bench import loopback_load, serve_figures, serve_images, serve_load
from bench import serve_targets as targets
from bench.serve import cpu_sets, ingest
from bench.serve_figures import ms, per_second, ratio
from bench.serve_images import MODEL_IN_IMAGE, PACKAGE, say
from harness import docker as engine
from harness.chroma_server import chroma_server
from harness.pg_server import DATABASE, USER, pgvector_server

# Per store, the answers that differ from the template's defaults (chromadb, embedded).
STORES = {
    "embedded": {},
    "chroma-server": {"vector_store": "chromadb", "store_mode": "server"},
    "pgvector": {"vector_store": "pgvector"},
}
SECRET_IN_CONTAINER = "/run/secrets/store-secret"
KEYS = ("throughput", "p50", "p99")
QUERY_TEXTS = 200


def tag(store: str) -> str:
    return f"mlct-bench/serve-store-{store}:latest"


def store_list(text: str) -> list[str]:
    """The stores named, in the order given, embedded first: the others are judged against it."""
    named = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(named) - set(STORES))
    if unknown or not named:
        sys.exit(f"bench.serve_stores: --stores takes some of {', '.join(STORES)}; not {unknown}")
    return ["embedded", *dict.fromkeys(name for name in named if name != "embedded")]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--stores", default=",".join(STORES), help="stores to run; embedded always runs")
    add("--documents", type=int, default=1_000, help="stored in each store before the queries")
    add("--clients", default="8,32", help="closed-loop client counts on /query")
    add("--seconds", type=float, default=6.0, help="each closed-loop run")
    add("--rounds", type=int, default=3, help="runs of every store in turn; medians are shown")
    add("--service-cpus", default="0", help="CPUs of the service (taskset's form)")
    add("--store-cpus", default=None, help="CPUs of the store server; the service's by default")
    add("--load-cpus", default="1", help="CPUs of the load generator, none of the others'")
    add("--reuse-images", action="store_true", help="use the images if they are all there")
    add("--keep-images", action="store_true", help="leave the images in the engine")
    args = parser.parse_args(argv)
    args.stores = store_list(args.stores)
    try:
        args.clients = [int(count) for count in args.clients.split(",")]
    except ValueError:
        sys.exit(f"bench.serve_stores: --clients takes counts such as 8,32, not {args.clients!r}")
    if args.rounds < 1 or args.seconds <= 0 or args.documents < 1 or min(args.clients) < 1:
        sys.exit("bench.serve_stores: --rounds, --seconds, --documents and --clients are over 0")
    args.store_cpus = args.store_cpus or args.service_cpus
    return args


def all_cpus(args: argparse.Namespace) -> tuple[frozenset[int], frozenset[int], frozenset[int]]:
    """The service's, the store server's and the generator's CPUs; the generator's apart."""
    try:
        store, load = targets.cpu_list(args.store_cpus), targets.cpu_list(args.load_cpus)
    except ValueError as error:
        sys.exit(f"bench.serve_stores: {error}")
    if store & load:
        sys.exit(
            f"bench.serve_stores: the store server and the load share CPUs {sorted(store & load)}"
        )
    if not store <= os.sched_getaffinity(0):
        sys.exit(f"bench.serve_stores: --store-cpus {args.store_cpus} are not all available")
    service, load = cpu_sets(args)
    return service, store, load


@contextmanager
def store_server(store: str, cpus: frozenset[int], folder: Path) -> Iterator[dict[str, str]]:
    """The store's server on `cpus`, running; yields the service's settings that reach it."""
    if store == "embedded":
        yield {}
    elif store == "chroma-server":
        with chroma_server(folder / "chroma", folder / "chroma.log", cpus) as chroma:
            yield {"STORE_URL": chroma.url}
    else:
        with pgvector_server(folder) as pg:
            assert pg.container is not None
            # The container's processes, started unpinned, now kept to the store's CPUs.
            pin = ["docker", "update", "--cpuset-cpus", targets.cpu_text(cpus), pg.container]
            subprocess.run(pin, capture_output=True, check=True)
            yield {
                "STORE_URL": f"postgresql://127.0.0.1:{pg.port}/{DATABASE}?user={USER}",
                "STORE_SECRET_FILE": SECRET_IN_CONTAINER,
                "secret": str(pg.password_file),
            }


def start_service(store: str, cpus: frozenset[int], settings: dict[str, str]) -> targets.Target:
    """The store's image on `cpus`, the model mounted, pointed at the store's server."""
    prefix = f"{PACKAGE.upper()}_"
    chosen = {"HOST": "127.0.0.1", "PORT": "{port}", "MODEL_LOAD_TIMEOUT": "600"}
    chosen["EMBEDDING_MODEL"] = MODEL_IN_IMAGE
    volumes = [f"{serve_images.model_folder()}:{MODEL_IN_IMAGE}:ro"]
    if "secret" in settings:  # a mounted file, as compose's `secrets:` gives it
        volumes.append(f"{settings['secret']}:{SECRET_IN_CONTAINER}:ro")
    chosen.update({name: value for name, value in settings.items() if name != "secret"})
    env = {prefix + name: value for name, value in chosen.items()} | {"HF_HUB_OFFLINE": "1"}
    return targets.start_container(
        store, cpus, env=env, volumes=tuple(volumes), ready="/readyz", image=tag(store)
    )


def hits(base: str, body: dict) -> int:
    """How many hits one query finds: a store that finds nothing would be quick for nothing."""
    request = urllib.request.Request(
        base + "/query", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return len(json.loads(response.read())["hits"])


def start(store: str, cpus, stack: ExitStack, folder: Path) -> targets.Target:
    """The store's server and its service, running until `stack` closes."""
    service_cpus, store_cpus = cpus
    folder.mkdir()
    settings = stack.enter_context(store_server(store, store_cpus, folder))
    service = start_service(store, service_cpus, settings)
    stack.callback(service.stop)
    return service


def stored(store: str, service: targets.Target, texts: list[str], bodies: list[dict]) -> dict:
    """`texts` stored through the service, one query's hits counted, and its first calls made."""
    say(f"{store}: storing {len(texts):,} documents ...")
    rate = ingest(service, texts)
    found, wanted = hits(service.base, bodies[0]), min(bodies[0]["k"], len(texts))
    if found < wanted:  # quick answers from a store that finds nothing would mislead
        say(f"WARNING: {store}: a query found {found} of the {wanted} hits it asked for")
    loopback_load.run_closed(service.base, "/query", bodies, 8, serve_load.WARM_UP_SECONDS)
    return {"ingest_rate": rate, "hits": found}


def rounds(services: dict[str, targets.Target], args, bodies: list[dict]) -> dict:
    """Every store's closed loops, store after store, `args.rounds` times: per store, per count."""
    runs: dict = {store: {clients: [] for clients in args.clients} for store in services}
    for number in range(1, args.rounds + 1):
        say(f"round {number} of {args.rounds}:")
        for store, service in services.items():
            for clients in args.clients:
                load = loopback_load.run_closed(
                    service.base, "/query", bodies, clients, args.seconds
                )
                runs[store][clients].append(serve_load.summary(load))
                say(f"  {store}, {clients:>3} clients: {load.throughput:.1f} /s")
    return runs


def median_of(runs: list[dict]) -> dict:
    """One figure per key over the rounds: the median, and every error counted."""
    found: dict = {"errors": sum(run["errors"] for run in runs)}
    for key in KEYS:
        values = [run[key] for run in runs if run[key] is not None]
        found[key] = statistics.median(values) if values else None
    return found


def against_embedded(figures: dict) -> dict:
    """Per store and client count: throughput, p50 and p99 over the embedded store's."""
    base = figures["stores"].get("embedded", {}).get("closed", {})
    found: dict = {}
    for store, measured in figures["stores"].items():
        for clients, load in measured["closed"].items():
            ours = base.get(clients, {})
            found.setdefault(store, {})[clients] = {
                key: ratio(load[key], ours.get(key)) for key in KEYS
            }
    return found


def times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def table(figures: dict) -> str:
    """Markdown: one row per store and client count, and what did not run."""
    lines = [
        "| store | clients | answered /s | p50 | p99 | errors | /s vs embedded "
        "| p50 vs embedded | p99 vs embedded | /s in each round |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    ratios = against_embedded(figures)
    for store, measured in figures["stores"].items():
        for clients, load in measured["closed"].items():
            against = ratios[store][clients]
            each = measured.get("runs", {}).get(clients, [])
            spread = ", ".join(f"{run['throughput']:.0f}" for run in each) or "-"
            lines.append(
                f"| {store} | {clients} | {per_second(load['throughput'])} | {ms(load['p50'])} "
                f"| {ms(load['p99'])} | {load['errors']} | {times(against['throughput'])} "
                f"| {times(against['p50'])} | {times(against['p99'])} | {spread} |"
            )
    for store, reason in figures.get("skipped", {}).items():
        lines.append(f"| {store} | not run: {reason} | - | - | - | - | - | - | - | - |")
    return "\n".join(lines)


def measure(args, cpus: tuple[frozenset[int], frozenset[int]], load_cpus) -> dict:
    """Every store up at once, each store's rounds interleaved with the others'."""
    wanted = {tag(store): STORES[store] for store in args.stores}
    if args.reuse_images and all(map(serve_images.image_exists, wanted)):
        say(f"reusing {', '.join(wanted)}")
    else:
        with tempfile.TemporaryDirectory(prefix="mlct-serve-stores-") as tmp:
            serve_images.build_images(Path(tmp), wanted)
    os.sched_setaffinity(0, load_cpus)  # from here on, this process is the load generator
    texts = serve_figures.synthetic_texts(args.documents)
    bodies = loopback_load.query_bodies(serve_figures.queries(QUERY_TEXTS), QUERY_TEXTS)
    figures: dict = {"documents": args.documents, "rounds": args.rounds, "stores": {}}
    figures["skipped"] = {}
    with tempfile.TemporaryDirectory(prefix="mlct-serve-store-") as tmp, ExitStack() as stack:
        services = {}
        for store in args.stores:
            try:
                services[store] = start(store, cpus, stack, Path(tmp) / store)
            except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
                if store == "embedded":
                    raise
                say(f"{store} did not run: {error}")
                figures["skipped"][store] = f"{type(error).__name__}: {str(error)[:300]}"
                continue
            figures["stores"][store] = stored(store, services[store], texts, bodies)
        for store, runs in rounds(services, args, bodies).items():
            figures["stores"][store]["runs"] = runs
            figures["stores"][store]["closed"] = {n: median_of(each) for n, each in runs.items()}
    return figures


def describe(args, started: str, load_start: float) -> str:
    return (
        f"Run started {started}: {platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{load_start:.1f} at the start and {os.getloadavg()[0]:.1f} at the end; the service on "
        f"CPU(s) {args.service_cpus}, the store server on CPU(s) {args.store_cpus}, the load "
        f"generator on CPU(s) {args.load_cpus}; {args.documents:,} documents; closed loops of "
        f"{args.seconds:g} s on /query; every store in turn, {args.rounds} time(s), medians shown."
    )


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    service_cpus, store_cpus, load_cpus = all_cpus(args)
    if not engine.engine_answers():
        sys.exit(f"bench.serve_stores needs a Docker engine with buildx: {engine.START_HINT}")
    load_start = os.getloadavg()[0]
    started = datetime.now(timezone.utc).strftime("%d %B %Y, %H:%M UTC")
    try:
        figures = measure(args, (service_cpus, store_cpus), load_cpus)
    finally:
        if not args.keep_images:
            engine.remove_images(*(tag(store) for store in args.stores))
    heading = describe(args, started, load_start)
    figures["against_embedded"] = against_embedded(figures)
    print(heading + "\n")
    print(table(figures))
    print("BENCH " + json.dumps({"run": heading, **figures}))


if __name__ == "__main__":
    main()
