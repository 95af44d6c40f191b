"""A local conda channel standing in for conda-forge, built at test time from recorded facts.

conda channels are unreachable from test machines, so tests lock (and the image tests install)
against this one. Its packages are exactly the builds facts/conda-forge.yml records (name,
version, build string, build number, depends, constrains, per subdir), read from conda-forge's
feedstocks: a version conda-forge lacks does not exist here, and the catalogue has no say. As on
conda-forge, each archive's info/index.json is the build as made, and repodata.json serves it
after the facts' repodata patches.

What each `.tar.bz2` holds:
- a Python distribution the image can install (noarch, or linux-64 or linux-aarch64 for CPython
  3.11): the files of PyPI's wheel of that very version for that machine, its dist-info marked
  INSTALLER=conda;
- `pytorch` 2.13.0 cpu_generic for CPython 3.11: on linux-64 the CPU torch wheel from pip's
  find-links folder, on linux-aarch64 PyPI's aarch64 wheel when it is a CPU build (see
  harness/mirror.py), else the mirror's synthetic `+cpu` wheel for that machine;
- everything else (python itself, native libraries, other Pythons, torchvision and
  torchaudio, whose PyPI wheels are CUDA builds): no files, only its metadata. The interpreter
  comes from the image's stand-in base (or from uv on the host).

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
import fcntl
import functools
import hashlib
import io
import json
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

import yaml
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version
from rattler import MatchSpec

from harness.cache import cache_root
from harness.loopback import LoopbackServer
from harness.mirror import (
    AARCH64_WHEEL_TAG,
    TORCH_VERSION,
    build_synthetic_torch,
    pypi_cpu_torch,
    real_torch_wheel,
)
from tools import conda_facts
from tools.conda_facts import Record

PYPI_JSON = "https://pypi.org/pypi/{name}/json"
PYTHON = "3.11"  # the stand-in base's Python: the only one whose compiled packages get files
# The subdirs images install from, and the machine their wheels are built for.
IMAGE_SUBDIRS = {"linux-64": "x86_64", "linux-aarch64": "aarch64"}
TORCH = TORCH_VERSION.split("+")[0]
# conda packages whose PyPI distribution has another name, as the catalogue maps them.
PYPI_NAMES = yaml.safe_load(conda_facts.CATALOGUE.read_text(encoding="utf-8"))["conda"][
    "pypi_names"
]
# Their PyPI wheels are CUDA builds on Linux: never repacked as conda's CPU builds.
NO_FILES = {"torchvision", "torchaudio"}
# PyPI has no wheel of the recorded version for that subdir's machine: metadata only there.
NO_WHEEL = {("linux-aarch64", "torchcodec")}
# Python distributions the channel carries older builds of: the `lagging` stand-in installs those.
LAGGING = ("sympy", "networkx")
BUILD_TIMESTAMP_MS = conda_facts.TIMESTAMP_MS


# ----------------------------------------------------------------------------- wheels from PyPI


@functools.cache
def supported_tags(machine: str = "x86_64") -> frozenset[Tag]:
    """Wheel tags a CPython 3.11 on manylinux `machine` (x86_64, aarch64) accepts."""
    platforms = [f"manylinux_2_{minor}_{machine}" for minor in range(28, 16, -1)]
    platforms += [f"manylinux2014_{machine}", f"linux_{machine}"]
    return frozenset(
        [
            *cpython_tags((3, 11), platforms=platforms),
            *compatible_tags((3, 11), platforms=platforms),
        ]
    )


def download_wheel(name: str, version: str, folder: Path, machine: str = "x86_64") -> Path:
    """`name==version` for CPython 3.11 on linux `machine`, checked against PyPI's sha256."""
    page = PYPI_JSON.format(name=name)
    with urllib.request.urlopen(page, timeout=60) as response:
        files = json.load(response)["releases"].get(version, [])
    for file in files:
        filename = file["filename"]
        if not filename.endswith(".whl"):
            continue
        if not supported_tags(machine) & parse_wheel_filename(filename)[3]:
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
    raise RuntimeError(
        f"PyPI has no CPython 3.11 linux {machine} wheel of {name}=={version}, which "
        "facts/conda-forge.yml records as a conda-forge build: the channel cannot give it files"
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- conda archives

Files = dict[str, "bytes | tuple[zipfile.ZipFile, str]"]


@dataclass
class CondaPackage:
    """One recorded build and the files its `.tar.bz2` holds (path -> bytes, or a wheel member)."""

    record: Record
    files: Files


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
    record = package.record
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
    info: dict[str, object] = {
        "info/index.json": record.index_json(),
        "info/paths.json": {"paths": entries, "paths_version": 1},
    }
    if record.noarch == "python":
        info["info/link.json"] = {"noarch": {"type": "python"}, "package_metadata_version": 1}
    target = channel / record.subdir / record.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:bz2", compresslevel=compresslevel) as tar:
        for path, document in info.items():
            _add(tar, path, json.dumps(document, indent=2, sort_keys=True).encode())
        for path, data in package.files.items():
            _add(tar, path, _read(data))
    return target


def wheel_files(wheel: Path, archive: zipfile.ZipFile, record: Record) -> Files:
    """A wheel's importable files and dist-info, at the record's version, marked INSTALLER=conda."""
    _, wheel_version, _, _ = parse_wheel_filename(wheel.name)
    version = Version(str(wheel_version)).public  # conda-forge's torch is 2.13.0, not +cpu
    site = "site-packages" if record.noarch else f"lib/python{PYTHON}/site-packages"
    old_info = next(
        n.split("/")[0]
        for n in archive.namelist()
        if n.endswith(".dist-info/METADATA") and n.count("/") == 1
    )
    new_info = f"{old_info.removesuffix('.dist-info').rsplit('-', 1)[0]}-{version}.dist-info"
    files: Files = {}
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
    return files


def pypi_name(conda_name: str) -> str:
    return str(canonicalize_name(PYPI_NAMES.get(conda_name, conda_name)))


def is_python_distribution(record: Record) -> bool:
    """A build that installs a Python distribution: noarch python, or one that depends on python."""
    if record.name == "python" or record.leaf:
        return False
    depends = {MatchSpec(spec, strict=False).name.normalized for spec in record.depends}
    return record.noarch == "python" or "python" in depends


def wheel_for(record: Record, wheels: Path, torch_wheels: dict[str, Path]) -> Path | None:
    """The wheel whose files this build carries, or None for a build that carries none.

    `torch_wheels` holds the CPU torch wheel of each image subdir.
    """
    installable = record.noarch == "python" or (
        record.subdir in IMAGE_SUBDIRS and record.python == PYTHON
    )
    if not installable or record.name in NO_FILES or not is_python_distribution(record):
        return None
    if (record.subdir, record.name) in NO_WHEEL:
        return None
    if record.name == "pytorch":
        wanted = record.version == TORCH and "generic" in record.build
        return torch_wheels[record.subdir] if wanted else None
    machine = IMAGE_SUBDIRS.get(record.subdir, "x86_64")  # noarch: any machine's wheel is it
    return download_wheel(pypi_name(record.name), record.version, wheels, machine)


# ----------------------------------------------------------------------------- the channel


def _torch_wheel(wheels: Path, synthetic: bool | None) -> Path:
    real = None if synthetic else real_torch_wheel()
    return real or build_synthetic_torch(wheels / "synthetic", TORCH_VERSION)


def _aarch64_torch(synthetic: bool | None) -> Path | None:
    """PyPI's aarch64 CPU torch wheel for the line, or None where the channel makes a synthetic."""
    return None if synthetic else pypi_cpu_torch(TORCH_VERSION)[0]


def _cache_key(torch_wheel: Path, aarch64_torch: Path | None) -> str:
    inputs = {
        "builder": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "facts": hashlib.sha256(conda_facts.FACTS.read_bytes()).hexdigest(),
        "expander": hashlib.sha256(Path(conda_facts.__file__).read_bytes()).hexdigest(),
        "torch": [torch_wheel.name, torch_wheel.stat().st_size],
        "torch-aarch64": [aarch64_torch.name, aarch64_torch.stat().st_size]
        if aarch64_torch
        else "synthetic",
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def build_channel(root: Path | None = None, *, synthetic_torch: bool | None = None) -> Path:
    """Build the test channel, or reuse the cached one built from the same inputs.

    Returns the channel's root folder (`noarch/`, `linux-64/` and `linux-aarch64/`, each with
    `repodata.json`). `synthetic_torch=None` uses the real CPU torch wheel when on disk.
    Safe to call from several processes at once: one builds, the others wait for it.
    """
    root = root or cache_root()
    wheels = root / "wheels"
    torch_wheel = _torch_wheel(wheels, synthetic_torch)
    aarch64_torch = _aarch64_torch(synthetic_torch)
    channel = root / "conda-channel" / _cache_key(torch_wheel, aarch64_torch)
    channel.parent.mkdir(parents=True, exist_ok=True)
    with open(channel.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (channel / "noarch" / "repodata.json").exists():
            _build(channel, wheels, torch_wheel, aarch64_torch)
    return channel


def _build(channel: Path, wheels: Path, torch_wheel: Path, aarch64_torch: Path | None) -> None:
    from rattler.index import index_fs

    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=channel.parent))
    try:
        for subdir in ("noarch", *conda_facts.SUBDIRS):
            (staging / subdir).mkdir()
        torch_wheels = {
            "linux-64": torch_wheel,
            "linux-aarch64": aarch64_torch
            or build_synthetic_torch(staging / ".torch", TORCH_VERSION, AARCH64_WHEEL_TAG),
        }
        for record in conda_facts.records(patched=False):
            wheel = wheel_for(record, wheels, torch_wheels)
            if wheel is None:
                write_package(CondaPackage(record, {}), staging)
                continue
            with zipfile.ZipFile(wheel) as archive:
                # torch unpacks to ~700 MB: the fastest bzip2 level keeps the build near a minute.
                level = 1 if wheel in torch_wheels.values() else 9
                package = CondaPackage(record, wheel_files(wheel, archive, record))
                write_package(package, staging, level)
        shutil.rmtree(staging / ".torch", ignore_errors=True)
        asyncio.run(index_fs(staging, write_zst=False, write_shards=False))
        patch_repodata(staging)
        shutil.rmtree(staging / ".tmp", ignore_errors=True)
        if channel.exists():
            shutil.rmtree(channel)
        staging.rename(channel)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def patch_repodata(channel: Path) -> None:
    """The facts' repodata patches, applied to the index only, as conda-forge does."""
    patched = {(r.subdir, r.filename): r for r in conda_facts.records()}
    for repodata in sorted(channel.glob("*/repodata.json")):
        data = json.loads(repodata.read_text(encoding="utf-8"))
        for filename, entry in data.get("packages", {}).items():
            record = patched[(repodata.parent.name, filename)]
            entry["depends"], entry["constrains"] = list(record.depends), list(record.constrains)
        repodata.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")


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

    `hide` names subdirs to answer 404 for, as a channel without that platform would.

    `with ChannelServer(build_channel()) as server: server.url` gives the URL to answer
    `conda_channel` with; a `docker build --network host` reaches it too. `server.requests`
    lists the paths asked for, e.g. to prove an image build downloaded from the lock's URLs.
    """

    def __init__(self, channel: Path, *, hide: tuple[str, ...] = ()) -> None:
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
                if self.path.lstrip("/").split("/")[0] in hide:  # a subdir this channel lacks
                    self.send_error(404)
                    return None
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
