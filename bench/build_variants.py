"""The variants built: the seed's "before", the uv guide's peer, the generated defaults, and the
seed guide's "after" (locked only), with the python image's stand-in they build on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from urllib.parse import urlparse

from bench import footprint
from bench.build_measure import CACHE, Side
from bench.footprint import output_to  # fds 1 and 2 into a log, as the hook writes
from harness import docker as engine
from harness.compat import tomllib
from harness.images import base_images as standins
from harness.locks import uv_lock
from harness.render import render

BEFORE_TAG, UV_GUIDE_TAG = "mlct-bench/before:latest", "mlct-bench/uv-guide:latest"
GENERATED_TAGS = {
    "conda": "mlct-bench/generated-conda:latest",
    "uv": "mlct-bench/generated-uv:latest",
}
# A local stand-in for the official python image, under its own name so it never hides one.
PYTHON_STANDIN = "mlct-stand-in/python:3.11-slim"
SEED_INSTALL = "pip install --no-cache-dir torch sentence-transformers chromadb"
GENERATED_ANSWERS = {
    "project_name": "Bench Service",
    "python_version": "3.11",
    "lock_platforms": ["linux/amd64"],
}


PYTHON_STANDIN_DOCKERFILE = """\
# STAND-IN for the official python image (ml-container-template's build benchmark): Debian
# bookworm's Python 3.11 in a venv with pip from PyPI; no registry is reachable here.
ARG ROOTFS
FROM ${ROOTFS}
# The host's CA bundle: this machine's egress re-signs TLS, so pip must trust its CA.
COPY host-ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY pip-*.whl /tmp/pip/
RUN python3 -m venv --without-pip /opt/venv \\
    && wheel="$(echo /tmp/pip/pip-*.whl)" \\
    && /opt/venv/bin/python "$wheel/pip" install --no-index --no-cache-dir --quiet "$wheel" \\
    && rm -rf /tmp/pip
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \\
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
"""


def pip_wheel() -> Path:
    """pip's newest wheel from PyPI, cached, for the python stand-in."""
    folder = CACHE / "pip"
    if not list(folder.glob("pip-*.whl")):
        subprocess.run(
            [
                *standins.pip_command(),
                "download",
                "pip",
                "--no-deps",
                "--only-binary=:all:",
                "--dest",
                str(folder),
                "--quiet",
            ],
            check=True,
            capture_output=True,
        )
    return sorted(folder.glob("pip-*.whl"))[-1]


def python_standin() -> str:
    """The official python image's stand-in, on the image tests' Debian rootfs (Python 3.11)."""
    standins.ensure_rootfs()
    wheel = pip_wheel()
    inputs = standins.digest(
        PYTHON_STANDIN_DOCKERFILE,
        standins.rootfs_key(),
        wheel.name,
        standins.HOST_CA_BUNDLE.read_bytes(),
    )
    if engine.image_label(PYTHON_STANDIN, standins.INPUTS_LABEL) == inputs:
        return PYTHON_STANDIN
    with tempfile.TemporaryDirectory() as work:
        context = Path(work)
        (context / "Dockerfile").write_text(PYTHON_STANDIN_DOCKERFILE, encoding="utf-8")
        shutil.copyfile(standins.HOST_CA_BUNDLE, context / "host-ca-certificates.crt")
        shutil.copyfile(wheel, context / wheel.name)
        result = engine.build(
            context,
            PYTHON_STANDIN,
            build_args={"ROOTFS": standins.ROOTFS_TAG},
            labels={standins.INPUTS_LABEL: inputs},
            network="none",
        )
    if result.returncode:
        sys.exit(f"building the python stand-in failed:\n{result.log[-3000:]}")
    return PYTHON_STANDIN


def before_side(folder: Path) -> Side:
    """The seed's "before": one stage on a python image, the three libraries from PyPI with pip.

    The install comes before the source, so a source edit reuses it: the baseline at its best.
    """
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text(
        f"FROM {python_standin()}\nWORKDIR /app\nRUN {SEED_INSTALL}\n"
        'COPY app/ app/\nCMD ["python", "-m", "app"]\n',
        encoding="utf-8",
    )
    source = folder / "app" / "__main__.py"
    source.parent.mkdir()
    source.write_text("import torch\n\nprint(torch.__version__)\n", encoding="utf-8")
    return Side("before", '"before"', BEFORE_TAG, folder, source, PYTHON_STANDIN)


def explicit_lock_bytes(lock_text: str, channel_url: str, channel: Path) -> int:
    """Bytes of the packages an @EXPLICIT lock names from a channel served out of `channel`."""
    urls = [
        line.split("#", 1)[0]
        for line in lock_text.splitlines()
        if line.startswith(channel_url.rstrip("/") + "/")
    ]
    return sum((channel / url[len(channel_url.rstrip("/")) + 1 :]).stat().st_size for url in urls)


