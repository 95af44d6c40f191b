"""What the serving benchmark loads: the service and its peers, each started on the service's CPUs.

- the service: the baked image, in a container with `--cpuset-cpus`;
- the naive tutorial service (`bench/naive_service.py`): the same image, the same way;
- infinity-emb: a venv of its own under the cache, against the local CPU torch wheel, started
  with its CPU affinity set to the service's CPUs.
Each is driven through an embeddings endpoint: the service's `/v1/embeddings` when its OpenAPI
document has one, its `/embed` otherwise; OpenAI's `/embeddings` for the peers.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import serve_figures
from bench.serve_images import CACHE, MODEL_IN_IMAGE, MODEL_TAG, say
from harness import docker as engine
from harness.mirror import real_torch_wheel
from harness.service_client import free_port

BENCH_DIR = Path(__file__).resolve().parent
MODEL_NAME = "all-MiniLM-L6-v2"
# infinity-emb's release this bench was written against, and its engine per backend.
INFINITY = "infinity-emb[server,{extra}]==0.0.78"
BACKENDS = {"torch": {"infinity_extra": "torch", "infinity_engine": "torch"}}
# Packages a CPU-only install must not hold: CUDA's wheels and the GPU compiler.
GPU_PREFIXES = ("nvidia-", "cuda-", "triton")


@dataclass(frozen=True)
class Endpoint:
    """Where embeddings are asked for, and in which shape: OpenAI's, or the service's own."""

    path: str
    openai: bool
    model: str = MODEL_NAME

    def body(self, text: str) -> dict:
        return {"input": [text], "model": self.model} if self.openai else {"texts": [text]}


def service_endpoint(openapi: dict) -> Endpoint:
    """The service's OpenAI-compatible endpoint when it has one, else its own /embed."""
    paths = openapi.get("paths", {})
    if "/v1/embeddings" in paths:
        return Endpoint("/v1/embeddings", openai=True)
    if "/embed" in paths:
        return Endpoint("/embed", openai=False)
    raise ValueError(f"no embeddings endpoint among {sorted(paths)}")


def cpu_list(text: str) -> frozenset[int]:
    """CPUs as `taskset -c` and `docker run --cpuset-cpus` write them: "0", "2-3", "0,4-7"."""
    cpus: set[int] = set()
    for part in text.split(","):
        if not re.fullmatch(r"\d+(-\d+)?", part.strip()):
            raise ValueError(f"not a CPU list: {text!r} (write it as 0 or 0-3 or 0,2)")
        first, _, last = part.strip().partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return frozenset(cpus)


