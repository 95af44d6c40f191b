"""A tiny local conda channel of hand-built packages, and explicit locks that name them.

Enough for the micromamba stand-in to install a conda layer: `python` (recorded only),
`pytorch` holding a synthetic CPU `torch`, and torch's dependencies `sympy` and `networkx`, each
at the version the project's uv.lock names and at an older one (for the `lagging` variant).
Packages are `.tar.bz2` archives with `info/index.json`, `info/paths.json` and their files,
built at test time and served over loopback HTTP; nothing here is ever committed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.support.compat import tomllib

# Older releases, for the lagging variant.
OLDER = {"sympy": "1.12", "networkx": "3.2"}
PYTHON_VERSION = "3.11.2"  # Debian bookworm's, which the stand-in prefix runs


def dist_files(name: str, version: str, modules: dict[str, bytes]) -> dict[str, bytes]:
    """site-packages/ files of a Python distribution, with a dist-info and its RECORD."""
    dist_info = f"{name.replace('-', '_')}-{version}.dist-info"
    files = {**modules, f"{dist_info}/METADATA": (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n").encode()}
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    return {f"site-packages/{path}": data for path, data in files.items()}


def conda_package(channel: Path, name: str, version: str, build: str,
                  files: dict[str, bytes], subdir: str = "noarch") -> Path:
    """Write `<channel>/<subdir>/<name>-<version>-<build>.tar.bz2`."""
    index = {"name": name, "version": version, "build": build, "build_number": 0,
             "depends": [], "subdir": subdir}
    if subdir == "noarch":
        index["noarch"] = "python"
    paths = {"paths_version": 1, "paths": [
        {"_path": path, "path_type": "hardlink", "sha256": hashlib.sha256(data).hexdigest(),
         "size_in_bytes": len(data)} for path, data in files.items()]}
    members = {"info/index.json": json.dumps(index).encode(),
               "info/paths.json": json.dumps(paths).encode(), **files}
    target = channel / subdir / f"{name}-{version}-{build}.tar.bz2"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:bz2") as tar:
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return target


def write_repodata(channel: Path) -> None:
    for subdir in ("noarch", "linux-64"):
        folder = channel / subdir
        folder.mkdir(parents=True, exist_ok=True)
        packages = {}
        for archive in sorted(folder.glob("*.tar.bz2")):
            with tarfile.open(archive, "r:bz2") as tar:
                index = json.load(tar.extractfile("info/index.json"))
            data = archive.read_bytes()
            packages[archive.name] = {**index, "sha256": hashlib.sha256(data).hexdigest(),
                                      "md5": hashlib.md5(data).hexdigest(), "size": len(data)}
        repodata = {"info": {"subdir": subdir}, "packages": packages}
        (folder / "repodata.json").write_text(json.dumps(repodata, indent=1))


def locked_versions(project: Path) -> dict[str, str]:
    lock = tomllib.loads((project / "uv.lock").read_text())
    return {package["name"]: package["version"] for package in lock["package"]}


def build_channel(channel: Path, versions: dict[str, str]) -> None:
    """The channel, with torch's dependencies at `versions` and at OLDER."""
    conda_package(channel, "python", PYTHON_VERSION, "stand_in_0", {}, subdir="linux-64")
    torch = versions.get("torch", "2.13.0").split("+")[0]
    conda_package(channel, "pytorch", torch, "cpu_generic_py311_0", dist_files("torch", torch, {
        "torch/__init__.py": f'__version__ = "{torch}"\nfrom torch import cuda, version\n'.encode(),
        "torch/version.py": f'__version__ = "{torch}"\ncuda = None\n'.encode(),
        "torch/cuda.py": b"def is_available():\n    return False\n",
    }))
    for name, older in OLDER.items():
        for version in {versions.get(name, older), older}:
            module = {f"{name}/__init__.py": f'__version__ = "{version}"\n'.encode()}
            conda_package(channel, name, version, "pyhd8ed1ab_0", dist_files(name, version, module))
    write_repodata(channel)


def explicit_lock(channel: Path, url: str, names: list[str], versions: dict[str, str]) -> str:
    """An @EXPLICIT lock for linux-64 naming `names` at `versions` (python always)."""
    lines = ["# platform: linux-64", "@EXPLICIT"]
    wanted = {"python": PYTHON_VERSION, **{n: versions.get(n, OLDER.get(n, "")) for n in names}}
    for subdir in ("linux-64", "noarch"):
        repodata = json.loads((channel / subdir / "repodata.json").read_text())
        for file, record in sorted(repodata["packages"].items()):
            version = wanted.get(record["name"])
            if version is not None and record["version"] == version.split("+")[0]:
                lines.append(f"{url}/{subdir}/{file}#{record['sha256']}")
    return "\n".join(lines) + "\n"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep test output quiet
        pass


class ChannelServer:
    """`with ChannelServer(folder) as server: server.url` serves the folder on loopback."""

    def __init__(self, root: Path) -> None:
        handler = partial(QuietHandler, directory=str(root))
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> ChannelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)
