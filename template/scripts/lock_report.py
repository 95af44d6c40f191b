#!/usr/bin/env -S uv run --script
# /// script
# requires-python = ">=3.11"
# dependencies = ["packaging>=26.1", "pyyaml>=6"]
# ///
"""Summarise what uv.lock would install in the container, per platform.

For each locked platform it reports the number of distributions, any GPU (CUDA) packages,
where torch comes from, the download size of the chosen wheels, and whether
environment.yml pins the same torch minor version as the lock. Then the image's two layers:
packages and bytes that conda-<platform>.lock installs and that uv installs on top, and the
overlaps (a Python package both would install, at different versions), which must be none.

    uv run --script scripts/lock_report.py [--project DIR] [--platform linux/amd64] [--json]

Exit status: 0 all good, 1 problems found, 2 uv.lock or pyproject.toml missing/unreadable.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import unquote, urlparse

import yaml
from packaging.markers import Marker
from packaging.pylock import PackageDirectory, PackageVcs, Pylock, PylockSelectError
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.version import Version

CPU_INDEX_NAME = "pytorch-cpu"
CONDA_TORCH = "pytorch-cpu"
TORCH = "torch"
# Container platform -> the names its machine goes by; the first is Linux's `platform_machine`.
PLATFORMS = {"linux/amd64": ("x86_64", "amd64"), "linux/arm64": ("aarch64", "arm64", "arm64/v8")}
# Container platform -> the conda subdir its conda lock is solved for.
CONDA_SUBDIRS = {"linux/amd64": "linux-64", "linux/arm64": "linux-aarch64"}
# The image's glibc is not known here, so every manylinux release counts, the newest first.
GLIBC_MINORS = range(99, 4, -1)
LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


class ReportError(Exception):
    """A missing or unreadable input file; the CLI turns it into exit status 2."""


def marker_environment(platform: str, python: str) -> dict[str, str]:
    """PEP 508 marker variables as a Linux CPython container would report them."""
    version = Version(python)
    return {
        "os_name": "posix",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": PLATFORMS[platform][0],
        "platform_python_implementation": "CPython",
        "implementation_name": "cpython",
        "implementation_version": python,
        "python_full_version": python,
        "python_version": f"{version.major}.{version.minor}",
        "platform_release": "",
        "platform_version": "",
    }


def wheel_tags(platform: str, python: str) -> list[Tag]:
    """Wheel tags a glibc Linux CPython accepts, the most specific first (as pip orders them)."""
    machine = PLATFORMS[platform][0]
    platforms = []
    for minor in GLIBC_MINORS:
        platforms.append(f"manylinux_2_{minor}_{machine}")
        if minor in LEGACY_MANYLINUX:
            platforms.append(f"{LEGACY_MANYLINUX[minor]}_{machine}")
    platforms.append(f"linux_{machine}")
    version = Version(python).release[:2]
    interpreter = f"cp{version[0]}{version[1]}"
    return [
        *cpython_tags(version, [interpreter], platforms),
        *compatible_tags(version, interpreter, platforms),
    ]


def holds(marker: str, platform: str, python: str) -> bool:
    return Marker(marker).evaluate(marker_environment(platform, python))


def read_toml(path: Path, fix: str) -> dict:
    """Parse a TOML file or explain which file is wrong and how to fix it."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ReportError(f"{path} not found; {fix}") from None
    except (OSError, ValueError) as err:  # TOMLDecodeError and bad UTF-8 are ValueErrors
        raise ReportError(f"cannot parse {path}: {err}; {fix}") from None


def target_python(pyproject: dict, lock: dict) -> str:
    """The lowest Python (`3.11.0`) requires-python allows: markers and wheels are chosen for it."""
    for spec in (pyproject.get("project", {}).get("requires-python"), lock.get("requires-python")):
        bounds = [
            Version(s.version.removesuffix(".*")).release
            for s in SpecifierSet(spec or "")
            if s.operator in ("===", "==", "~=", ">=", ">")
        ]
        if bounds:
            return ".".join(map(str, (*max(bounds), 0, 0)[:3]))
    raise ReportError(
        "cannot tell the Python version: set [project] requires-python in pyproject.toml"
    )


def normalise_platform(name: str) -> str:
    machine = name.strip().lower().removeprefix("linux/")
    for platform, machines in PLATFORMS.items():
        if machine in machines:
            return platform
    known = ", ".join(PLATFORMS)
    raise ReportError(f"unknown platform {name!r} (known: {known})")


