"""A rendered pod's container run in Docker under the pod's settings, probed and stopped as
the kubelet does: the startup probe until it passes or its budget is spent, then readiness and
liveness, and on deletion the preStop pause, SIGTERM, and the grace period before a kill."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from harness import docker, pod_docker
from harness.service_client import free_port, logs


def probe(port: int, spec: dict) -> bool:
    """One HTTP probe: success is a status from 200 to 399 within its timeout."""
    url = f"http://127.0.0.1:{port}{spec['httpGet']['path']}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=spec.get("timeoutSeconds", 1)) as response:
            return 200 <= response.status < 400
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Pod:
    """The pod's one container, started on a free loopback port (the host's network is shared:
    the port and the loopback address are the only settings not the pod's own)."""

    image: str
    pod: dict
    container: dict
    docs: list[dict]
    work: Path
    claims: dict[str, str] = field(default_factory=dict)
    prefix: str = ""
    port: int = 0
    id: str = ""
    started: float = 0.0

    def start(self) -> Pod:
        self.port = free_port()
        env = pod_docker.environment(self.container, self.docs)
        env |= {f"{self.prefix}HOST": "127.0.0.1", f"{self.prefix}PORT": str(self.port)}
        options = pod_docker.run_options(
            self.pod, self.container, self.docs, self.work, self.claims
        )
        self.started = time.monotonic()
        self.id = docker.start(
            self.image, *self.container["args"], network="host", env=env, options=tuple(options)
        )
        return self

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "--force", self.id], capture_output=True, check=False)

    def logs(self) -> str:
        return logs(self.id)

    def started_within_budget(self) -> float:
        """Seconds from start to the startup probe's first success; fails past its budget."""
        spec = self.container["startupProbe"]
        period, threshold = spec.get("periodSeconds", 10), spec.get("failureThreshold", 3)
        for _ in range(threshold):
            tried = time.monotonic()
            if probe(self.port, spec):
                return time.monotonic() - self.started
            state = docker.container_state(self.id)
            assert state == "running", f"the container is {state}:\n{self.logs()}"
            time.sleep(max(0.0, period - (time.monotonic() - tried)))
        raise AssertionError(f"startup probe failed {threshold} times:\n{self.logs()}")

    def answers(self, kind: str) -> bool:
        return probe(self.port, self.container[kind])

    def delete(self) -> tuple[int, float]:
        """preStop, SIGTERM, then wait the rest of the grace period: (exit status, seconds)."""
        grace = self.pod.get("terminationGracePeriodSeconds", 30)
        pause = self.container.get("lifecycle", {}).get("preStop", {}).get("sleep", {})
        time.sleep(pause.get("seconds", 0))
        stopping = time.monotonic()
        subprocess.run(
            ["docker", "kill", "--signal", "TERM", self.id], check=True, capture_output=True
        )
        left = grace - pause.get("seconds", 0)
        try:
            waited = subprocess.run(
                ["docker", "wait", self.id], capture_output=True, text=True, timeout=left
            )
        except subprocess.TimeoutExpired:
            return 137, time.monotonic() - stopping
        return int(waited.stdout.strip()), time.monotonic() - stopping
