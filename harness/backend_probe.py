"""Run in a generated ONNX project's environment: torch against its ONNX embedder, one process.

    uv run python backend_probe.py PACKAGE MODEL [--rounds N] [--threads N] < texts.json

It imports only what the project itself has (sentence-transformers, torch, the project's package),
never this repository: the harness runs it with the project's own interpreter. stdin holds
{"documents": [...], "queries": [[text, doc], ...], "corpus": [...]}. MODEL_FOLDER is copied twice
into a scratch folder: once exported as the project exports it (fp32, or int8 in an onnx-int8
project), once with the fp32 graph under the same file name, so both ONNX runs go through the
project's own OnnxEmbedder. Prints one JSON object: per backend, quality against torch and, with
--rounds, texts per second (the best of N interleaved rounds over the corpus).
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer


def folders(package: str, model: Path, scratch: Path) -> dict[str, Path]:
    """The model exported as the project does, and with its fp32 graph under the same name."""
    export = importlib.import_module(f"{package}.onnx_export")
    embeddings = importlib.import_module(f"{package}.embeddings")
    chosen, fp32 = scratch / "chosen", scratch / "fp32"
    shutil.copytree(model, chosen)
    shutil.copytree(model, fp32)
    written = export.export_model(chosen)
    target = embeddings.onnx_file(fp32)
    target.parent.mkdir(parents=True, exist_ok=True)
    traced = export.trace(fp32, scratch / "traced.onnx")
    export.optimize(fp32, traced, target)
    kind = "onnx-int8" if "qint8" in written.name else "onnx"
    return {"onnx": fp32} if kind == "onnx" else {"onnx": fp32, "onnx-int8": chosen}


def quality(vectors: np.ndarray, reference: np.ndarray, texts: dict) -> dict:
    """Mean and least cosine to torch's vectors, and how often the nearest document agrees."""
    cosines = (vectors * reference).sum(axis=1)
    count = len(texts["documents"])
    docs, queries = vectors[:count], vectors[count:]
    ref_docs, ref_queries = reference[:count], reference[count:]
    same = (queries @ docs.T).argmax(axis=1) == (ref_queries @ ref_docs.T).argmax(axis=1)
    return {
        "mean_cosine": float(cosines.mean()),
        "min_cosine": float(cosines.min()),
        "same_top1": float(same.mean()),
    }


def speeds(runs: dict, corpus: list[str], rounds: int) -> dict[str, float]:
    """Texts per second of each run: the best of `rounds`, the runs interleaved in each round."""
    best = dict.fromkeys(runs, 0.0)
    for run in runs.values():
        run(corpus[:32])  # warm-up: first-call allocations
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            run(corpus)
            best[name] = max(best[name], len(corpus) / (time.perf_counter() - started))
    return best


def onnx_run(embedder) -> Callable[[list[str]], np.ndarray]:
    return lambda batch: np.asarray(embedder.embed(batch), dtype=np.float32)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("package")
    parser.add_argument("model", type=Path)
    parser.add_argument("--rounds", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    texts = json.load(sys.stdin)
    torch.set_num_threads(args.threads)
    embeddings = importlib.import_module(f"{args.package}.embeddings")
    with tempfile.TemporaryDirectory(prefix="backend-probe-") as scratch:
        model = SentenceTransformer(str(args.model), device="cpu")
        runs = {
            "torch": lambda batch: model.encode(
                batch, batch_size=32, normalize_embeddings=True, convert_to_numpy=True
            )
        }
        for name, folder in folders(args.package, args.model, Path(scratch)).items():
            runs[name] = onnx_run(embeddings.OnnxEmbedder(str(folder), threads=args.threads))
        probe = texts["documents"] + [query for query, _ in texts["queries"]]
        reference = runs["torch"](probe)
        result = {name: quality(run(probe), reference, texts) for name, run in runs.items()}
        if args.rounds:
            for name, rate in speeds(runs, texts["corpus"], args.rounds).items():
                result[name]["texts_per_second"] = rate
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
