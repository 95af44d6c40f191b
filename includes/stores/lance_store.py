"""LanceDB in embedded mode: the collection is a Lance table in a local folder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import lancedb
from lancedb.query import LanceVectorQueryBuilder
from lancedb.table import Table

from .store import COLLECTION, Document, Hit, VectorStore


def sql_string(value: str) -> str:
    """A SQL string literal, for LanceDB's filter expressions."""
    return "'" + value.replace("'", "''") + "'"


class LanceStore(VectorStore):
    def __init__(self, directory: Path, collection: str = COLLECTION) -> None:
        self._db = lancedb.connect(directory)
        self._name = collection
        self._table: Table | None
        try:
            self._table = self._db.open_table(collection)
        except ValueError:  # not created yet: the first add creates it
            self._table = None

    def add(self, documents: Sequence[Document], vectors: Sequence[Sequence[float]]) -> None:
        if not documents:
            return
        rows = [
            {
                "id": doc.id,
                "text": doc.text,
                # One JSON column keeps the schema fixed whatever metadata keys appear.
                "metadata": json.dumps(dict(doc.metadata)),
                "vector": [float(x) for x in vector],
            }
            for doc, vector in zip(documents, vectors, strict=True)
        ]
        if self._table is None:
            self._table = self._db.create_table(self._name, data=rows)
            return
        (
            self._table.merge_insert("id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(rows)
        )

    def query(self, vector: Sequence[float], k: int = 5) -> list[Hit]:
        if self._table is None:
            return []
        search = self._table.search(list(vector), query_type="vector")
        # A vector query always builds a vector query builder; Table.search's type says less.
        assert isinstance(search, LanceVectorQueryBuilder)
        rows = search.distance_type("cosine").limit(k).to_list()
        # LanceDB reports cosine distance; similarity is 1 - distance.
        return [
            Hit(
                Document(row["id"], row["text"], json.loads(row["metadata"])),
                1.0 - row["_distance"],
            )
            for row in rows
        ]

    def delete(self, ids: Sequence[str]) -> None:
        if ids and self._table is not None:
            self._table.delete(f"id IN ({', '.join(map(sql_string, ids))})")

    def count(self) -> int:
        return 0 if self._table is None else self._table.count_rows()
