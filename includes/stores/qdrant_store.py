"""Qdrant in local mode: the collection lives in a folder and no server runs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path

from qdrant_client import QdrantClient, models

from .store import COLLECTION, Document, Hit, VectorStore


def point_id(doc_id: str) -> str:
    """Qdrant ids are integers or UUIDs, so each text id maps to a stable UUID."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, doc_id))


class QdrantStore(VectorStore):
    def __init__(self, directory: Path, collection: str = COLLECTION) -> None:
        # Local mode locks the folder: one open store per folder until close().
        self._client = QdrantClient(path=str(directory))
        self._collection = collection

    def _exists(self) -> bool:
        return self._client.collection_exists(self._collection)

    def add(self, documents: Sequence[Document], vectors: Sequence[Sequence[float]]) -> None:
        if not documents:
            return
        if not self._exists():
            params = models.VectorParams(size=len(vectors[0]), distance=models.Distance.COSINE)
            self._client.create_collection(self._collection, vectors_config=params)
        points = [
            models.PointStruct(
                id=point_id(doc.id),
                vector=list(vector),
                payload={"id": doc.id, "text": doc.text, "metadata": dict(doc.metadata)},
            )
            for doc, vector in zip(documents, vectors, strict=True)
        ]
        self._client.upsert(self._collection, points=points)

    def query(self, vector: Sequence[float], k: int = 5) -> list[Hit]:
        if not self._exists():
            return []
        response = self._client.query_points(
            self._collection, query=list(vector), limit=k, with_payload=True
        )
        hits = []
        for point in response.points:
            payload = point.payload or {}  # always there: asked for with with_payload
            document = Document(payload["id"], payload["text"], payload["metadata"])
            hits.append(Hit(document, point.score))
        return hits

    def delete(self, ids: Sequence[str]) -> None:
        if ids and self._exists():
            selector = models.PointIdsList(points=[point_id(doc_id) for doc_id in ids])
            self._client.delete(self._collection, points_selector=selector)

    def count(self) -> int:
        return self._client.count(self._collection).count if self._exists() else 0

    def close(self) -> None:
        self._client.close()
