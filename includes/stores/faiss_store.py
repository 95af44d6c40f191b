"""FAISS saved to a file: an exact inner-product index plus a JSON sidecar for the documents."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import faiss
import numpy as np

from .store import COLLECTION, Document, Hit, VectorStore


def faiss_id(doc_id: str) -> int:
    """FAISS ids are int64, so each text id maps to a stable non-negative 63-bit hash."""
    digest = hashlib.blake2b(doc_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def as_unit_rows(vectors: Sequence[Sequence[float]]) -> np.ndarray:
    """float32 rows scaled to length 1, so inner product is cosine similarity."""
    matrix = np.array(vectors, dtype=np.float32, ndmin=2)
    faiss.normalize_L2(matrix)
    return matrix


def replace_file(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file, so a crash never leaves half a file behind."""
    partial = path.with_name(path.name + ".partial")
    write(partial)
    os.replace(partial, path)


class FaissStore(VectorStore):
    def __init__(self, directory: Path, collection: str = COLLECTION) -> None:
        self._directory = Path(directory)
        self._index_path = self._directory / f"{collection}.faiss"
        self._documents_path = self._directory / f"{collection}.json"
        self._index = None
        self._documents: dict[str, dict] = {}
        if self._index_path.exists():
            self._index = faiss.read_index(str(self._index_path))
            self._documents = json.loads(self._documents_path.read_text(encoding="utf-8"))

    def add(self, documents: Sequence[Document], vectors: Sequence[Sequence[float]]) -> None:
        if not documents:
            return
        matrix = as_unit_rows(vectors)
        keys = np.array([faiss_id(doc.id) for doc in documents], dtype=np.int64)
        if self._index is None:
            # IndexIDMap2 keeps our ids next to the vectors, so they can be removed later.
            self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(matrix.shape[1]))
        # Replace, not duplicate, documents added before. faiss's Python layer takes an id array;
        # the wrapped C++ signature that type checkers see takes only an IDSelector.
        self._index.remove_ids(keys)  # type: ignore[arg-type]
        self._index.add_with_ids(matrix, keys)
        for key, doc in zip(keys.tolist(), documents, strict=True):
            self._documents[str(key)] = {
                "id": doc.id,
                "text": doc.text,
                "metadata": dict(doc.metadata),
            }
        self._save(self._index)

    def query(self, vector: Sequence[float], k: int = 5) -> list[Hit]:
        if self._index is None or self._index.ntotal == 0:
            return []
        scores, keys = self._index.search(as_unit_rows([vector]), min(k, self._index.ntotal))
        hits = []
        for score, key in zip(scores[0].tolist(), keys[0].tolist(), strict=True):
            stored = self._documents[str(key)]
            hits.append(Hit(Document(stored["id"], stored["text"], stored["metadata"]), score))
        return hits

    def delete(self, ids: Sequence[str]) -> None:
        if not ids or self._index is None:
            return
        keys = [faiss_id(doc_id) for doc_id in ids]
        self._index.remove_ids(np.array(keys, dtype=np.int64))  # type: ignore[arg-type]
        for key in keys:
            self._documents.pop(str(key), None)
        self._save(self._index)

    def count(self) -> int:
        return 0 if self._index is None else self._index.ntotal

    def _save(self, index: faiss.Index) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        replace_file(self._index_path, lambda path: faiss.write_index(index, str(path)))
        text = json.dumps(self._documents, ensure_ascii=False, indent=1)
        replace_file(self._documents_path, lambda path: path.write_text(text, encoding="utf-8"))
