"""The model's own limit, run inside the service's image: its embedder and store, no HTTP.

Run by `bench.serve` as `python serve_limit.py <package>` in a container pinned to the service's
CPUs, with a JSON object on stdin: "documents" to embed (timed) then store (untimed), "queries" to
search, "batch" texts per call. Prints one JSON line: texts per second and queries per second.
The same embedder the service builds from its settings, sized as the service sizes torch.
"""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
import time
from pathlib import Path


def batches(items: list, size: int) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def rate(count: int, work) -> float:
    started = time.perf_counter()
    work()
    return count / (time.perf_counter() - started)


def main() -> None:
    package, payload = sys.argv[1], json.load(sys.stdin)
    search = importlib.import_module(f"{package}.search")
    service = importlib.import_module(f"{package}.service")
    settings = importlib.import_module(f"{package}.settings").Settings.from_env()
    store_module = importlib.import_module(f"{package}.store")
    cpus = service.cpu_quota()
    # All the CPUs it has: no event loop or store shares them here (a project without torch has
    # no threads to size).
    if hasattr(service, "use_cpus"):
        service.use_cpus(cpus)
    embedder = search.make_embedder(settings)
    texts, queries, size = payload["documents"], payload["queries"], payload["batch"]
    embedder.embed(texts[:size])  # loads the model and warms its first call
    vectors: list = []

    def embed_all() -> None:
        for batch in batches(texts, size):
            vectors.extend(embedder.embed(batch))

    texts_rate = rate(len(texts), embed_all)
    # The store opens from settings, as the service opens it, in a scratch folder.
    with (
        tempfile.TemporaryDirectory() as data,
        search.open_store(settings.model_copy(update={"data_dir": Path(data)}), embedder) as store,
    ):
        documents = [
            store_module.Document(f"doc-{number:05d}", text) for number, text in enumerate(texts)
        ]
        for chunk, chunk_vectors in zip(
            batches(documents, size), batches(vectors, size), strict=True
        ):
            store.add(chunk, chunk_vectors)
        store.query_many(embedder.embed(queries[:size]), 5)  # the store's first search, warm

        def search_all() -> None:
            for batch in batches(queries, size):
                store.query_many(embedder.embed(batch), 5)

        queries_rate = rate(len(queries), search_all)
    print(json.dumps({"texts_rate": texts_rate, "queries_rate": queries_rate, "cpus": cpus}))


if __name__ == "__main__":
    main()
