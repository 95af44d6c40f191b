"""The floor: the uv guide's locked set installed on this host, no image; its bytes and time."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

from bench.build_figures import floor_figures
from bench.build_measure import image_bytes
from bench.build_variants import PYTHON_STANDIN


def tree_bytes(folder: Path) -> int:
    """Bytes of the regular files under `folder` (links counted once, symlinks not at all)."""
    seen: set[int] = set()
    total = 0
    for path in folder.rglob("*"):
        info = path.lstat()
        if stat.S_ISREG(info.st_mode) and info.st_ino not in seen:
            seen.add(info.st_ino)
            total += info.st_size
    return total


def floor_install(project: Path, venv: Path, cache: Path, proxy_url: str) -> float:
    """`uv sync` of the locked set (no project, no dev) into `venv`; its wall time."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in ("no_proxy", "http_proxy", "https_proxy", "all_proxy")
    }
    env.update(
        HTTPS_PROXY=proxy_url,
        HTTP_PROXY=proxy_url,
        UV_CACHE_DIR=str(cache),
        UV_PROJECT_ENVIRONMENT=str(venv),
        UV_LINK_MODE="copy",  # as from a cache mount in a build
        UV_COMPILE_BYTECODE="0",
        UV_PYTHON_DOWNLOADS="never",
    )
    uv = shutil.which("uv") or "uv"
    started = time.monotonic()
    result = subprocess.run(
        [uv, "sync", "--locked", "--no-dev", "--no-install-project"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - started
    if result.returncode:
        sys.exit(f"the floor's install failed:\n{result.stdout}{result.stderr}")
    return seconds


def measure_floor(project: Path, work: Path, proxy, rate: float, hosts: dict[str, str]) -> dict:
    """The uv guide's locked set, installed on this host: once from an empty cache, through the
    proxy (the bytes), then again into a fresh environment from that warm cache (the time)."""
    print("floor: installing the locked set from an empty uv cache ...", file=sys.stderr)
    cache = work / "floor-cache"
    proxy.reset()
    cold = floor_install(project, work / "floor-cold", cache, proxy.url)
    traffic = proxy.reset()
    warm = floor_install(project, work / "floor-warm", cache, proxy.url)
    installed = tree_bytes(work / "floor-warm")
    print(f"floor: cold {cold:.0f} s, warm {warm:.1f} s", file=sys.stderr, flush=True)
    figures = floor_figures(
        image_bytes(PYTHON_STANDIN), installed, traffic.bytes_down, cold, warm, rate
    )
    return {
        **figures,
        "base": PYTHON_STANDIN,
        "installed_bytes": installed,
        "download_busy_seconds": traffic.busy_seconds,
        "bytes_up": traffic.bytes_up,
        "bytes_by_host": {hosts.get(host, host): count for host, count in traffic.down.items()},
        "refused": traffic.refused,
    }
