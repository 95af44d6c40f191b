"""Real store servers on loopback, as server-mode stores will use them.

PostgreSQL 17 with pgvector runs as the image built from Debian trixie (harness/images/
pgvector_image.py) on the host's network, and psycopg 3 talks to it with the password from a
file; Chroma runs as `chroma run` from the chromadb wheel, and its own HTTP client talks to it.
Both keep their data across a restart on the same volume or path.
"""

from __future__ import annotations

from collections.abc import Iterator

import chromadb
import numpy
import psycopg
import pytest
from chromadb.config import Settings
from pgvector import Vector
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool

from harness import docker
from harness.chroma_server import ChromaServer, chroma_server
from harness.images import naming, pgvector_image
from harness.pg_server import PgServer, pgvector_server

VECTORS = {"north": [0.0, 1.0, 0.0], "east": [1.0, 0.0, 0.0], "up": [0.0, 0.0, 1.0]}
NEAR_EAST = [0.9, 0.1, 0.0]


@pytest.fixture(scope="module")
def pg(tmp_path_factory, stand_in_audit: set[str]) -> Iterator[PgServer]:
    docker.require_engine()
    with pgvector_server(tmp_path_factory.mktemp("pgvector")) as server:
        stand_in_audit.add(server.image)  # the session's end checks its name and label
        yield server


def test_the_pgvector_image_is_named_as_a_stand_in() -> None:
    assert pgvector_image.TAG.startswith(f"{naming.NAMESPACE}/")
    upstream = naming.repository(pgvector_image.UPSTREAM)
    assert naming.repository(pgvector_image.TAG) != upstream
    assert not naming.repository(pgvector_image.TAG).endswith(upstream)


@pytest.mark.image
def test_the_pgvector_image_refuses_to_start_without_a_password(pg: PgServer) -> None:
    started = docker.run(pg.image)
    assert started.returncode == 1
    assert "set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE" in started.stderr


@pytest.mark.image
def test_the_pgvector_image_says_what_it_is(pg: PgServer) -> None:
    description = docker.image_label(pg.image, naming.DESCRIPTION_LABEL) or ""
    assert description.startswith(f"Stand-in for {pgvector_image.UPSTREAM} ")
    assert docker.image_label(pg.image, naming.INPUTS_LABEL)
    assert docker.image_config(pg.image, "User") == '"999:999"'
    assert "pg_isready" in docker.image_config(pg.image, "Healthcheck")


def password(server: PgServer) -> str:
    return server.password_file.read_text().strip()


def create_items(connection: psycopg.Connection, table: str) -> None:
    connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(connection)
    connection.execute(f"CREATE TABLE {table} (id text PRIMARY KEY, embedding vector(3) NOT NULL)")
    connection.execute(f"CREATE INDEX ON {table} USING hnsw (embedding vector_cosine_ops)")


def upsert(connection: psycopg.Connection, table: str, items: dict[str, list[float]]) -> None:
    register_vector(connection)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} (id, embedding) VALUES (%s, %s)"
            " ON CONFLICT (id) DO UPDATE SET embedding = EXCLUDED.embedding",
            [(key, Vector(vector)) for key, vector in items.items()],
        )


def nearest(connection: psycopg.Connection, table: str, query: list[float]) -> list[str]:
    register_vector(connection)
    rows = connection.execute(
        f"SELECT id FROM {table} ORDER BY embedding <=> %s LIMIT 2", (Vector(query),)
    ).fetchall()
    return [row[0] for row in rows]


@pytest.mark.image
def test_pgvector_upserts_and_finds_nearest(pg: PgServer) -> None:
    with psycopg.connect(pg.conninfo(password(pg)), autocommit=True) as connection:
        create_items(connection, "upserted")
        upsert(connection, "upserted", VECTORS)
        assert nearest(connection, "upserted", NEAR_EAST) == ["east", "north"]
        # The same id again replaces its vector: "up" now points east, nearer than "east".
        upsert(connection, "upserted", {"up": NEAR_EAST})
        assert nearest(connection, "upserted", NEAR_EAST) == ["up", "east"]
        assert connection.execute("SELECT count(*) FROM upserted").fetchone() == (3,)
        indexes = connection.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'upserted'"
        ).fetchall()
        assert any("USING hnsw (embedding vector_cosine_ops)" in row[0] for row in indexes)
        versions = connection.execute(
            "SELECT current_setting('server_version_num')::int / 10000, extversion"
            " FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
        assert versions is not None and versions[0] == 17 and versions[1].startswith("0.8.")


@pytest.mark.image
def test_pgvector_data_survives_a_restart(pg: PgServer) -> None:
    conninfo = pg.conninfo(password(pg))
    with psycopg.connect(conninfo, autocommit=True) as connection:
        create_items(connection, "kept")
        upsert(connection, "kept", VECTORS)
    # A pool that checks connections out replaces the ones the outage broke.
    with ConnectionPool(conninfo, min_size=1, check=ConnectionPool.check_connection) as pool:
        pg.stop()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(conninfo, connect_timeout=5)
        pg.start()  # a new container on the same volume
        with pool.connection() as connection:
            assert nearest(connection, "kept", NEAR_EAST) == ["east", "north"]


@pytest.mark.image
def test_pgvector_refuses_a_wrong_password(pg: PgServer) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg.conninfo(password(pg) + "-wrong"))
    with psycopg.connect(pg.conninfo(password(pg))) as connection:
        assert connection.execute("SELECT current_user").fetchone() == ("vectors",)


@pytest.fixture
def chroma(tmp_path) -> Iterator[ChromaServer]:
    with chroma_server(tmp_path / "chroma", tmp_path / "chroma.log") as server:
        yield server


def chroma_client(server: ChromaServer) -> chromadb.api.ClientAPI:
    return chromadb.HttpClient(
        host="127.0.0.1", port=server.port, settings=Settings(anonymized_telemetry=False)
    )


def float32(rows: list[list[float]]) -> numpy.ndarray:
    """Chroma's embedding type."""
    return numpy.array(rows, dtype=numpy.float32)


def chroma_nearest(collection: chromadb.Collection) -> list[str]:
    return collection.query(query_embeddings=float32([NEAR_EAST]), n_results=2)["ids"][0]


def test_chroma_adds_queries_and_keeps_data_across_a_restart(chroma: ChromaServer) -> None:
    collection = chroma_client(chroma).create_collection(
        "documents", embedding_function=None, configuration={"hnsw": {"space": "cosine"}}
    )
    collection.add(ids=list(VECTORS), embeddings=float32(list(VECTORS.values())))
    assert chroma_nearest(collection) == ["east", "north"]
    chroma.stop()
    with pytest.raises(Exception, match="(?i)connect"):
        collection.count()
    chroma.start()  # the same port and path
    restored = chroma_client(chroma).get_collection("documents", embedding_function=None)
    assert restored.count() == 3
    assert chroma_nearest(restored) == ["east", "north"]
