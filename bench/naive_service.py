"""The embedding service as FastAPI's and sentence-transformers' tutorials write it: a peer.

One `encode` per request, in a plain `def` endpoint (FastAPI runs it in its thread pool), the
model loaded at import. Run by `bench.serve` inside the service's image, so it has the same
torch, the same model files and the same CPUs; it answers OpenAI's embeddings shape.
"""

from __future__ import annotations

import os

import torch
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer

model = SentenceTransformer(os.environ["NAIVE_MODEL"], device="cpu")
app = FastAPI()


class EmbeddingRequest(BaseModel):
    input: str | list[str]
    model: str = "all-MiniLM-L6-v2"


@app.post("/embeddings")
def embeddings(request: EmbeddingRequest) -> dict:
    texts = [request.input] if isinstance(request.input, str) else request.input
    vectors = model.encode(texts, normalize_embeddings=True)
    data = [
        {"object": "embedding", "index": index, "embedding": vector.tolist()}
        for index, vector in enumerate(vectors)
    ]
    return {"object": "list", "data": data, "model": request.model}


@app.get("/health")
def health() -> dict:
    # Not set by a tutorial: torch's own choice, reported so the bench can say what it was.
    return {"status": "ok", "torch_threads": torch.get_num_threads()}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["NAIVE_PORT"]), log_level="warning")
