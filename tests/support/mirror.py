"""A local PEP 503 index standing in for the PyTorch CPU index.

download.pytorch.org is unreachable from test machines, so tests point the template's
`torch_index_url` answer at a directory laid out like a simple index. It serves the real
CPU torch wheel from pip's find-links folder when one is there, and a tiny synthetic
`+cpu` wheel otherwise. Nothing built here is ever committed.
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
from pathlib import Path

TORCH_VERSION = "2.13.0+cpu"
WHEEL_TAG = "cp311-cp311-manylinux_2_28_x86_64"


def find_links_dirs() -> list[Path]:
    """Folders pip is configured to look in for wheels (`pip config get global.find-links`)."""
    # The test venv has no pip of its own, so ask whichever pip the machine has.
    candidates = [[sys.executable, "-m", "pip"]]
    candidates += [[exe] for exe in (shutil.which("pip"), shutil.which("pip3")) if exe]
    for pip in candidates:
        try:
            result = subprocess.run(
                [*pip, "config", "get", "global.find-links"],
                capture_output=True, text=True, timeout=30, check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if result.returncode == 0:
            return [Path(p) for p in result.stdout.split() if Path(p).is_dir()]
    return []


def real_torch_wheel() -> Path | None:
    """The real CPU torch wheel for this interpreter, if pip's find-links folder holds one."""
    if os.environ.get("MLCT_SYNTHETIC_TORCH") == "1":
        return None
    for folder in find_links_dirs():
        for wheel in sorted(folder.glob(f"torch-{TORCH_VERSION}-{WHEEL_TAG}.whl")):
            return wheel
    return None


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_synthetic_torch(folder: Path, version: str = TORCH_VERSION, tag: str = WHEEL_TAG) -> Path:
    """Write a minimal importable `torch` wheel: CPU build, no CUDA, same tags as the real one."""
    dist_info = f"torch-{version}.dist-info"
    files = {
        "torch/__init__.py": (
            f'__version__ = "{version}"\n'
            "from torch import cuda, version\n"
        ).encode(),
        "torch/version.py": f'__version__ = "{version}"\ncuda = None\n'.encode(),
        "torch/cuda.py": b"def is_available():\n    return False\n",
        f"{dist_info}/METADATA": (
            "Metadata-Version: 2.1\nName: torch\n"
            f"Version: {version}\nRequires-Python: >=3.10\n"
            "Requires-Dist: filelock\nRequires-Dist: typing-extensions>=4.10.0\n"
        ).encode(),
        f"{dist_info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: ml-container-template-tests\n"
            f"Root-Is-Purelib: false\nTag: {tag}\n"
        ).encode(),
    }
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"torch-{version}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        record = [_record_line(n, d) for n, d in files.items()] + [f"{dist_info}/RECORD,,"]
        archive.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel


def write_project_page(index_root: Path, project: str, wheels: list[Path]) -> None:
    """Write `<index_root>/<project>/index.html` linking each wheel with its sha256 fragment."""
    page_dir = index_root / project
    page_dir.mkdir(parents=True, exist_ok=True)
    links = []
    for wheel in wheels:
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        href = f"{wheel.resolve().as_uri()}#sha256={digest}"
        links.append(f'<a href="{html.escape(href)}">{html.escape(wheel.name)}</a><br/>')
    body = "\n".join(links)
    (page_dir / "index.html").write_text(
        f"<!DOCTYPE html>\n<html><body>\n{body}\n</body></html>\n", encoding="utf-8"
    )


def build_mirror(root: Path, *, synthetic: bool | None = None) -> str:
    """Create a PEP 503 index under `root` serving torch; return its `file://` URL.

    `synthetic=None` uses the real wheel when present; True forces the synthetic one.
    """
    wheel = None if synthetic else real_torch_wheel()
    if wheel is None:
        wheel = build_synthetic_torch(root / "wheels")
    index_root = root / "simple"
    write_project_page(index_root, "torch", [wheel])
    return index_root.resolve().as_uri()
