"""A local PEP 503 index standing in for the PyTorch CPU index.

download.pytorch.org is unreachable from test machines, so tests point the template's
`torch_index_url` answer at a directory laid out like a simple index. It serves the real
CPU torch wheel from pip's find-links folder (PIP_FIND_LINKS or pip's config) when one is
there, and a tiny synthetic `+cpu` wheel otherwise. Nothing built here is ever committed.

With `machines=("x86_64", "aarch64")` it serves aarch64 wheels too, for arm64 locks and images:
PyPI's aarch64 torch wheel of the same release when that is a CPU build (downloaded into the
cache), a synthetic `+cpu` one otherwise. From 2.11 on, PyPI's aarch64 wheels are CUDA 13 builds.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import html
import json
import os
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Callable
from email.parser import HeaderParser
from pathlib import Path
from urllib.parse import unquote, urlparse

from packaging.requirements import Requirement

from harness.cache import cache_root

TORCH_VERSION = "2.13.0+cpu"
WHEEL_TAG = "cp311-cp311-manylinux_2_28_x86_64"
# The same wheels for linux/arm64, and where PyPI's copy of the release is looked up.
AARCH64_WHEEL_TAG = "cp311-cp311-manylinux_2_28_aarch64"
TAGS = {"x86_64": WHEEL_TAG, "aarch64": AARCH64_WHEEL_TAG}
PYPI_SIMPLE = "https://pypi.org/simple/{name}/"
# What a linux/arm64 image's Python is, for reading a wheel's requirement markers.
AARCH64_MARKERS = {
    "platform_system": "Linux",
    "sys_platform": "linux",
    "platform_machine": "aarch64",
    "python_version": "3.11",
    "python_full_version": "3.11.2",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
}


def _folders(links: str, origin: str) -> list[tuple[Path, str]]:
    """The local folders in a whitespace-separated find-links value (paths or file:// URLs)."""
    folders = []
    for link in links.split():
        parsed = urlparse(link)
        path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(link)
        if len(parsed.scheme) <= 1 or parsed.scheme == "file":  # http links hold no folder
            folders.append((path, origin))
    return folders


def find_links_dirs() -> list[tuple[Path, str]]:
    """Folders pip looks in for wheels, each with where it was named.

    PIP_FIND_LINKS first (pip reads the environment over its config, and a run under another
    HOME sees no user config), then `pip config get global.find-links`.
    """
    found = _folders(os.environ.get("PIP_FIND_LINKS", ""), "PIP_FIND_LINKS")
    # The test venv has no pip of its own, so ask whichever pip the machine has.
    candidates = [[sys.executable, "-m", "pip"]]
    candidates += [[exe] for exe in (shutil.which("pip"), shutil.which("pip3")) if exe]
    for pip in candidates:
        try:
            result = subprocess.run(
                [*pip, "config", "get", "global.find-links"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if result.returncode == 0:
            found += _folders(result.stdout, "pip config")
            break
    first = {folder: origin for folder, origin in reversed(found)}  # where each was named first
    return [
        (folder, first[folder]) for folder in dict.fromkeys(f for f, _ in found) if folder.is_dir()
    ]


def find_torch_wheel() -> tuple[Path | None, str]:
    """The real CPU torch wheel and where it was found, or None and why the synthetic one."""
    if os.environ.get("MLCT_SYNTHETIC_TORCH") == "1":
        return None, "MLCT_SYNTHETIC_TORCH=1"
    folders = find_links_dirs()
    for folder, origin in folders:
        for wheel in sorted(folder.glob(f"torch-{TORCH_VERSION}-{WHEEL_TAG}.whl")):
            return wheel, origin
    searched = ", ".join(f"{folder} ({origin})" for folder, origin in folders)
    return None, f"no {TORCH_VERSION} {WHEEL_TAG} wheel in {searched or 'any find-links folder'}"


def real_torch_wheel() -> Path | None:
    """The real CPU torch wheel for this interpreter, if a find-links folder holds one."""
    return find_torch_wheel()[0]


def describe_torch_wheel() -> str:
    """One line for the test run's header: which torch wheel the mirror serves, and from where."""
    wheel, origin = find_torch_wheel()
    if wheel is None:
        return f"torch wheel: synthetic ({origin})"
    return f"torch wheel: real {wheel} (found through {origin})"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(
    folder: Path,
    name: str,
    version: str,
    files: dict[str, bytes],
    requires: tuple[str, ...] = (),
    tag: str = WHEEL_TAG,
) -> Path:
    """Write a minimal wheel holding `files`, with the given name, version, tag and requirements."""
    dist_info = f"{name}-{version}.dist-info"
    requirement_lines = "".join(f"Requires-Dist: {req}\n" for req in requires)
    files = {
        **files,
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            f"Requires-Python: >=3.10\n{requirement_lines}"
        ).encode(),
        f"{dist_info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: ml-container-template-tests\n"
            f"Root-Is-Purelib: false\nTag: {tag}\n"
        ).encode(),
    }
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(path, data)
        record = [_record_line(p, d) for p, d in files.items()] + [f"{dist_info}/RECORD,,"]
        archive.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel


def build_synthetic_torch(folder: Path, version: str = TORCH_VERSION, tag: str = WHEEL_TAG) -> Path:
    """A minimal importable CPU `torch`: no CUDA, same tags as the real wheel."""
    files = {
        "torch/__init__.py": (
            f'__version__ = "{version}"\nfrom torch import cuda, version\n'.encode()
        ),
        "torch/version.py": f'__version__ = "{version}"\ncuda = None\n'.encode(),
        "torch/cuda.py": b"def is_available():\n    return False\n",
    }
    requires = ("filelock", "typing-extensions>=4.10.0")
    return build_wheel(folder, "torch", version, files, requires, tag)


def build_companion(
    folder: Path, name: str, version: str, torch_version: str, tag: str = WHEEL_TAG
) -> Path:
    """A synthetic torchvision or torchaudio `+cpu` wheel tied to one torch release."""
    files = {f"{name}/__init__.py": f'__version__ = "{version}"\n'.encode()}
    return build_wheel(folder, name, version, files, (f"torch=={torch_version}",), tag)


# ----------------------------------------------------------------------------- PyPI's aarch64 torch


def cuda_requirements(wheel: Path) -> list[str]:
    """What marks a wheel as a CUDA build on linux/arm64: its CUDA requirements and version."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(
            n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1
        )
        headers = HeaderParser().parsestr(archive.read(metadata).decode())
        version_py = archive.read("torch/version.py").decode()
    found = []
    for line in headers.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        applies = requirement.marker is None or requirement.marker.evaluate(
            {**AARCH64_MARKERS, "extra": ""}
        )
        if applies and requirement.name.lower().startswith(("nvidia-", "cuda-")):
            found.append(f"{requirement.name}{requirement.specifier}")
    if "cuda: Optional[str] = None" not in version_py and "cuda = None" not in version_py:
        found.append("torch.version.cuda is set")
    return found


def pypi_cpu_torch(version: str = TORCH_VERSION) -> tuple[Path | None, str]:
    """PyPI's cp311 aarch64 torch wheel of `version`'s release if it is a CPU build, else why not.

    Downloaded once into the cache and checked against PyPI's sha256; a CUDA build is deleted
    and only the verdict kept, so it is not fetched again. Test processes share the download.
    """
    filename = f"torch-{version.split('+')[0]}-{AARCH64_WHEEL_TAG}.whl"
    folder = cache_root() / "torch-aarch64"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{filename}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        verdict = folder / f"{filename}.verdict.json"
        if not verdict.exists():
            try:
                found = _fetch_and_judge(filename, folder)
            except OSError as error:  # offline: the synthetic wheel, and try again next time
                return None, f"PyPI did not serve {filename} ({error})"
            if isinstance(found, str):
                return None, found
            verdict.write_text(json.dumps({"cuda": found}))
        cuda = json.loads(verdict.read_text())["cuda"]
    if cuda:
        return None, f"PyPI's {filename} is a CUDA build: {', '.join(cuda[:3])}"
    return folder / filename, f"PyPI's {filename}, a CPU build"


def _fetch_and_judge(filename: str, folder: Path) -> list[str] | str:
    """Download `filename` from PyPI into `folder`: its CUDA requirements (kept only if none)."""
    request = urllib.request.Request(
        PYPI_SIMPLE.format(name="torch"), headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        entry = next((f for f in json.load(response)["files"] if f["filename"] == filename), None)
    if entry is None:
        return f"PyPI has no {filename}"
    partial = folder / f"{filename}.part"
    digest = hashlib.sha256()
    with urllib.request.urlopen(entry["url"], timeout=900) as response, open(partial, "wb") as out:
        for block in iter(lambda: response.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
    if digest.hexdigest() != entry["hashes"]["sha256"]:
        partial.unlink()
        return f"{filename}: sha256 differs from PyPI's"
    cuda = cuda_requirements(partial)
    if cuda:
        partial.unlink()
    else:
        partial.replace(folder / filename)
    return cuda


def aarch64_torch(folder: Path, *, synthetic: bool | None = None) -> tuple[Path, str]:
    """The aarch64 torch the mirror serves for the catalogue's line, and where it came from."""
    real, why = (None, "synthetic=True") if synthetic else pypi_cpu_torch()
    if real is not None:
        return real, f"real: {why}"
    return build_synthetic_torch(folder, TORCH_VERSION, AARCH64_WHEEL_TAG), f"synthetic ({why})"


def project_page(wheels: list[Path], href: Callable[[Path], str]) -> str:
    """A PEP 503 project page linking each wheel (at `href(wheel)`) with its sha256 fragment."""
    links = []
    for wheel in wheels:
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        link = f"{href(wheel)}#sha256={digest}"
        links.append(f'<a href="{html.escape(link)}">{html.escape(wheel.name)}</a><br/>')
    body = "\n".join(links)
    return f"<!DOCTYPE html>\n<html><body>\n{body}\n</body></html>\n"


def write_project_page(index_root: Path, project: str, wheels: list[Path]) -> None:
    """Write `<index_root>/<project>/index.html` linking the wheels by `file://` URL."""
    page_dir = index_root / project
    page_dir.mkdir(parents=True, exist_ok=True)
    page = project_page(wheels, lambda wheel: wheel.resolve().as_uri())
    (page_dir / "index.html").write_text(page, encoding="utf-8")


# The catalogue's torch release lines: 2.13 (torch on disk) and 2.11 (torchaudio's last release).
OLDER_TORCH = "2.11.0+cpu"
COMPANIONS = {
    "torchvision": [("0.28.0+cpu", "2.13.0"), ("0.26.0+cpu", "2.11.0")],
    "torchaudio": [("2.11.0+cpu", "2.11.0")],
}


def build_mirror(
    root: Path, *, synthetic: bool | None = None, machines: tuple[str, ...] = ("x86_64",)
) -> str:
    """Create a PEP 503 index under `root` serving the torch family; return its `file://` URL.

    `synthetic=None` uses the real torch wheel when present; True forces the synthetic one.
    The older torch line, torchvision and torchaudio are always synthetic: one torch is on disk.
    `machines` adds the same set for aarch64 (see `aarch64_torch`).
    """
    wheels = root / "wheels"
    pages: dict[str, list[Path]] = {"torch": [], **{name: [] for name in COMPANIONS}}
    for machine in machines:
        tag = TAGS[machine]
        if machine == "aarch64":
            torch = aarch64_torch(wheels, synthetic=synthetic)[0]
        else:
            torch = (None if synthetic else real_torch_wheel()) or build_synthetic_torch(wheels)
        pages["torch"] += [torch, build_synthetic_torch(wheels, OLDER_TORCH, tag)]
        for name, releases in COMPANIONS.items():
            pages[name] += [build_companion(wheels, name, v, t, tag) for v, t in releases]
    index_root = root / "simple"
    for name, built in pages.items():
        write_project_page(index_root, name, built)
    return index_root.resolve().as_uri()