def locked_platforms(pyproject: dict, python: str) -> list[str]:
    """Platforms that `[tool.uv] environments` covers, in a stable order."""
    environments = pyproject.get("tool", {}).get("uv", {}).get("environments")
    if environments is None:
        return list(PLATFORMS)
    if isinstance(environments, str):
        environments = [environments]
    found = [p for p in PLATFORMS if any(holds(m, p, python) for m in environments)]
    if not found:
        raise ReportError(
            "[tool.uv] environments in pyproject.toml covers no Linux container platform; "
            "pass --platform explicitly"
        )
    return found


def _is_url(location: str) -> bool:
    # One-letter "schemes" are Windows drive letters, not URLs.
    return len(urlparse(location).scheme) > 1


def location_path(location: str, base: Path) -> Path | None:
    """A local path for a file:// URL or plain path (relative to `base`); None for http."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
    elif _is_url(location):
        return None
    else:
        path = Path(location)
    return path if path.is_absolute() else base / path


def normalise_index(location: str, base: Path) -> str:
    """Compare indexes as uv writes them: file URLs and paths resolve, http loses the `/`."""
    path = location_path(location, base)
    return location.rstrip("/") if path is None else str(path.resolve())


def environment_pin(project: Path) -> str | None:
    """major.minor that environment.yml pins the conda torch to (`=2.13`, `>=2.13,<2.14`)."""
    path = project / "environment.yml"
    if not path.is_file():
        return None
    try:
        environment = yaml.safe_load(path.read_text(encoding="utf-8", errors="replace"))
    except yaml.YAMLError as err:
        raise ReportError(f"cannot parse {path}: {err}") from None
    items = environment.get("dependencies") if isinstance(environment, dict) else None
    # Conda match specs are not PEP 440 requirements, and no small library parses them.
    for item in items if isinstance(items, list) else []:
        spec = re.fullmatch(r"(?:[\w./-]+::)?([A-Za-z0-9_.-]+?)\s*([=<>!~ ].*)?", str(item))
        if isinstance(item, str) and spec and spec[1].lower() == CONDA_TORCH:
            # Only exact or lower-bound clauses say which minor the environment gets.
            pinned = re.search(r"(?:^|[,|])\s*(?:==|=|>=|~=)?\s*v?(\d+\.\d+)", spec[2] or "")
            return pinned[1] if pinned else None
    return None


def export_lock(project: Path) -> Pylock:
    """What `uv sync --no-dev` installs, exported by uv itself as a PEP 751 lock."""
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        raise ReportError("uv is not on PATH; run `uv run --script scripts/lock_report.py`")
    command = [uv, "export", "--format", "pylock.toml", "--frozen", "--no-dev", "--no-emit-project"]
    result = subprocess.run(command, cwd=project, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        message = " ".join(result.stderr.split())
        raise ReportError(f"uv export failed: {message}; run `uv lock`")
    exported = tomllib.loads(result.stdout)
    exported.pop("environments", None)  # a platform outside them is reported, not refused
    return Pylock.from_dict(exported)


def artifact_size(artifact: object, project: Path) -> int | None:
    """Bytes to download: the lock's `size`, else the local file's size, else None."""
    if isinstance(artifact, PackageDirectory):
        return 0  # built in place, nothing to download
    if isinstance(artifact, PackageVcs):
        return None
    if artifact.size is not None:
        return artifact.size
    path = location_path(artifact.url or artifact.path or "", project)
    try:
        return path.stat().st_size if path is not None and path.is_file() else None
    except OSError:
        return None


def is_gpu_package(name: str) -> bool:
    return name == "triton" or name.startswith(("nvidia-", "cuda-", "pytorch-triton"))


def torch_summary(package: dict, cpu_index: str | None, project: Path) -> dict:
    version = package.get("version", "")
    registry = package.get("source", {}).get("registry")
    from_cpu = bool(
        cpu_index
        and registry
        and normalise_index(registry, project) == normalise_index(cpu_index, project)
    )
    source = next(iter(package.get("source", {}).values()), "")  # uv writes the kind first
    local = version.split("+", 1)[1] if "+" in version else None
    return {"version": version, "local": local, "source": source, "from_cpu_index": from_cpu}


def conda_layer(project: Path, platform: str) -> dict | None:
    """Packages, bytes and Python distributions of the platform's conda lock; None if absent.

    scripts/conda_lock.py writes `# download-bytes: N` and `# pypi: name==version` headers.
    """
    path = project / f"conda-{CONDA_SUBDIRS[platform]}.lock"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    layer = {"lock": path.name, "packages": 0, "download_bytes": None, "provides": {}}
    for line in lines:
        if line.startswith("# download-bytes: ") and line.split()[-1].isdigit():
            layer["download_bytes"] = int(line.split()[-1])
        elif line.startswith("# pypi: "):
            name, _, version = line.removeprefix("# pypi: ").partition("==")
            layer["provides"][name] = version
        elif line.strip() and not line.startswith(("#", "@")):
            layer["packages"] += 1
    return layer


def image_layers(project: Path, platform: str, chosen: dict, sizes: dict) -> dict:
    """What each layer installs: uv skips what conda provides at the locked version."""
    conda = conda_layer(project, platform)
    provides = conda["provides"] if conda else {}
    kept = {
        name
        for name, version in chosen.items()
        if name in provides and Version(version).public == Version(provides[name]).public
    }
    overlaps = sorted(
        f"{name} (conda {provides[name]}, uv {chosen[name]})"
        for name in (chosen.keys() & provides.keys()) - kept
    )
    uv_sizes = [size for name, size in sizes.items() if name not in kept]
    return {
        "conda": conda,
        "uv": {
            "packages": len(uv_sizes),
            "download_bytes": sum(size for size in uv_sizes if size is not None),
        },
        "overlaps": overlaps,
    }


def platform_report(
    project: Path, lock: dict, pylock: Pylock, platform: str, python: str, cpu_index: str | None
) -> dict:
    environment = marker_environment(platform, python)
    try:
        chosen = list(pylock.select(environment=environment, tags=wheel_tags(platform, python)))
    except PylockSelectError as err:
        raise ReportError(f"uv.lock cannot be installed on {platform}: {err}") from None
    sizes = {package.name: artifact_size(artifact, project) for package, artifact in chosen}
    versions = {str(package.version) for package, _ in chosen if package.name == TORCH}
    torch = next(
        (p for p in lock["package"] if p["name"] == TORCH and p["version"] in versions), None
    )
    supported = lock.get("supported-markers")
    return {
        "packages": len(chosen),
        "gpu_packages": sorted(name for name in sizes if is_gpu_package(name)),
        "torch": torch_summary(torch, cpu_index, project) if torch else None,
        "download_bytes": sum(size for size in sizes.values() if size is not None),
        "unknown_size": sorted(name for name, size in sizes.items() if size is None),
        "in_lock": not supported or any(holds(m, platform, python) for m in supported),
        "layers": image_layers(
            project, platform, {p.name: str(p.version) for p, _ in chosen}, sizes
        ),
    }


def find_problems(platforms: dict[str, dict], cpu_index: str | None, pin: str | None) -> list[str]:
    problems = []
    for platform, info in platforms.items():
        if not info["in_lock"]:
            problems.append(
                f"{platform}: uv.lock is not solved for this platform "
                "(see [tool.uv] environments); run `uv lock`"
            )
        if info["gpu_packages"]:
            gpu = ", ".join(info["gpu_packages"])
            problems.append(f"{platform}: GPU packages would be installed: {gpu}")
        torch = info["torch"]
        if torch and not torch["from_cpu_index"]:
            wanted = (
                f"the {CPU_INDEX_NAME} index ({cpu_index})"
                if cpu_index
                else f"a [[tool.uv.index]] named {CPU_INDEX_NAME}, which pyproject.toml lacks"
            )
            problems.append(
                f"{platform}: torch {torch['version']} comes from {torch['source']}, not {wanted}"
            )
        for overlap in info["layers"]["overlaps"]:
            problems.append(
                f"{platform}: conda and uv would both install {overlap}; run `make lock`"
            )
        if torch and pin and Version(torch["version"]).release[:2] != Version(pin).release:
            problems.append(
                f"{platform}: environment.yml pins {CONDA_TORCH}={pin} but uv.lock "
                f"has torch {torch['version']}"
            )
    return problems


def load_report(project: Path, platforms: list[str] | None = None) -> dict:
    """Build the whole report for the project in `project`; raises ReportError (exit 2)."""
    project = Path(project)
    pyproject = read_toml(
        project / "pyproject.toml", "run this from the project directory or pass --project DIR"
    )
    lock = read_toml(project / "uv.lock", "run `uv lock` to create it")
    if not isinstance(lock.get("package"), list) or lock.get("version") != 1:
        raise ReportError(
            f"{project / 'uv.lock'} is not a uv.lock (version 1) this script "
            "understands; run `uv lock` with a current uv"
        )
    try:
        python = target_python(pyproject, lock)
        names = [normalise_platform(p) for p in platforms or locked_platforms(pyproject, python)]
        indexes = pyproject.get("tool", {}).get("uv", {}).get("index", [])
        cpu_index = next((i.get("url") for i in indexes if i.get("name") == CPU_INDEX_NAME), None)
        pylock = export_lock(project)
        per_platform = {
            name: platform_report(project, lock, pylock, name, python, cpu_index)
            for name in dict.fromkeys(names)
        }
    except ValueError as err:  # an invalid marker, specifier or version
        what, *where = str(err).splitlines()  # packaging points at the fault on further lines
        raise ReportError(f"{what}: {where[0].strip()}" if where else what) from None
    except (KeyError, TypeError, AttributeError) as err:
        raise ReportError(
            f"unexpected layout in uv.lock or pyproject.toml ({err!r}); run `uv lock`"
        ) from None
    pin = environment_pin(project)
    problems = find_problems(per_platform, cpu_index, pin)
    return {
        "python": python.rsplit(".", 1)[0],
        "lock_requires_python": lock.get("requires-python"),
        "platforms": per_platform,
        "environment_pin": pin,
        "problems": problems,
        "ok": not problems,
    }


def _torch_label(torch: dict | None) -> str:
    if torch is None:
        return "-"
    if torch["from_cpu_index"]:
        return f"{torch['version']} (cpu index)"
    host = urlparse(torch["source"]).netloc if _is_url(torch["source"]) else ""
    return f"{torch['version']} ({host or 'not cpu index'})"


def format_text(report: dict) -> str:
    labels = {name: _torch_label(info["torch"]) for name, info in report["platforms"].items()}
    width = max([25] + [len(label) + 3 for label in labels.values()])
    lines = [
        f"uv.lock footprint (Python {report['python']})",
        f"{'platform':<14}{'packages':>8}  {'gpu':>3}  {'torch':<{width}}{'download':>8}",
    ]
    notes = []
    for platform, info in report["platforms"].items():
        # A trailing + marks the total as a lower bound: some sizes are unknown.
        size = f"{info['download_bytes'] / 1e6:.1f} MB" + ("+" if info["unknown_size"] else "")
        lines.append(
            f"{platform:<14}{info['packages']:>8}  {len(info['gpu_packages']):>3}  "
            f"{labels[platform]:<{width}}{size:>8}"
        )
        if info["gpu_packages"]:
            notes.append(f"{platform} gpu packages: {', '.join(info['gpu_packages'])}")
        if info["unknown_size"]:
            unknown = ", ".join(info["unknown_size"])
            notes.append(f"{platform} unknown size (not in total): {unknown}")
    lines += [
        "image layers (conda installs its lock; uv skips what conda provides)",
        f"{'platform':<14}{'conda':>22}{'uv':>22}{'overlaps':>10}",
    ]
    for platform, info in report["platforms"].items():
        layers = info["layers"]
        conda = layers["conda"]
        conda_cell = _layer_cell(conda) if conda else "no conda lock"
        lines.append(
            f"{platform:<14}{conda_cell:>22}{_layer_cell(layers['uv']):>22}"
            f"{len(layers['overlaps']):>10}"
        )
        if conda is None:
            notes.append(f"{platform}: no conda-{CONDA_SUBDIRS[platform]}.lock; run `make lock`")
    return "\n".join(lines + notes + [f"problem: {problem}" for problem in report["problems"]])


def _layer_cell(layer: dict) -> str:
    size = layer["download_bytes"]
    return f"{layer['packages']} pkgs, " + (f"{size / 1e6:.1f} MB" if size is not None else "? MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = "project directory holding pyproject.toml and uv.lock (default: current directory)"
    parser.add_argument("--project", type=Path, default=Path.cwd(), help=where)
    which = "linux/amd64 or linux/arm64; repeat for both (default: [tool.uv] environments)"
    parser.add_argument("--platform", dest="platforms", action="append", help=which)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        report = load_report(args.project, args.platforms)
    except ReportError as err:
        print(f"lock_report: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else format_text(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
