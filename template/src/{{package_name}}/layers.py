"""One owner per package: nothing conda installed in the prefix was replaced or shadowed by uv."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

METADATA_SUFFIXES = (".dist-info", ".egg-info")
NEXT_STEP = "run `make lock`, so uv.lock takes the conda lock's versions, then rebuild"


def dist_name(metadata_dir: str) -> str:
    """The normalised distribution name of `name-version.dist-info` (or `.egg-info`)."""
    name = metadata_dir.rsplit(".", 1)[0].split("-", 1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(prefix: Path) -> dict[str, list[Path]]:
    """Every metadata folder in the prefix's site-packages, by distribution name."""
    found: dict[str, list[Path]] = {}
    for path in sorted(prefix.glob("lib/python3*/site-packages/*")):
        if path.name.endswith(METADATA_SUFFIXES):
            found.setdefault(dist_name(path.name), []).append(path)
    return found


def conda_records(prefix: Path) -> list[dict[str, Any]]:
    """What conda-meta records of each package conda installed in `prefix` (none elsewhere)."""
    return [
        json.loads(path.read_text(encoding="utf-8"))
        for path in sorted((prefix / "conda-meta").glob("*.json"))
    ]


def conda_owned(prefix: Path) -> dict[str, tuple[str, Path]]:
    """Python distributions that conda-meta records: name -> (package, its metadata folder)."""
    owned: dict[str, tuple[str, Path]] = {}
    for record in conda_records(prefix):
        package = f"{record.get('name')} {record.get('version')}"
        for file in record.get("files", []):
            parts = Path(file).parts
            # Only top-level metadata: a package may vendor others' (setuptools/_vendor/...).
            for depth, part in enumerate(parts[1:], start=1):
                if part.endswith(METADATA_SUFFIXES) and parts[depth - 1] == "site-packages":
                    owned[dist_name(part)] = (package, prefix.joinpath(*parts[: depth + 1]))
                    break
    return owned


def describe(folders: list[Path]) -> str:
    """`name-1.0.dist-info (uv)`: each folder with the installer it names."""
    described = []
    for folder in folders:
        marker = folder / "INSTALLER"
        who = marker.read_text(encoding="utf-8").strip() if marker.is_file() else "unknown"
        described.append(f"{folder.name} ({who})")
    return ", ".join(described) or "nothing"


def problems(prefix: Path | None = None) -> list[str]:
    """Each conda distribution that another installer replaced or shadowed; empty when none."""
    prefix = Path(sys.prefix) if prefix is None else prefix
    if not (prefix / "conda-meta").is_dir():
        return []
    found_now = installed(prefix)
    found = []
    for name, (package, folder) in sorted(conda_owned(prefix).items()):
        others = describe([f for f in found_now.get(name, []) if f != folder])
        if not folder.exists():
            found.append(f"{name} has two owners: conda installed {package}, {others} replaced it")
        elif others != "nothing":
            found.append(f"{name} has two owners: conda installed {package}, {others} shadows it")
    if found:
        found.append(f"the conda lock and uv.lock disagree on these packages: {NEXT_STEP}")
    return found
