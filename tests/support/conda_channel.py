"""A local conda channel standing in for conda-forge, built at test time from real PyPI wheels.

conda channels are unreachable from test machines, so tests lock (and the image tests install)
against this one. Each package is a real PyPI wheel repacked as a conda `.tar.bz2`
(`info/index.json`, `info/paths.json`, then the files), under its conda-forge name:

- `python` 3.11/3.12/3.13: EMPTY packages. The interpreter comes from the image's stand-in base
  (or from uv on the host); the channel only has to satisfy `python=3.X.*` and `python` depends.
- `pytorch` 2.13.0 (linux-64) from the CPU torch wheel in pip's find-links folder, or the
  synthetic one of tests/support/mirror.py when that wheel is absent; `pytorch-cpu` is a
  metapackage requiring `pytorch ==2.13.0 cpu_generic_*`, as on conda-forge.
- torch's dependencies, `numpy`, `faiss-cpu` and `packaging` at fixed versions (`VERSIONS`);
  `sympy` and `networkx` deliberately OLDER than PyPI's newest, so a uv resolution left alone
  would pick other versions than conda's.
- `LAGGING`: one still older `sympy` and `networkx`, for images that must show a conda copy
  lagging the lock; a solve never picks them unless pinned.
- `nvidia-cublas-cu12`: a synthetic CUDA package (linux-64), for images that must show the
  CUDA guard failing; no answer set asks for it.

Compiled packages exist for Python 3.11 on linux-64 only, and the channel has no
linux-aarch64 subdir at all (the "platform the channel lacks" fault). What it fakes: empty
`python` packages, build strings, and `depends` translated from the wheels' Requires-Dist
(what conda-forge recipes declare differs in detail). Wheel `.data/scripts|headers|data`
are dropped.

Use:
    channel = build_channel()                      # a folder; cached by its inputs
    channel.as_uri()                               # file:// channel for py-rattler
    with ChannelServer(channel) as server:         # http://127.0.0.1:<port>/ for image builds
        server.url
    shared_channel_url()                           # one server per test process

A conda lock records every package's full URL, port included: keep the same server running from
the lock (copy or `make lock`) to the image build that downloads from it.

Nothing built here is committed: wheels and the channel live under
~/.cache/ml-container-template/ (or $MLCT_CACHE_DIR).
"""

from __future__ import annotations

import asyncio
import email.parser
import fcntl
import functools
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from urllib.parse import urljoin

from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from tests.support.loopback import LoopbackServer
from tests.support.mirror import TORCH_VERSION, build_synthetic_torch, real_torch_wheel

PYPI_JSON = "https://pypi.org/pypi/{name}/json"
PYTHON = (3, 11)
SUBDIR = "linux-64"
# PyPI name -> conda-forge name, where they differ.
CONDA_NAMES = {"torch": "pytorch", "typing-extensions": "typing_extensions"}
# PyPI distributions repacked into the channel, at these versions (all real PyPI releases).
VERSIONS = {
    "sympy": "1.13.3",  # PyPI's newest is 1.14.x; torch 2.13 needs >=1.13.3
    "networkx": "3.5",  # PyPI's newest is 3.7; torch 2.13 needs >=2.5.1
    "mpmath": "1.3.0",
    "filelock": "3.20.0",
    "jinja2": "3.1.6",
    "markupsafe": "3.0.2",
    "fsspec": "2025.9.0",
    "typing-extensions": "4.15.0",
    "setuptools": "80.9.0",
    "numpy": "2.3.5",
    "faiss-cpu": "1.15.0",  # PyPI's newest is 1.15.1
    "packaging": "25.0",
}
LAGGING = {"sympy": "1.13.1", "networkx": "3.4.2"}
PYTHON_VERSIONS = ("3.11.9", "3.12.7", "3.13.1")
TORCH = TORCH_VERSION.split("+")[0]
CUDA_PACKAGE = ("nvidia-cublas-cu12", "12.8.4.1")
# Markers are evaluated as on the image: CPython 3.11, linux x86_64.
MARKER_ENV = {
    "python_version": "3.11",
    "python_full_version": "3.11.9",
    "sys_platform": "linux",
    "platform_machine": "x86_64",
    "platform_system": "Linux",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}