def cpu_text(cpus: frozenset[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def get_json(url: str, timeout: float = 5) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def wait_ready(url: str, alive: Callable[[], bool], logs: Callable[[], str], timeout=600) -> float:
    """Seconds until `url` answers 200; exits with the logs if the process stops first."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (OSError, urllib.error.HTTPError):  # not listening yet, or 503 while loading
            pass
        if not alive():
            sys.exit(f"{url} stopped before it was ready:\n{logs()}")
        time.sleep(0.05)
    sys.exit(f"{url} was not ready within {timeout} s:\n{logs()}")


@dataclass
class Target:
    """One server under load: where it answers, how to stop it, what it logged."""

    name: str
    base: str
    endpoint: Endpoint
    stop: Callable[[], None]
    logs: Callable[[], str]
    container: str | None = None
    ready_after: float = 0.0
    notes: dict = field(default_factory=dict)


def container_logs(container: str) -> str:
    result = subprocess.run(
        ["docker", "logs", container], capture_output=True, text=True, check=False
    )
    return result.stdout + result.stderr


def remover(container: str) -> Callable[[], None]:
    def remove() -> None:
        subprocess.run(["docker", "rm", "--force", container], capture_output=True, check=False)

    return remove


def start_container(name: str, cpus: frozenset[int], *args: str, **options) -> Target:
    """A container of the baked image (or `image=`) on the host's loopback, pinned to `cpus`."""
    port = free_port()
    env = {key: value.format(port=port) for key, value in options.pop("env").items()}
    started = time.monotonic()
    container = engine.start(
        options.pop("image", MODEL_TAG),
        *args,
        network="host",
        env=env,
        volumes=options.pop("volumes", ()),
        options=("--cpuset-cpus", cpu_text(cpus)),
    )
    base = f"http://127.0.0.1:{port}"

    def logs() -> str:
        return container_logs(container)[-3000:]

    try:
        wait_ready(
            base + options.pop("ready"),
            lambda: engine.container_state(container) == "running",
            logs,
        )
    finally:  # a start that fails leaves no container behind
        if engine.container_state(container) != "running":
            remover(container)()
    ready_after = time.monotonic() - started
    endpoint = options.pop("endpoint", None) or service_endpoint(get_json(base + "/openapi.json"))
    return Target(name, base, endpoint, remover(container), logs, container, ready_after)


def start_service(prefix: str, cpus: frozenset[int]) -> Target:
    env = {f"{prefix}HOST": "127.0.0.1", f"{prefix}PORT": "{port}"}
    # A busy machine can take over the default 60 s to load the model on one CPU.
    env[f"{prefix}MODEL_LOAD_TIMEOUT"] = "600"
    # The name /v1/embeddings answers to, where the service has one: the peers' name.
    env[f"{prefix}SERVED_MODEL_NAME"] = MODEL_NAME
    return start_container("service", cpus, env=env, ready="/readyz")


def start_naive(cpus: frozenset[int]) -> Target:
    env = {"NAIVE_MODEL": MODEL_IN_IMAGE, "NAIVE_PORT": "{port}", "HF_HUB_OFFLINE": "1"}
    return start_container(
        "naive",
        cpus,
        "python",
        "/bench/naive_service.py",
        env=env,
        volumes=(f"{BENCH_DIR}:/bench:ro",),
        ready="/health",
        endpoint=Endpoint("/embeddings", openai=True),
    )


def infinity_venv(backend: str) -> Path:
    """infinity-emb installed once into a venv of its own, with the local CPU torch wheel."""
    venv = CACHE / f"infinity-{backend}"
    program = venv / "bin" / "infinity_emb"
    if program.exists():
        return venv
    wheel = real_torch_wheel()
    if wheel is None:
        raise RuntimeError("no CPU torch wheel in pip's find-links: infinity would pull CUDA's")
    requirement = INFINITY.format(extra=BACKENDS[backend]["infinity_extra"])
    say(f"installing {requirement} with {wheel.name} into {venv} ...")
    subprocess.run(["uv", "venv", "--quiet", "--python", "3.11", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    install = ["uv", "pip", "install", "--quiet", "--python", python, str(wheel), requirement]
    result = subprocess.run(install, capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"installing {requirement} failed: {result.stderr.strip()[-500:]}")
    listed = subprocess.run(
        ["uv", "pip", "list", "--python", python], capture_output=True, text=True, check=True
    )
    gpu = [line.split()[0] for line in listed.stdout.splitlines() if line.startswith(GPU_PREFIXES)]
    if gpu or not program.exists():
        subprocess.run(["rm", "-rf", str(venv)], check=False)
        raise RuntimeError(f"the install held GPU packages {gpu} or no infinity_emb")
    return venv


def start_infinity(model: Path, cpus: frozenset[int], backend: str) -> Target:
    venv, port = infinity_venv(backend), free_port()
    log = CACHE / f"infinity-{backend}.log"  # the last run's, kept for reading
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1", "INFINITY_PORT": str(port)}
    command = [str(venv / "bin" / "infinity_emb"), "v2", "--model-id", str(model)]
    command += ["--served-model-name", MODEL_NAME, "--engine", BACKENDS[backend]["infinity_engine"]]
    command += ["--device", "cpu", "--host", "127.0.0.1", "--log-level", "warning"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.sched_setaffinity(0, cpus),  # noqa: PLW1509 (no threads yet)
        )
    base = f"http://127.0.0.1:{port}"

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()

    def logs() -> str:
        return log.read_text(errors="replace")[-3000:]

    ready = wait_ready(base + "/health", lambda: process.poll() is None, logs)
    return Target("infinity", base, Endpoint("/embeddings", openai=True), stop, logs, None, ready)


def access_log_latencies(container: str, path: str) -> list[float]:
    """Seconds per answered request on `path`, from the service's JSON access lines."""
    seconds = []
    for line in container_logs(container).splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("path") == path and entry.get("status") == 200 and "latency_ms" in entry:
            seconds.append(entry["latency_ms"] / 1000)
    return seconds


def peak_rss(container: str) -> int | None:
    """The largest VmHWM (peak resident set) of the container's processes."""
    full = engine.container_state(container, "{{ .Id }}")
    for folder in (
        Path(f"/sys/fs/cgroup/system.slice/docker-{full}.scope"),
        Path(f"/sys/fs/cgroup/docker/{full}"),
        Path(f"/sys/fs/cgroup/memory/docker/{full}"),
    ):
        if (folder / "cgroup.procs").is_file():
            peaks = []
            for pid in (folder / "cgroup.procs").read_text().split():
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:  # the process ended
                    continue
                peaks.append(serve_figures.status_kib(status, "VmHWM") or 0)
            return max(peaks, default=None)
    return None
