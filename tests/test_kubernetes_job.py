"""The production overlay's Indexed Job, run as Kubernetes would run it, against a real Chroma
server: one container of the image per completion index, each under the Job's exact pod
settings with JOB_COMPLETION_INDEX set, over one corpus folder mounted read-only as the claim.
Every document is stored exactly once; a shard killed midway and run again leaves it so.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import chromadb
import pytest

from harness import docker, kube, pod_docker
from harness.built_images import Built, Images
from harness.chroma_server import ChromaServer, chroma_server
from harness.service_client import logs

# A project with a Chroma server store and no model: hashing embeds in milliseconds, so the
# shards' work is the store's writes.
ANSWERS = {"ml_libraries": [], "vector_store": "chromadb", "store_mode": "server"}
DOCUMENTS = 1200
# Hang guards, not timings.
GUARD_SECONDS = 600


@pytest.fixture(scope="module")
def built(images: Images) -> Built:
    return images.get("chroma-server", ANSWERS)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ChromaServer]:
    with chroma_server(tmp_path / "chroma", tmp_path / "chroma.log") as running:
        yield running


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    for number in range(DOCUMENTS):
        path = folder / f"topic-{number % 7}" / f"note-{number:05}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"Note {number} on topic {number % 7}: " + "words " * 40)
    for path in (folder, *folder.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


def job_pod(built: Built) -> tuple[dict, dict, list[dict]]:
    overlay = built.project / "deploy" / "kubernetes" / "overlays" / "production-ingest"
    kube.write_secrets(overlay)
    result = kube.kustomize(overlay)
    assert result.returncode == 0, result.stderr
    docs = kube.documents(result.stdout)
    [job] = kube.find(docs, "Job")
    return job, job["spec"]["template"]["spec"], docs


class Shard:
    """The Job's pod for one completion index, as a container; the one setting changed is the
    store's address, since the cluster's Service name does not resolve here."""

    def __init__(
        self,
        built: Built,
        pod: dict,
        docs: list[dict],
        work: Path,
        corpus: Path,
        url: str,
        index: int,
    ):
        [self.container] = pod["containers"]
        env = pod_docker.environment(self.container, docs)
        [url_variable] = [key for key in env if key.endswith("_STORE_URL")]
        env |= {url_variable: url, "JOB_COMPLETION_INDEX": str(index)}
        options = pod_docker.run_options(
            pod, self.container, docs, work / str(index), {"corpus": str(corpus)}
        )
        self.args = (built.tag, *self.container["args"])
        self.env, self.options = env, tuple(options)
        self.id = ""

    def start(self) -> Shard:
        self.id = docker.start(*self.args, network="host", env=self.env, options=self.options)
        return self

    def wait(self) -> int:
        return docker.wait(self.id, GUARD_SECONDS)

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "--force", self.id], capture_output=True, check=False)


def stored_ids(server: ChromaServer) -> list[str]:
    client = chromadb.HttpClient(host="127.0.0.1", port=server.port)
    return client.get_collection("documents").get(include=[])["ids"]


def expected_ids(corpus: Path) -> list[str]:
    return sorted(path.relative_to(corpus).as_posix() for path in corpus.rglob("*.txt"))


@pytest.mark.slow
@pytest.mark.image
def test_the_indexed_job_stores_every_document_once_even_after_a_shard_is_killed_and_rerun(
    built, server, corpus, tmp_path
):
    job, pod, docs = job_pod(built)
    count = job["spec"]["completions"]
    assert count >= 2

    def shard(index: int, folder: str, *extra: str) -> Shard:
        made = Shard(built, pod, docs, tmp_path / folder, corpus, server.url, index)
        made.options += extra
        started.append(made.start())
        return made

    started: list[Shard] = []
    try:
        # Every shard but the first, at once, as the Job's parallelism runs them.
        for running in [shard(index, "pass") for index in range(1, count)]:
            assert running.wait() == 0, logs(running.id)
            assert f"(shard {running.env['JOB_COMPLETION_INDEX']} of {count} of" in logs(running.id)
        before = len(stored_ids(server))
        assert 0 < before < DOCUMENTS

        # The first shard, slowed to a tenth of a CPU (its one change) so that it is caught
        # writing, killed there; the store then holds part of it.
        victim = shard(0, "victim", "--cpus", "0.1")
        deadline = time.monotonic() + GUARD_SECONDS
        while len(stored_ids(server)) == before:
            assert docker.container_state(victim.id) == "running", logs(victim.id)
            assert time.monotonic() < deadline, logs(victim.id)
            time.sleep(0.2)
        subprocess.run(["docker", "kill", victim.id], capture_output=True, check=True)
        assert before < len(stored_ids(server)) < DOCUMENTS, "the shard finished before the kill"

        # Retried, as backoffLimitPerIndex retries a failed index: every document, once.
        retry = shard(0, "retry")
        assert retry.wait() == 0, logs(retry.id)
        ids = stored_ids(server)
        assert len(ids) == len(set(ids)) == DOCUMENTS
        assert sorted(ids) == expected_ids(corpus)
    finally:
        for running in started:
            running.remove()