BUILD_TIMESTAMP_MS = 1_760_000_000_000  # fixed, so rebuilt archives hash the same


def cache_root() -> Path:
    return Path(os.environ.get("MLCT_CACHE_DIR", Path.home() / ".cache" / "ml-container-template"))


# ----------------------------------------------------------------------------- wheels from PyPI


@functools.cache
def supported_tags() -> frozenset[Tag]:
    """Wheel tags a CPython 3.11 on manylinux x86_64 accepts."""
    platforms = [f"manylinux_2_{minor}_x86_64" for minor in range(28, 16, -1)]
    platforms += ["manylinux2014_x86_64", "linux_x86_64"]
    return frozenset(
        [*cpython_tags(PYTHON, platforms=platforms), *compatible_tags(PYTHON, platforms=platforms)]
    )


def download_wheel(name: str, version: str, folder: Path) -> Path:
    """The wheel of `name==version` for CPython 3.11 linux x86_64, checked against PyPI's sha256."""
    page = PYPI_JSON.format(name=name)
    with urllib.request.urlopen(page, timeout=60) as response:
        files = json.load(response)["releases"][version]
    for file in files:
        filename = file["filename"]
        if not filename.endswith(".whl"):
            continue
        if not supported_tags() & parse_wheel_filename(filename)[3]:
            continue
        target = folder / filename
        if target.exists() and sha256_of(target) == file["digests"]["sha256"]:
            return target
        folder.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        with (
            urllib.request.urlopen(urljoin(page, file["url"]), timeout=300) as response,
            open(partial, "wb") as handle,
        ):
            shutil.copyfileobj(response, handle)
        if sha256_of(partial) != file["digests"]["sha256"]:
            partial.unlink()
            raise RuntimeError(f"{filename}: sha256 differs from PyPI's")
        partial.replace(target)
        return target
    raise RuntimeError(f"PyPI has no CPython 3.11 linux x86_64 wheel of {name}=={version}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- conda archives


@dataclass
class CondaPackage:
    """One `.tar.bz2`'s index.json fields and files (path -> bytes, or a wheel's zip member)."""

    name: str
    version: str
    build: str
    subdir: str
    depends: list[str]
    files: dict[str, bytes | tuple[zipfile.ZipFile, str]]
    noarch: str | None = None

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.build}.tar.bz2"

    def index_json(self) -> dict:
        index = {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "build_number": 0,
            "depends": self.depends,
            "subdir": self.subdir,
            "license": "test-fixture",
            "timestamp": BUILD_TIMESTAMP_MS,
        }
        if self.noarch:
            index["noarch"] = self.noarch
        else:
            index.update(arch="x86_64", platform="linux")
        return index


def _read(data: bytes | tuple[zipfile.ZipFile, str]) -> bytes:
    if isinstance(data, bytes):
        return data
    archive, member = data
    return archive.read(member)


def _add(tar: tarfile.TarFile, path: str, data: bytes) -> None:
    info = tarfile.TarInfo(path)
    info.size, info.mtime, info.mode = len(data), BUILD_TIMESTAMP_MS // 1000, 0o644
    tar.addfile(info, io.BytesIO(data))


def write_package(package: CondaPackage, channel: Path, compresslevel: int = 9) -> Path:
    """Write the archive with `info/` first, as conda's streaming extractors expect."""
    entries = []
    for path, data in package.files.items():
        content = _read(data)
        entries.append(
            {
                "_path": path,
                "path_type": "hardlink",
                "sha256": hashlib.sha256(content).hexdigest(),
                "size_in_bytes": len(content),
            }
        )
    info = {
        "info/index.json": package.index_json(),
        "info/paths.json": {"paths": entries, "paths_version": 1},
    }
    if package.noarch == "python":
        info["info/link.json"] = {"noarch": {"type": "python"}, "package_metadata_version": 1}
    target = channel / package.subdir / package.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:bz2", compresslevel=compresslevel) as tar:
        for path, content in info.items():
            _add(tar, path, json.dumps(content, indent=2, sort_keys=True).encode())
        for path, data in package.files.items():
            _add(tar, path, _read(data))
    return target


