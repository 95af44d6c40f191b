"""A real Chroma server (`chroma run` from the chromadb wheel) on loopback, for store tests.

`chroma_server(path, log)` starts one on a free 127.0.0.1 port, waits for its heartbeat and
yields a `ChromaServer`; its `stop()` and `start()` take it down and bring it back on the same
port and path, for outage tests. It is stopped on the way out.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.service_client import free_port

HEARTBEAT = "/api/v2/heartbeat"


def chroma_executable() -> str:
    """The `chroma` command the chromadb wheel installed beside this Python."""
    return str(Path(sys.executable).parent / "chroma")


class ChromaServer:
    """`chroma run` over `path` on a fixed loopback port, between `start()` and `stop()`."""

    def __init__(self, path: Path, log: Path, cpus: frozenset[int] | None = None) -> None:
        self.path, self.log, self.port = path, log, free_port()
        self.cpus = cpus  # where the server may run (a benchmark keeps it off the load's CPUs)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> None:
        command = [chroma_executable(), "run", "--path", str(self.path)]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        # The Python client's telemetry would try to leave loopback.
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=self._pin
            )
        self._wait_heartbeat(self._process, timeout)

    def _pin(self) -> None:
        if self.cpus is not None:
            os.sched_setaffinity(0, self.cpus)

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def _wait_heartbeat(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"chroma exited {process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + HEARTBEAT, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:  # not listening yet
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"no heartbeat from chroma within {timeout} s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@contextmanager
def chroma_server(
    path: Path, log: Path, cpus: frozenset[int] | None = None
) -> Iterator[ChromaServer]:
    server = ChromaServer(path, log, cpus)
    server.start()
    try:
        yield server
    finally:
        server.stop()
