"""A bounded HTTP load on loopback: N concurrent clients share a fixed number of requests.

One asyncio process with httpx; it runs on the same CPUs as the service it loads.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx


@dataclass
class Load:
    latencies: list[float] = field(default_factory=list)  # seconds, answered 200 only
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the whole load

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


def client(base: str, connections: int) -> httpx.AsyncClient:
    # No environment proxies: the traffic stays on loopback.
    return httpx.AsyncClient(
        base_url=base,
        trust_env=False,
        timeout=httpx.Timeout(300.0),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


async def post_all(base: str, path: str, bodies: Sequence[dict], clients: int) -> Load:
    """POST every body once, `clients` at a time, each client taking the next unsent one."""
    load = Load()
    pending = iter(bodies)
    async with client(base, clients) as http:

        async def worker() -> None:
            for body in pending:  # one shared iterator: each body is taken once
                started = time.perf_counter()
                try:
                    response = await http.post(path, json=body)
                except httpx.HTTPError as error:
                    load.errors.append(f"{type(error).__name__}: {error}")
                    continue
                if response.status_code == 200:
                    load.latencies.append(time.perf_counter() - started)
                else:
                    load.errors.append(f"{response.status_code}: {response.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        load.seconds = time.perf_counter() - started
    return load


def run(base: str, path: str, bodies: Sequence[dict], clients: int) -> Load:
    return asyncio.run(post_all(base, path, bodies, clients))


def query_bodies(texts: Sequence[str], total: int, k: int = 5) -> list[dict]:
    """`total` query bodies, cycling through `texts`."""
    return [{"text": text, "k": k} for text in itertools.islice(itertools.cycle(texts), total)]
