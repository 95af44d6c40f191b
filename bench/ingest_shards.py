"""Benchmark bulk ingest through the Indexed Job against a server store, next to one process.

Run on demand from the repository root, with a Docker engine (`bash .ci/docker-engine start`):

    uv run python -m bench.ingest_shards [--documents 4000]

It builds a Chroma-server project with no model (the hashing embedder: what is measured is the
CLI, its store writes and the shard split, not a model's speed), starts a real `chroma run` on
loopback, and ingests one corpus folder three ways, each into a fresh collection:
- one process: `python -m <package> ingest /corpus` in the image, no limits;
- the Job with 1 shard, then with 2: one container per index under the production Job pod's
  settings (2 CPUs, read-only root, ...), `JOB_COMPLETION_INDEX` and the shard count set, all
  indexes at once as the Job's parallelism runs them.
Each run's time is the container's, from `docker run` to exit (Python's start included, as a pod
pays it). Prints a Markdown table with the per-shard rate, and one line `BENCH {json}`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from harness import conda_channel, docker, kube, pod_docker
from harness.built_images import Built, Images
from harness.chroma_server import chroma_server
from harness.images import base_images
from harness.index_server import IndexFiles, IndexServer
from harness.mirror import build_mirror

ANSWERS = {"ml_libraries": [], "vector_store": "chromadb", "store_mode": "server"}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def build(work: Path) -> Built:
    stand_ins = base_images.ensure()
    mirror = Path(url2pathname(urlparse(build_mirror(work / "mirror")).path))
    with (
        IndexServer(IndexFiles.from_mirror(mirror)) as index,
        conda_channel.ChannelServer(conda_channel.build_channel()) as channel,
    ):
        images = Images(work / "images", index.url, channel.url, base_args=stand_ins.build_args)
        say("building the Chroma-server project ...")
        return images.get("bench-shards", ANSWERS)


def corpus(folder: Path, count: int) -> Path:
    for number in range(count):
        path = folder / f"topic-{number % 11}" / f"doc-{number:06}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"Document {number} on topic {number % 11}. " + "Some words. " * 30)
    for path in (folder, *folder.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


def job_pod(built: Built) -> tuple[dict, list[dict]]:
    overlay = built.project / "deploy" / "kubernetes" / "overlays" / "production-ingest"
    kube.write_secrets(overlay)
    docs = kube.documents(kube.kustomize(overlay).stdout)
    [job] = kube.find(docs, "Job")
    return job["spec"]["template"]["spec"], docs


def run_all(built: Built, runs: list[tuple[dict, tuple[str, ...]]]) -> list[float]:
    """Start every (env, options) container at once; each one's seconds from start to exit."""
    started = []
    args = ("python", "-m", built.package, "ingest", "/corpus")
    for env, options in runs:
        begun = time.monotonic()
        started.append(
            (begun, docker.start(built.tag, *args, network="host", env=env, options=options))
        )
    seconds = []
    for begun, container in started:
        done = subprocess.run(["docker", "wait", container], capture_output=True, text=True)
        seconds.append(time.monotonic() - begun)
        output = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
        subprocess.run(["docker", "rm", "--force", container], capture_output=True, check=False)
        if done.stdout.strip() != "0":
            sys.exit(f"an ingest failed:\n{output.stdout[-2000:]}{output.stderr[-2000:]}")
    return seconds


def measure(
    built: Built, folder: Path, url: str, work: Path, documents: int
) -> list[dict[str, Any]]:
    """One process, then the Job with 1 and 2 shards, each into a fresh collection."""
    pod, docs = job_pod(built)
    [container] = pod["containers"]
    prefix = built.package.upper() + "_"
    rows: list[dict[str, Any]] = []
    # A first container reads the image from disk: a run of the report takes that cost.
    docker.run(built.tag, "python", "-m", built.package, "report")
    plain = {f"{prefix}STORE_URL": url, f"{prefix}STORE_COLLECTION": fresh()}
    [seconds] = run_all(built, [(plain, ("--volume", f"{folder}:/corpus:ro"))])
    rows.append({"way": "one process, no limits", "shards": 1, "seconds": [seconds]})
    for shards in (1, 2):
        collection, runs = fresh(), []
        for index in range(shards):
            env = pod_docker.environment(container, docs)
            env |= {f"{prefix}STORE_URL": url, f"{prefix}STORE_COLLECTION": collection}
            env |= {"JOB_COMPLETION_INDEX": str(index), f"{prefix}SHARD_COUNT": str(shards)}
            place = work / f"{shards}-{index}"
            options = pod_docker.run_options(pod, container, docs, place, {"corpus": str(folder)})
            runs.append((env, tuple(options)))
        say(f"the Job with {shards} shard(s) ...")
        rows.append(
            {
                "way": f"Indexed Job, {shards} shard(s)",
                "shards": shards,
                "seconds": run_all(built, runs),
            }
        )
    for row in rows:
        row["docs_per_second"] = round(documents / max(row["seconds"]), 1)
        row["per_shard_docs_per_second"] = [
            round(documents / row["shards"] / s, 1) for s in row["seconds"]
        ]
    return rows


def fresh() -> str:
    return f"bench_{uuid.uuid4().hex[:10]}"


def report(rows: list[dict[str, Any]], documents: int) -> None:
    print(f"| {documents} documents, hashing embedder | wall s | docs/s | per shard docs/s |")
    print("|---|---|---|---|")
    for row in rows:
        wall = max(row["seconds"])
        shards = ", ".join(str(rate) for rate in row["per_shard_docs_per_second"])
        print(f"| {row['way']} | {wall:.1f} | {row['docs_per_second']} | {shards} |")
    print("BENCH " + json.dumps({"documents": documents, "runs": rows}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=4000)
    documents = parser.parse_args().documents
    work = Path(tempfile.mkdtemp(prefix="bench-shards-"))
    built = build(work)
    folder = corpus(work / "corpus", documents)
    try:
        with chroma_server(work / "chroma", work / "chroma.log") as server:
            report(measure(built, folder, server.url, work / "pods", documents), documents)
    finally:
        docker.remove_images(built.tag)


if __name__ == "__main__":
    main()
