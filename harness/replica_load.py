"""A bounded load over several replicas of a service, run in a thread while a test acts on them.

`ReplicaLoad(bases)` starts `workers` asyncio clients in one background thread; each takes the
replicas in turn and alternates an add of a new document (ids `<prefix>-<n>`, never reused) with a
query, paced so two shared CPUs stay usable. Every request becomes an `Answer`: the HTTP status,
or the httpx error when none came, with monotonic times. The test reads `answers()` at any
time, stops the store or a replica meanwhile, and `stop()`s the load when done.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

TEXTS = (
    "Cats purr, nap in the sun and chase mice in the garden.",
    "Rain runs down from the mountains to the sea in rivers.",
    "Bread rises in a warm kitchen before it goes in the oven.",
)
# Between two requests of one worker: a 503 comes back at once, and the load must stay bounded.
PACE_SECONDS = 0.05
# A hang guard per request, not a timing: the service bounds its own store calls far below it.
REQUEST_TIMEOUT = 120.0


@dataclass(frozen=True)
class Answer:
    replica: int
    kind: str  # "add" or "query"
    sent: float  # time.monotonic() when the request left
    answered: float  # when its answer (or error) came
    status: int | None  # None: no HTTP answer
    error: str | None  # the httpx error's class and text when no answer came
    doc_id: str | None  # the added document's id
    retry_after: str | None  # the Retry-After header, if any


class ReplicaLoad:
    """`workers` concurrent clients over `bases` (one URL per replica) until `stop()`."""

    def __init__(self, bases: list[str], workers: int = 4, prefix: str = "load") -> None:
        self.bases, self.workers, self.prefix = bases, workers, prefix
        self._answers: list[Answer] = []
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> ReplicaLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Answer]:
        """End the load once the requests in flight are answered; every answer."""
        self._stopping.set()
        self._thread.join(timeout=REQUEST_TIMEOUT + 30)
        assert not self._thread.is_alive(), "the load did not stop"
        return self.answers()

    def answers(self, where: Callable[[Answer], bool] = lambda _: True) -> list[Answer]:
        with self._lock:
            return [answer for answer in self._answers if where(answer)]

    def wait_for(self, where: Callable[[Answer], bool], count: int, timeout: float = 300) -> None:
        """Until `count` answers match `where`: the load has run through what the test did."""
        deadline = time.monotonic() + timeout
        while len(self.answers(where)) < count:
            assert self._thread.is_alive(), "the load stopped"
            assert time.monotonic() < deadline, f"fewer than {count} such answers in {timeout} s"
            time.sleep(0.2)

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=self.workers)
        clients = [
            httpx.AsyncClient(
                base_url=base, trust_env=False, timeout=REQUEST_TIMEOUT, limits=limits
            )
            for base in self.bases
        ]
        try:
            await asyncio.gather(*(self._worker(n, clients) for n in range(self.workers)))
        finally:
            for client in clients:
                await client.aclose()

    async def _worker(self, number: int, clients: list[httpx.AsyncClient]) -> None:
        # Workers start on different replicas and kinds, so every pair is always under load.
        turns = itertools.count(number)
        while not self._stopping.is_set():
            turn = next(turns)
            replica = turn % len(clients)
            adding = (turn // len(clients)) % 2 == 0
            await self._one(replica, clients[replica], adding)
            await asyncio.sleep(PACE_SECONDS)

    async def _one(self, replica: int, client: httpx.AsyncClient, adding: bool) -> None:
        doc_id = f"{self.prefix}-{next(self._ids)}" if adding else None
        text = TEXTS[hash(doc_id) % len(TEXTS)]
        sent = time.monotonic()
        status = error = retry_after = None
        try:
            if doc_id is not None:
                body = {"documents": [{"id": doc_id, "text": text}]}
                response = await client.post("/documents", json=body)
            else:
                response = await client.post("/query", json={"text": text, "k": 3})
            status, retry_after = response.status_code, response.headers.get("retry-after")
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"
        kind = "add" if adding else "query"
        answer = Answer(replica, kind, sent, time.monotonic(), status, error, doc_id, retry_after)
        with self._lock:
            self._answers.append(answer)


def where(
    replica: int | None = None,
    kind: str | None = None,
    status: int | None = None,
    sent_after: float | None = None,
) -> Callable[[Answer], bool]:
    """A filter of answers: by replica, kind, status and how late the request was sent."""

    def matches(answer: Answer) -> bool:
        return (
            replica in (None, answer.replica)
            and kind in (None, answer.kind)
            and status in (None, answer.status)
            and (sent_after is None or answer.sent > sent_after)
        )

    return matches