def from_wheel(wheel: Path, archive: zipfile.ZipFile) -> CondaPackage:
    """Repack a wheel's importable files (and its dist-info, marked INSTALLER=conda)."""
    name, wheel_version, _, tags = parse_wheel_filename(wheel.name)
    version = Version(str(wheel_version)).public  # conda-forge's torch is 2.13.0, not +cpu
    pure = all(tag.platform == "any" for tag in tags)
    site = "site-packages" if pure else "lib/python{}.{}/site-packages".format(*PYTHON)
    old_info = next(
        n.split("/")[0]
        for n in archive.namelist()
        if n.endswith(".dist-info/METADATA") and n.count("/") == 1
    )
    new_info = f"{old_info.removesuffix('.dist-info').rsplit('-', 1)[0]}-{version}.dist-info"
    metadata = email.parser.Parser().parsestr(archive.read(f"{old_info}/METADATA").decode())
    files: dict[str, bytes | tuple[zipfile.ZipFile, str]] = {}
    for member in archive.namelist():
        if member.endswith("/"):
            continue
        top, _, rest = member.partition("/")
        if top == old_info:
            if rest == "METADATA":
                text = archive.read(member).decode()
                text = text.replace(f"Version: {wheel_version}\n", f"Version: {version}\n", 1)
                files[f"{site}/{new_info}/METADATA"] = text.encode()
            elif rest == "RECORD":  # what uv reads to uninstall a replaced copy
                text = archive.read(member).decode().replace(f"{old_info}/", f"{new_info}/")
                files[f"{site}/{new_info}/RECORD"] = f"{text}{new_info}/INSTALLER,,\n".encode()
            else:
                files[f"{site}/{new_info}/{rest}"] = (archive, member)
        elif top.endswith(".data"):
            kind, _, inner = rest.partition("/")
            if kind in ("purelib", "platlib"):
                files[f"{site}/{inner}"] = (archive, member)
        else:
            files[f"{site}/{member}"] = (archive, member)
    files[f"{site}/{new_info}/INSTALLER"] = b"conda\n"
    floor = (metadata.get("Requires-Python") or "").replace(" ", "")
    if pure:
        depends = [f"python {floor}" if floor else "python"]
    else:
        depends = ["python >={0}.{1},<{0}.{2}.0a0".format(*PYTHON, PYTHON[1] + 1), "__glibc >=2.17"]
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate(MARKER_ENV):
            continue
        depends.append(f"{conda_name(requirement.name)} {requirement.specifier}".strip())
    conda = conda_name(name)
    if pure:
        return CondaPackage(conda, version, "pyhd8ed1ab_0", "noarch", depends, files, "python")
    build = "py{}{}_0".format(*PYTHON)
    if conda == "pytorch":
        build = f"cpu_generic_{build}"
    return CondaPackage(conda, version, build, SUBDIR, depends, files)


def conda_name(pypi_name: str) -> str:
    name = canonicalize_name(pypi_name)
    return CONDA_NAMES.get(name, name)


def synthetic_packages() -> list[CondaPackage]:
    """The empty pythons, the pytorch-cpu metapackage and the synthetic CUDA package."""
    packages = [
        CondaPackage("python", version, "0_cpython", SUBDIR, [], {}) for version in PYTHON_VERSIONS
    ]
    packages.append(
        CondaPackage(
            "pytorch-cpu",
            TORCH,
            "cpu_generic_0",
            "noarch",
            [f"pytorch =={TORCH} cpu_generic_*"],
            {},
            "generic",
        )
    )
    cuda, cuda_version = CUDA_PACKAGE
    site = "lib/python{}.{}/site-packages".format(*PYTHON)
    dist_info = f"{site}/{cuda.replace('-', '_')}-{cuda_version}.dist-info"
    packages.append(
        CondaPackage(
            cuda,
            cuda_version,
            "0",
            SUBDIR,
            ["python"],
            {
                f"{site}/nvidia/cublas/__init__.py": b"",
                f"{dist_info}/METADATA": (
                    f"Metadata-Version: 2.1\nName: {cuda}\nVersion: {cuda_version}\n"
                ).encode(),
                f"{dist_info}/INSTALLER": b"conda\n",
            },
        )
    )
    return packages


