"""Two replicas of the built image against one real store server, for Chroma and pgvector.

Each answer set is built once for the module (FROM the stand-ins, as tests/test_image.py builds).
Chroma is `chroma run` from the chromadb wheel on a free loopback port; PostgreSQL with pgvector
is the stand-in image built from Debian trixie, its password in a file that replicas get as a
mounted file. Replicas are containers on the host's network, locked down, on ports of their own,
with the same store URL, so what they share is the store alone. Every wait polls with a deadline
that is a hang guard; nothing here asserts a duration.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import yaml

from harness import docker
from harness.built_images import Built, Images
from harness.chroma_server import ChromaServer, chroma_server
from harness.compose import Compose, require_compose, write_override
from harness.held_request import HeldRequest
from harness.images import chroma_image, pgvector_image
from harness.model import MODEL_IN_IMAGE, model_folder
from harness.pg_server import DATABASE, USER, PgServer, pgvector_server
from harness.render import CATALOGUE
from harness.replica_load import Answer, ReplicaLoad, where
from harness.replicas import Replica, answers_on, refuses_connections, status_of, until
from harness.service_client import Api, free_port

# The answer sets, over the defaults: the model-backed HTTP service with each server store.
ANSWERS = {
    "chromadb": {"vector_store": "chromadb", "store_mode": "server"},
    "pgvector": {"vector_store": "pgvector", "store_mode": "server"},
}
CATS = {"id": "cats", "text": "Cats purr, nap in the sun and chase mice in the garden."}
RIVERS = {"id": "rivers", "text": "Rain runs down from the mountains to the sea in rivers."}
# The exit status of a start that failed.
START_FAILED = 1
GUARD_SECONDS = 600  # hang guards, not timings
# Answers a replica may give while its store is away or back: nothing else, no 500.
ALLOWED = {200, 503}


@dataclass
class Store:
    """One running store server, as replicas are pointed at it."""

    url: str
    secret_file: Path | None
    server: ChromaServer | PgServer

    def replica(self, built: Built, **kwargs) -> Replica:
        return Replica(built, self.url, self.secret_file, **kwargs)


@pytest.fixture(scope="module", params=sorted(ANSWERS))
def store_key(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def built(images: Images, store_key: str) -> Built:
    docker.require_engine()
    return images.get(f"server-{store_key}", ANSWERS[store_key])


@pytest.fixture
def store(store_key: str, tmp_path: Path, stand_in_audit: set[str]) -> Iterator[Store]:
    """A fresh store server for each test: what one test writes, another never sees."""
    if store_key == "chromadb":
        with chroma_server(tmp_path / "chroma", tmp_path / "chroma.log") as chroma:
            yield Store(chroma.url, None, chroma)
        return
    with pgvector_server(tmp_path) as pg:
        stand_in_audit.add(pg.image)
        # No password in the URL: the replica reads it from the mounted file.
        url = f"postgresql://127.0.0.1:{pg.port}/{DATABASE}?user={USER}"
        yield Store(url, pg.password_file, pg)


def add(replica: Replica, *documents: dict) -> dict:
    status, body = replica.api.call("POST", "/documents", {"documents": list(documents)})
    assert status == 200, (body, replica.output()[-3000:])
    return body


def hits(replica: Replica, text: str, k: int = 10) -> list[dict]:
    status, body = replica.api.call("POST", "/query", {"text": text, "k": k})
    assert status == 200, (body, replica.output()[-3000:])
    return body["hits"]


def assert_healthy_container(replica: Replica) -> None:
    """Running, never restarted, never killed for memory: the outage cost the process nothing."""
    state = replica.inspect("{{ .State.Status }} {{ .RestartCount }} {{ .State.OOMKilled }}")
    assert state == "running 0 false", (state, replica.output()[-3000:])


@pytest.mark.slow
@pytest.mark.image
def test_two_replicas_share_documents_and_one_id_is_one_document(built, store):
    with store.replica(built) as first, store.replica(built) as second:
        first.api.wait_ready()
        second.api.wait_ready()
        add(first, CATS, RIVERS)
        assert [hit["id"] for hit in hits(second, "which animal chases mice?")][0] == "cats"

        # The same id through both: the second write replaces the first, and is the one found.
        once = add(first, {"id": "shared", "text": "Bread rises in a warm kitchen."})
        twice = add(second, {"id": "shared", "text": "Snow falls on the quiet mountain pass."})
        assert once["count"] == twice["count"] == 3, (once, twice)
        for replica in (first, second):
            found = [hit for hit in hits(replica, "snow on the mountain") if hit["id"] == "shared"]
            assert [hit["text"] for hit in found] == ["Snow falls on the quiet mountain pass."]


def summary(answers: list[Answer]) -> str:
    """What went wrong, for the failure message: statuses and errors by replica."""
    odd = [a for a in answers if a.status not in ALLOWED]
    return "\n".join(f"replica {a.replica} {a.kind}: {a.status or a.error}" for a in odd[:20])


@pytest.mark.slow
@pytest.mark.image
def test_a_store_outage_under_load_answers_503_and_loses_nothing_acknowledged(built, store):
    with store.replica(built) as first, store.replica(built) as second:
        replicas = (first, second)
        for replica in replicas:
            replica.api.wait_ready()
        with ReplicaLoad([first.base, second.base], workers=4) as load:
            load.wait_for(where(kind="add", status=200), 10)
            stopped = time.monotonic()
            store.server.stop()
            for replica in replicas:
                until(answers_on(replica.api, "/readyz", 503), "/readyz answers 503")
            # The load ran through the outage on both replicas, and was told to come back later.
            for number in (0, 1):
                load.wait_for(where(replica=number, status=503), 3)
            store.server.start()
            back = time.monotonic()
            for replica in replicas:
                replica.api.wait_ready()
            for number in (0, 1):
                load.wait_for(where(replica=number, sent_after=back), 3)
        answers = load.stop()
        assert {a.status for a in answers} <= ALLOWED, summary(answers)
        refused = [a for a in answers if a.status == 503 and not (a.retry_after or "").isdigit()]
        assert not refused, f"503 without Retry-After: {refused[:3]}"
        for replica in replicas:
            assert_healthy_container(replica)
        acknowledged = {a.doc_id for a in answers if a.status == 200 and a.doc_id is not None}
        assert any(a.answered < stopped for a in answers if a.doc_id in acknowledged)
        # A delete of an id never stored answers 404: each of these must be there.
        missing = [
            doc_id
            for doc_id in sorted(acknowledged)
            if first.api.call("DELETE", f"/documents/{doc_id}")[0] != 200
        ]
        assert not missing, f"acknowledged, then lost: {missing}"


@pytest.mark.slow
@pytest.mark.image
def test_a_replica_started_while_the_store_is_down_waits_for_it(built, store):
    store.server.stop()
    with store.replica(built) as late:
        # Alive and unready, refusing work: neither a crash nor a restart loop.
        until(answers_on(late.api, "/livez", 200), "/livez answers 200")
        assert status_of(late.api, "/readyz") == 503
        assert late.api.call("POST", "/documents", {"documents": [CATS]})[0] == 503
        store.server.start()
        late.api.wait_ready()
        assert add(late, CATS)["count"] == 1
        assert_healthy_container(late)


@pytest.mark.slow
@pytest.mark.image
def test_sigterm_to_one_replica_under_load_drains_it_and_the_other_answers(built, store):
    with store.replica(built) as stopping, store.replica(built) as other:
        for replica in (stopping, other):
            replica.api.wait_ready()
        with ReplicaLoad([stopping.base, other.base], workers=4) as load:
            for number in (0, 1):
                load.wait_for(where(replica=number, status=200), 3)
            # Requests the stopping replica has begun reading, their bodies not yet sent.
            held = [
                HeldRequest(
                    stopping.port,
                    "/documents",
                    {"documents": [{"id": f"held-{n}", "text": f"Held request number {n}."}]},
                )
                for n in range(3)
            ]
            signalled = time.monotonic()
            stopping.signal("TERM")
            until(
                lambda: refuses_connections(stopping.port), "the stopping replica closes its port"
            )
            finished = [request.finish() for request in held]
            assert [status for status, _ in finished] == [200, 200, 200], finished
            assert stopping.wait_exit() == 0, stopping.output()[-3000:]
            exited = time.monotonic()
            load.wait_for(where(replica=1, status=200, sent_after=exited), 5)
        answers = load.stop()
        on_other = [a for a in answers if a.replica == 1]
        assert {a.status for a in on_other} == {200}, summary(on_other)
        on_stopping = [a for a in answers if a.replica == 0]
        assert {a.status for a in on_stopping} <= ALLOWED | {None}, summary(on_stopping)
        # Sent before the signal, so accepted before it: each was answered, none reset.
        dropped = [a for a in on_stopping if a.sent < signalled and a.status is None]
        assert not dropped, dropped
        found = {hit["id"] for hit in hits(other, "held request number", k=20)}
        assert {"held-0", "held-1", "held-2"} <= found, found


@pytest.mark.slow
@pytest.mark.image
def test_a_fresh_replica_with_another_embedder_is_refused_in_one_line(built, store):
    model = f"{model_folder(built.project)}:{MODEL_IN_IMAGE}:ro"
    with store.replica(
        built,
        volumes=(model,),
        settings={
            "EMBEDDER": "sentence-transformers",
            "EMBEDDING_MODEL": MODEL_IN_IMAGE,
            # A hang guard for a busy machine: this model loads from a local folder.
            "MODEL_LOAD_TIMEOUT": str(GUARD_SECONDS),
        },
        env={"HF_HUB_OFFLINE": "1"},
    ) as first:
        first.api.wait_ready(timeout=GUARD_SECONDS)
        add(first, CATS, RIVERS)
    # The first is gone: only the store can tell the second which embedder built it.
    with store.replica(built) as second:
        assert second.wait_exit() == START_FAILED, second.output()[-3000:]
        output = second.output()
    # `serve` checks the store's record before it listens, and says why on stderr, in one line;
    # found later (the store down at that check), it is the JSON log's one `failed` line.
    refusals = [line for line in output.splitlines() if "was built by" in line]
    assert len(refusals) == 1, output
    message = json.loads(refusals[0])["error"] if refusals[0].startswith("{") else refusals[0]
    assert f"the sentence-transformers model {MODEL_IN_IMAGE} (384 dimensions)" in message, message
    assert "not the hashing embedder" in message, message
    assert "Traceback" not in output, output
    if store.secret_file is not None:
        assert store.secret_file.read_text().strip() not in output


def store_stand_in(store_key: str, port: int) -> dict:
    """The store service's changes: the stand-in image, listening on `port` of the host."""
    if store_key == "chromadb":
        command = ["run", "--path", "/data", "--host", "127.0.0.1", "--port", str(port)]
        return {"image": chroma_image.ensure(), "command": command}
    return {"image": pgvector_image.ensure(), "environment": {"PGPORT": str(port)}}


