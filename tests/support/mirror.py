"""A local PEP 503 index standing in for the PyTorch CPU index.

download.pytorch.org is unreachable from test machines, so tests point the template's
`torch_index_url` answer at a directory laid out like a simple index. It serves the real
CPU torch wheel from pip's find-links folder (PIP_FIND_LINKS or pip's config) when one is
there, and a tiny synthetic `+cpu` wheel otherwise. Nothing built here is ever committed.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

TORCH_VERSION = "2.13.0+cpu"
WHEEL_TAG = "cp311-cp311-manylinux_2_28_x86_64"


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


def build_synthetic_torch(folder: Path, version: str = TORCH_VERSION) -> Path:
    """A minimal importable CPU `torch`: no CUDA, same tags as the real wheel."""
    files = {
        "torch/__init__.py": (
            f'__version__ = "{version}"\nfrom torch import cuda, version\n'.encode()
        ),
        "torch/version.py": f'__version__ = "{version}"\ncuda = None\n'.encode(),
        "torch/cuda.py": b"def is_available():\n    return False\n",
    }
    return build_wheel(folder, "torch", version, files, ("filelock", "typing-extensions>=4.10.0"))


def build_companion(folder: Path, name: str, version: str, torch_version: str) -> Path:
    """A synthetic torchvision or torchaudio `+cpu` wheel tied to one torch release."""
    files = {f"{name}/__init__.py": f'__version__ = "{version}"\n'.encode()}
    return build_wheel(folder, name, version, files, (f"torch=={torch_version}",))


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


def build_mirror(root: Path, *, synthetic: bool | None = None) -> str:
    """Create a PEP 503 index under `root` serving the torch family; return its `file://` URL.

    `synthetic=None` uses the real torch wheel when present; True forces the synthetic one.
    The older torch line, torchvision and torchaudio are always synthetic: one torch is on disk.
    """
    wheels = root / "wheels"
    torch = None if synthetic else real_torch_wheel()
    if torch is None:
        torch = build_synthetic_torch(wheels)
    index_root = root / "simple"
    write_project_page(index_root, "torch", [torch, build_synthetic_torch(wheels, OLDER_TORCH)])
    for name, releases in COMPANIONS.items():
        built = [build_companion(wheels, name, version, torch) for version, torch in releases]
        write_project_page(index_root, name, built)
    return index_root.resolve().as_uri()