def generated_side(
    folder: Path, installer: str, index_url: str, channel_url: str, channel: Path
) -> Side:
    """The template's defaults from this worktree at HEAD, locked by the hook as a user's are."""
    answers = {
        **GENERATED_ANSWERS,
        "torch_installer": installer,
        "torch_index_url": index_url,
        "conda_channel": channel_url,
    }
    log = folder.with_name(f"render-{installer}.log")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), output_to(log):
        warnings.simplefilter("ignore")  # DirtyLocalWarning: uncommitted edits are meant
        os.environ["ML_TEMPLATE_STRICT"] = "1"  # a failed lock fails the render
        project = render(folder, answers, tasks=True)
    missing = [name for name in ("uv.lock", "conda-linux-64.lock") if not (project / name).exists()]
    if missing:
        sys.exit(f"the lock hook wrote no {', '.join(missing)}; see {log}")
    package = next(path for path in (project / "src").iterdir() if path.is_dir())
    lock = (project / "conda-linux-64.lock").read_text(encoding="utf-8")
    return Side(
        f"generated_{installer}",
        f"generated, {installer}",
        GENERATED_TAGS[installer],
        project,
        package / "__init__.py",
        standins.names().micromamba,
        ("python", "-m", package.name, "doctor"),
        urlparse(channel_url).netloc,
        explicit_lock_bytes(lock, channel_url, channel),
    )


def dependencies(project: Path) -> list[str]:
    with open(project / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["project"]["dependencies"]


AMD64 = "sys_platform == 'linux' and platform_machine == 'x86_64'"


def uv_guide_pyproject(deps: list[str], index_url: str, build_requires: list[str]) -> str:
    """uv's PyTorch guide: an explicit CPU index, torch routed to it, for the image's platform."""
    listed = "".join(f'    "{dep}",\n' for dep in deps)
    return (
        '[project]\nname = "peer-app"\nversion = "0.1.0"\nrequires-python = "==3.11.*"\n'
        f"dependencies = [\n{listed}]\n\n"
        f"[build-system]\nrequires = {json.dumps(build_requires)}\n"
        'build-backend = "uv_build"\n\n'
        f'[tool.uv]\nenvironments = ["{AMD64}"]\n\n'
        f'[[tool.uv.index]]\nname = "pytorch-cpu"\nurl = "{index_url}"\nexplicit = true\n\n'
        '[tool.uv.sources]\ntorch = { index = "pytorch-cpu" }\n'
    )


def uv_guide_dockerfile(python_image: str, uv_image: str) -> str:
    """uv's Docker guide, multi-stage: its example's steps, on the same bases as the others.

    One change from that example: bytecode compilation follows the template's default (off,
    `--build-arg UV_COMPILE_BYTECODE=1` turns it on), so both images hold the same files.
    """
    return f"""\
FROM {python_image} AS builder
COPY --from={uv_image} /uv /uvx /bin/
ARG UV_COMPILE_BYTECODE=0
ENV UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=0
WORKDIR /app
RUN --mount=type=cache,target=/root/.cache/uv \\
    --mount=type=bind,source=uv.lock,target=uv.lock \\
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \\
    uv sync --locked --no-install-project --no-dev
COPY . /app
RUN --mount=type=cache,target=/root/.cache/uv \\
    uv sync --locked --no-dev --no-editable

FROM {python_image}
RUN groupadd --system --gid 999 nonroot \\
    && useradd --system --gid 999 --uid 999 --create-home nonroot
COPY --from=builder --chown=nonroot:nonroot /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:$PATH"
USER nonroot
WORKDIR /app
CMD ["python", "-m", "peer_app"]
"""


def uv_guide_side(folder: Path, generated: Path, index_url: str) -> Side:
    """The uv-guide peer: the generated defaults' dependencies, locked by uv on this host."""
    with open(generated / "pyproject.toml", "rb") as handle:
        build_requires = tomllib.load(handle)["build-system"]["requires"]
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        uv_guide_pyproject(dependencies(generated), index_url, build_requires), encoding="utf-8"
    )
    (folder / "README.md").write_text("uv guide peer\n", encoding="utf-8")
    package = folder / "src" / "peer_app"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "__main__.py").write_text(
        "import torch\n\nprint(torch.__version__)\n", encoding="utf-8"
    )
    (folder / ".dockerignore").write_text(".venv\n", encoding="utf-8")
    (folder / "Dockerfile").write_text(
        uv_guide_dockerfile(python_standin(), standins.names().uv),
        encoding="utf-8",
    )
    locked = uv_lock(folder)
    if locked.returncode:
        sys.exit(f"uv lock of the uv-guide peer failed:\n{locked.stdout}{locked.stderr}")
    return Side(
        "uv_guide", "uv guide", UV_GUIDE_TAG, folder, package / "__init__.py", PYTHON_STANDIN
    )


def guide_after(folder: Path, deps: list[str]) -> dict:
    """The seed guide's "after" as written: its [tool.uv] snippet, verbatim, on the same deps."""
    project = footprint.throwaway(folder, deps, footprint.GUIDE_UV)
    result = uv_lock(project)
    output = result.stdout + result.stderr
    if result.returncode:
        return {"locked": False, "message": footprint.uv_message(output)}
    return {"locked": True, "message": "uv locked it"}