def on_loopback(url: str, port: int) -> str:
    """The generated store URL (host `store`, compose's service name) at 127.0.0.1:`port`."""
    parts = urlsplit(url)
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


def server_settings(
    built: Built, generated: dict, store_key: str, stand_in: dict, store_port: int
) -> tuple[str, dict, dict]:
    """The generated file's project service and the test's changes to it and to the store: the
    stand-in store on the host's network at `store_port`, and one replica (a second could not
    bind the same host port)."""
    [app] = [name for name in generated["services"] if name != "store"]
    prefix = f"{built.package.upper()}_"
    store_url = generated["services"][app]["environment"][f"{prefix}STORE_URL"]
    health = [
        part.replace(f"/{CATALOGUE['stores'][store_key]['server']['port']}", f"/{store_port}")
        for part in generated["services"]["store"]["healthcheck"]["test"]
    ]
    settings = {"STORE_URL": on_loopback(store_url, store_port)}
    store = {**stand_in, "healthcheck": {"test": health}}
    return app, settings, store


@pytest.mark.slow
@pytest.mark.image
def test_the_server_compose_file_starts_healthy_and_serves(
    built, store_key, tmp_path, stand_in_audit
):
    require_compose()
    project = built.project
    generated = yaml.safe_load((project / "compose.yaml").read_text(encoding="utf-8"))
    secret = generated.get("secrets", {}).get("store-secret", {}).get("file")
    if secret is not None:
        # What the generated README asks a user to do first; the store's user reads it.
        (project / secret).write_text(secrets.token_urlsafe(24) + "\n", encoding="utf-8")
        (project / secret).chmod(0o644)
    port, store_port = free_port(), free_port()
    stand_in = store_stand_in(store_key, store_port)
    stand_in_audit.add(stand_in["image"])
    app, settings, store = server_settings(built, generated, store_key, stand_in, store_port)
    override_file = write_override(
        tmp_path,
        built,
        app,
        port,
        settings=settings,
        keys={"deploy": {"replicas": 1}},
        others={"store": store},
    )
    compose = Compose(project, override_file)
    config = yaml.safe_load(compose.must("config"))["services"]
    assert {name: service["network_mode"] for name, service in config.items()} == {
        name: "host" for name in generated["services"]
    }, config
    try:
        # Every service running, and healthy: each has a health check.
        compose.up(*generated["services"], wait_seconds=300)
        api = Api(port, f"{compose.name}-{app}-1")
        assert api.call("POST", "/documents", {"documents": [CATS, RIVERS]}) == (
            200,
            {"added": 2, "count": 2},
        ), compose.logs()
        assert api.nearest("which animal chases mice?") == ["cats", "rivers"], compose.logs()
    finally:
        compose.down()
    left = compose.volumes()
    assert left == [], f"`down --volumes` left {left}"