# ----------------------------------------------------------------------------- the channel


def _torch_wheel(wheels: Path, synthetic: bool | None) -> Path:
    real = None if synthetic else real_torch_wheel()
    return real or build_synthetic_torch(wheels / "synthetic", TORCH_VERSION)


def _cache_key(torch_wheel: Path) -> str:
    inputs = {
        "builder": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "torch": [torch_wheel.name, torch_wheel.stat().st_size],
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def build_channel(root: Path | None = None, *, synthetic_torch: bool | None = None) -> Path:
    """Build the test channel, or reuse the cached one built from the same inputs.

    Returns the channel's root folder (it holds `noarch/` and `linux-64/`, each with
    `repodata.json`). `synthetic_torch=None` uses the real CPU torch wheel when on disk.
    Safe to call from several processes at once: one builds, the others wait for it.
    """
    root = root or cache_root()
    wheels = root / "wheels"
    torch_wheel = _torch_wheel(wheels, synthetic_torch)
    channel = root / "conda-channel" / _cache_key(torch_wheel)
    channel.parent.mkdir(parents=True, exist_ok=True)
    with open(channel.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (channel / "noarch" / "repodata.json").exists():
            _build(channel, wheels, torch_wheel)
    return channel


def _build(channel: Path, wheels: Path, torch_wheel: Path) -> None:
    from rattler.index import index_fs

    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=channel.parent))
    try:
        sources = [download_wheel(name, version, wheels) for name, version in VERSIONS.items()]
        sources += [download_wheel(name, version, wheels) for name, version in LAGGING.items()]
        for wheel in [torch_wheel, *sources]:
            with zipfile.ZipFile(wheel) as archive:
                # torch unpacks to ~700 MB: the fastest bzip2 level keeps the build near a minute.
                level = 1 if wheel == torch_wheel else 9
                write_package(from_wheel(wheel, archive), staging, level)
        for package in synthetic_packages():
            write_package(package, staging)
        asyncio.run(index_fs(staging, write_zst=False, write_shards=False))
        shutil.rmtree(staging / ".tmp", ignore_errors=True)
        if channel.exists():
            shutil.rmtree(channel)
        staging.rename(channel)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def channel_records(channel: Path) -> dict[str, dict[str, dict]]:
    """{subdir: {filename: repodata record}} as the channel's repodata.json lists them."""
    records = {}
    for repodata in sorted(channel.glob("*/repodata.json")):
        data = json.loads(repodata.read_text(encoding="utf-8"))
        records[repodata.parent.name] = {
            **data.get("packages", {}),
            **data.get("packages.conda", {}),
        }
    return records


# ----------------------------------------------------------------------------- serving it


class ChannelServer(LoopbackServer):
    """Serve a channel folder at http://127.0.0.1:<port>/ (loopback only), in a thread.

    `with ChannelServer(build_channel()) as server: server.url` gives the URL to answer
    `conda_channel` with; a `docker build --network host` reaches it too. `server.requests`
    lists the paths asked for, e.g. to prove an image build downloaded from the lock's URLs.
    """

    def __init__(self, channel: Path) -> None:
        self.channel = channel
        self.requests: list[str] = []
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, directory=str(server.channel), **kwargs)

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def send_head(self):
                server.requests.append(self.path)
                return super().send_head()

        super().__init__(Handler)

    @property
    def url(self) -> str:
        return self.origin


@functools.cache
def shared_channel_url() -> str:
    """The URL of one channel server per test process, started on first use, never stopped."""
    return ChannelServer(build_channel()).start().url


@contextmanager
def unreachable_url() -> Iterator[str]:
    """An http://127.0.0.1 URL on a port nothing listens on, while the context lasts."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        # Bound but not listening: connections are refused, and no other test takes the port.
        yield f"http://127.0.0.1:{probe.getsockname()[1]}"
