"""Chroma in embedded mode: a PersistentClient keeps the collection in a local folder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import chromadb
from chromadb.api.types import PyEmbedding
from chromadb.config import Settings

from .store import COLLECTION, Document, Hit, VectorStore


def as_strings(metadata: Mapping[str, object] | None) -> dict[str, str]:
    """Metadata as the app stores it: Chroma types values more widely than strings."""
    return {key: str(value) for key, value in (metadata or {}).items()}


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
        embeddings: list[PyEmbedding] = [list(vector) for vector in vectors]
        self._collection.upsert(
            ids=[doc.id for doc in documents],
            documents=[doc.text for doc in documents],
            embeddings=embeddings,
            # Chroma refuses empty metadata dicts but accepts None, which its type hints omit.
            metadatas=[dict(doc.metadata) or None for doc in documents],  # type: ignore[misc]
        )

    def query(self, vector: Sequence[float], k: int = 5) -> list[Hit]:
        embeddings: list[PyEmbedding] = [list(vector)]
        result = self._collection.query(
            query_embeddings=embeddings,
            n_results=k,
            include=["documents", "metadatas", "distances"],
        )
        texts, metadatas, distances = result["documents"], result["metadatas"], result["distances"]
        # Present because `include` names them; Chroma types every included field as optional.
        assert texts is not None and metadatas is not None and distances is not None
        rows = zip(result["ids"][0], texts[0], metadatas[0], distances[0], strict=True)
        # Chroma reports cosine distance; similarity is 1 - distance.
        return [
            Hit(Document(doc_id, text, as_strings(metadata)), 1.0 - distance)
            for doc_id, text, metadata, distance in rows
        ]

    def delete(self, ids: Sequence[str]) -> None:
        if ids:
            self._collection.delete(ids=list(ids))

    def count(self) -> int:
        return self._collection.count()
