"""HTTP load on loopback that costs almost no CPU: asyncio streams, HTTP/1.1 keep-alive.

No client library in the hot path: a request is one prepared byte string written to a kept-open
connection, and an answer is its status line, its headers and a Content-Length (or chunked) body.
Two kinds of load, as inference servers are measured:
- closed loop: N clients, each sending its next request when the last is answered, for a time;
- open loop: requests sent at Poisson arrival times at a set rate, however many are unanswered.
Latency is from writing the request to reading the answer's last byte.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlparse

# The most connections an open-loop run opens; an arrival beyond it is an error, not a wait.
MAX_CONNECTIONS = 1024
# Connections opened before an open-loop run starts, so the first arrivals find one ready.
WARM_CONNECTIONS = 32
# An idle connection older than this is closed, not reused: servers close theirs after a few
# seconds (uvicorn: 5 s), and a request written to a closed one is lost.
IDLE_SECONDS = 2.0


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)  # seconds, answered 200 only
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0  # from the first request sent to the last answer
    sent_at: list[float] = field(default_factory=list)  # seconds from the start, open loop only
    cpu_seconds: float = 0.0  # the generator's own CPU time during the load

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


class HTTPError(Exception):
    """An answer that is not HTTP/1.1 as this client reads it."""


class Connection:
    """One kept-open HTTP/1.1 connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.used_at = time.monotonic()

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(*await asyncio.open_connection(host, port))

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send one prepared request; its status and body."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = dict(
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(":") for line in header_lines if line)
        )
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = await self.chunked()
        else:
            raise HTTPError(f"an answer with neither Content-Length nor chunks: {status_line}")
        self.used_at = time.monotonic()
        return status, body

    async def chunked(self) -> bytes:
        parts = []
        while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)
        await self.reader.readuntil(b"\r\n")  # no trailers are sent by the servers measured
        return b"".join(parts)

    def close(self) -> None:
        self.writer.close()


def prepare(base: str, path: str, body: dict) -> bytes:
    """The bytes of one POST with a JSON body, ready to write as they are."""
    payload = json.dumps(body, separators=(",", ":")).encode()
    host = urlparse(base).netloc
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode("latin-1") + payload


def address(base: str) -> tuple[str, int]:
    parsed = urlparse(base)
    return parsed.hostname or "127.0.0.1", parsed.port or 80


async def timed(connection: Connection, request: bytes, load: Load) -> bool:
    """One request; its latency or its error noted in `load`. False when the connection broke."""
    started = time.perf_counter()
    try:
        status, body = await connection.exchange(request)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, HTTPError) as error:
        load.errors.append(f"{type(error).__name__}: {error}")
        return False
    if status == 200:
        load.latencies.append(time.perf_counter() - started)
    else:
        load.errors.append(f"{status}: {body[:200].decode(errors='replace')}")
    return True


async def closed_loop(base: str, requests: Sequence[bytes], clients: int, seconds: float) -> Load:
    """`clients` connections, each sending the next request when answered, for `seconds`."""
    load, pending = Load(), itertools.cycle(requests)
    connections = [await Connection.open(*address(base)) for _ in range(clients)]
    started, cpu = time.perf_counter(), time.process_time()
    deadline = started + seconds

    async def client(connection: Connection) -> None:
        while time.perf_counter() < deadline:
            if not await timed(connection, next(pending), load):
                connection.close()
                connection = await Connection.open(*address(base))
        connection.close()

    await asyncio.gather(*(client(connection) for connection in connections))
    load.seconds, load.cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    return load


def arrivals(rate: float, seconds: float, seed: int = 5) -> list[float]:
    """Poisson arrival times in [0, seconds): exponential gaps with mean 1 / rate."""
    rng, times, now = random.Random(seed), [], 0.0
    while (now := now + rng.expovariate(rate)) < seconds:
        times.append(now)
    return times


async def open_loop(
    base: str,
    requests: Sequence[bytes],
    rate: float,
    seconds: float,
    idle_for: float = IDLE_SECONDS,
) -> Load:
    """Requests at Poisson arrivals, `rate` per second for `seconds`, each on an idle connection."""
    load, pending, host = Load(), itertools.cycle(requests), address(base)
    idle = [await Connection.open(*host) for _ in range(WARM_CONNECTIONS)]
    opened = len(idle)

    def fresh() -> Connection | None:
        nonlocal opened
        while idle:
            connection = idle.pop()  # the last answered first: the least likely to be closed
            if time.monotonic() - connection.used_at < idle_for:
                return connection
            connection.close()
            opened -= 1
        return None

    async def one(request: bytes) -> None:
        nonlocal opened
        connection = fresh()
        if connection is None:
            if opened >= MAX_CONNECTIONS:
                load.errors.append(f"over {MAX_CONNECTIONS} requests unanswered at once")
                return
            opened += 1
            connection = await Connection.open(*host)
        if await timed(connection, request, load):
            idle.append(connection)
        else:
            connection.close()
            opened -= 1

    started, cpu = time.perf_counter(), time.process_time()
    tasks = []
    for at in arrivals(rate, seconds):
        await asyncio.sleep(max(0.0, started + at - time.perf_counter()))
        load.sent_at.append(time.perf_counter() - started)
        tasks.append(asyncio.ensure_future(one(next(pending))))
    await asyncio.gather(*tasks)
    load.seconds, load.cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    for connection in idle:
        connection.close()
    return load


def run_closed(base: str, path: str, bodies: Sequence[dict], clients: int, seconds: float) -> Load:
    requests = [prepare(base, path, body) for body in bodies]
    return asyncio.run(closed_loop(base, requests, clients, seconds))


def run_open(
    base: str,
    path: str,
    bodies: Sequence[dict],
    rate: float,
    seconds: float,
    idle_for: float = IDLE_SECONDS,
) -> Load:
    requests = [prepare(base, path, body) for body in bodies]
    return asyncio.run(open_loop(base, requests, rate, seconds, idle_for))


def run_each(base: str, path: str, bodies: Sequence[dict]) -> Load:
    """Every body once, one after another on one connection (an ingest, or unloaded latency)."""

    async def each() -> Load:
        load, connection = Load(), await Connection.open(*address(base))
        started, cpu = time.perf_counter(), time.process_time()
        for body in bodies:
            await timed(connection, prepare(base, path, body), load)
        load.seconds, load.cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
        connection.close()
        return load

    return asyncio.run(each())


def query_bodies(texts: Sequence[str], total: int, k: int = 5) -> list[dict]:
    """`total` query bodies, cycling through `texts`."""
    return [{"text": text, "k": k} for text in itertools.islice(itertools.cycle(texts), total)]


def cycled(items: Sequence[str], total: int) -> Iterator[str]:
    return itertools.islice(itertools.cycle(items), total)
