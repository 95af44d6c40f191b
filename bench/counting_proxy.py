"""A loopback HTTP proxy that counts every byte a build downloads, and can throttle it.

Builds get it through Docker's predefined `HTTP_PROXY`/`HTTPS_PROXY` build args, which pip and
uv honour and which never enter the image's history. It tunnels `CONNECT` only to the hosts it is
given (PyPI) and forwards plain `http://` requests only to loopback (the local CPU index and conda
channel), so a build can reach nothing else through it. The standard library has no proxy
server, and the counting is the point, so it is written here.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

LOOPBACK = ("127.0.0.1", "localhost", "::1")
CHUNK = 64 * 1024
BUSY_TICK = 0.1  # seconds: the resolution at which download time is measured


@dataclass
class Traffic:
    """Bytes through the proxy per host, and the time during which bytes were flowing down."""

    down: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    up: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    refused: list[str] = field(default_factory=list)
    busy_ticks: set[int] = field(default_factory=set)

    def add(self, host: str, nbytes: int, *, downstream: bool, now: float) -> None:
        (self.down if downstream else self.up)[host] += nbytes
        if downstream:
            self.busy_ticks.add(math.floor(now / BUSY_TICK))

    @property
    def bytes_down(self) -> int:
        return sum(self.down.values())

    @property
    def bytes_up(self) -> int:
        return sum(self.up.values())

    @property
    def busy_seconds(self) -> float:
        """Wall time in which some download was moving bytes, to BUSY_TICK."""
        return len(self.busy_ticks) * BUSY_TICK


class TokenBucket:
    """Shared downstream rate limit across all connections: a link of `rate` bytes per second."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._next_free = time.monotonic()
        self._lock = threading.Lock()

    def delay_for(self, nbytes: int) -> float:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_free)
            self._next_free = start + nbytes / self.rate
            return self._next_free - now


def parse_request_head(head: bytes) -> tuple[str, str, list[tuple[str, str]]]:
    """(method, target, headers) of an HTTP/1.x request head; ValueError when malformed."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1 request line: {lines[0]!r}")
    headers = []
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError(f"malformed header line: {line!r}")
            headers.append((name.strip(), value.strip()))
    return parts[0], parts[1], headers


def split_authority(authority: str, default_port: int) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port)."""
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    host, sep, port = authority.rpartition(":")
    if not sep:
        return authority, default_port
    return host, int(port)


class CountingProxy:
    """`with CountingProxy({"pypi.org:443", ...}) as proxy:` -> proxy.url, proxy.traffic.

    `rate` (bytes per second) throttles all downloads together, as one link would.
    """

    def __init__(self, tunnel_to: set[str], *, rate: float | None = None) -> None:
        self.tunnel_to = set(tunnel_to)  # "host:port" authorities that CONNECT may reach
        self.bucket = TokenBucket(rate) if rate else None
        self.traffic = Traffic()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy serves only inside `with`")
        return self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> Traffic:
        """Start counting afresh; return what was counted so far."""
        counted, self.traffic = self.traffic, Traffic()
        return counted

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        start = asyncio.start_server(self._serve, "127.0.0.1", 0, limit=CHUNK)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result()
        return self

    def __exit__(self, *exc) -> None:
        server = self._server
        assert server is not None  # __enter__ set it

        async def close() -> None:
            server.close()
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    # ---------------------------------------------------------------------------- serving

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            head = await client_r.readuntil(b"\r\n\r\n")
            method, target, headers = parse_request_head(head[:-4])
            if method == "CONNECT":
                await self._tunnel(target, client_r, client_w)
            else:
                await self._forward(method, target, headers, client_r, client_w)
        except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            client_w.close()

    async def _refuse(self, writer: asyncio.StreamWriter, target: str) -> None:
        self.traffic.refused.append(target)
        writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()

    async def _tunnel(self, authority: str, client_r, client_w) -> None:
        host, port = split_authority(authority, 443)
        if f"{host}:{port}" not in self.tunnel_to:
            await self._refuse(client_w, authority)
            return
        server_r, server_w = await asyncio.open_connection(host, port, limit=CHUNK)
        client_w.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await client_w.drain()
        await self._pipe_both(host, client_r, client_w, server_r, server_w)

    async def _forward(self, method: str, target: str, headers, client_r, client_w) -> None:
        """A plain-HTTP request in absolute form, to loopback only, one request per connection."""
        scheme, _, rest = target.partition("://")
        authority, slash, path = rest.partition("/")
        host, port = split_authority(authority, 80)
        if scheme != "http" or host not in LOOPBACK:
            await self._refuse(client_w, target)
            return
        kept = [
            (k, v)
            for k, v in headers
            if k.lower() not in ("connection", "proxy-connection", "keep-alive")
        ]
        head = f"{method} {slash}{path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in kept)
        head += "Connection: close\r\n\r\n"
        server_r, server_w = await asyncio.open_connection(host, port, limit=CHUNK)
        server_w.write(head.encode("latin-1"))
        self.traffic.add(f"{host}:{port}", len(head), downstream=False, now=time.monotonic())
        await self._pipe_both(f"{host}:{port}", client_r, client_w, server_r, server_w)

    async def _pipe_both(self, host: str, client_r, client_w, server_r, server_w) -> None:
        up = asyncio.ensure_future(self._pipe(host, client_r, server_w, downstream=False))
        down = asyncio.ensure_future(self._pipe(host, server_r, client_w, downstream=True))
        try:
            _, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            # One side hung up: the other normally follows at once; never wait on it forever.
            await asyncio.wait(pending, timeout=30)
        finally:
            for task in (up, down):
                task.cancel()
            server_w.close()

    async def _pipe(self, host: str, reader, writer, *, downstream: bool) -> None:
        try:
            while chunk := await reader.read(CHUNK):
                if downstream and self.bucket:
                    await asyncio.sleep(self.bucket.delay_for(len(chunk)))
                self.traffic.add(host, len(chunk), downstream=downstream, now=time.monotonic())
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, asyncio.CancelledError):
            pass
