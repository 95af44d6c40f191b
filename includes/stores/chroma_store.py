"""Chroma in embedded mode: a PersistentClient keeps the collection in a local folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import chromadb
from chromadb.config import Settings

from .store import COLLECTION, Document, Hit, VectorStore


class ChromaStore(VectorStore):
    def __init__(self, directory: Path, collection: str = COLLECTION) -> None:
        client = chromadb.PersistentClient(
            path=str(directory), settings=Settings(anonymized_telemetry=False)
        )
        # No embedding function: vectors come from our embedder, so Chroma never fetches a model.
        self._collection = client.get_or_create_collection(
            collection, embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
        )

    def add(self, documents: Sequence[Document], vectors: Sequence[Sequence[float]]) -> None:
        if not documents:
            return
        self._collection.upsert(
            ids=[doc.id for doc in documents],
            documents=[doc.text for doc in documents],
            embeddings=[list(vector) for vector in vectors],
            # Chroma refuses empty metadata dicts but accepts None.
            metadatas=[dict(doc.metadata) or None for doc in documents],
        )

    def query(self, vector: Sequence[float], k: int = 5) -> list[Hit]:
        result = self._collection.query(
            query_embeddings=[list(vector)],
            n_results=k,
            include=["documents", "metadatas", "distances"],
        )
        rows = zip(
            result["ids"][0],
            result["documents"][0],
            result["metadatas"][0],
            result["distances"][0],
            strict=True,
        )
        # Chroma reports cosine distance; similarity is 1 - distance.
        return [
            Hit(Document(doc_id, text, dict(metadata or {})), 1.0 - distance)
            for doc_id, text, metadata, distance in rows
        ]

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            self._collection.delete(ids=list(ids))

    def count(self) -> int:
        return self._collection.count()
