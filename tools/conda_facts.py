"""The recorded conda-forge facts (facts/conda-forge.yml): read, expanded, solved, refreshed.

    uv run python -m tools.conda_facts                      # solve every catalogue spec set
    uv run python -m tools.conda_facts --channel URL        # compare the facts with a live channel

facts/conda-forge.yml records, per package, the builds conda-forge publishes: version, build
string, build number, depends and constrains per subdir, each with the feedstock commit it was
read from. Its builds carry `{py}`, `{py_dot}`, `{py_next}` and `{hash}` placeholders; `records`
expands them into repodata entries, one per subdir and Python, and applies the file's `patches`
(conda-forge's repodata patches, matched on name, version and upload time as conda-forge's
patch_yaml does). The local test channel (harness/conda_channel.py) is built from these records
and nothing else, so a version conda-forge lacks cannot exist there.

With no option, this solves the conda specs of every torch release line and every store and
library that names a conda package, on every platform, and prints what has no solution; exit 1
if anything the template would write cannot be solved. `--channel` reads the named packages'
records from a live channel (py-rattler's gateway fetches only those names) and prints each
package whose newest version there is not in the facts: the lines to refresh by hand, from the
feedstock commit that built it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
FACTS = ROOT / "facts" / "conda-forge.yml"
CATALOGUE = ROOT / "catalogue.yml"
SUBDIRS = ("linux-64", "linux-aarch64")
ARCHES = {"linux-64": "x86_64", "linux-aarch64": "aarch64"}
TIMESTAMP_MS = 1_760_000_000_000  # fixed, so a rebuilt channel serves the same bytes


@dataclass(frozen=True)
class Record:
    """One build as a channel's repodata.json lists it, and where the fact came from."""

    name: str
    version: str
    build: str
    build_number: int
    subdir: str  # linux-64, linux-aarch64 or noarch
    depends: tuple[str, ...]
    constrains: tuple[str, ...]
    noarch: str | None
    python: str | None  # the Python this build is for, when there is one per Python
    leaf: bool  # a native library whose own depends were not followed
    source: str
    timestamp: int = TIMESTAMP_MS  # repodata's upload time (ms): the recorded one, or a fixed one
    uploaded: bool = False  # the facts record this build's upload time
    track_features: tuple[str, ...] = ()  # what makes solvers rank a build last

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.build}.tar.bz2"

    def index_json(self) -> dict[str, Any]:
        index: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "build_number": self.build_number,
            "depends": list(self.depends),
            "constrains": list(self.constrains),
            "subdir": self.subdir,
            "license": "see the conda-forge feedstock",
            "timestamp": self.timestamp,
        }
        if self.track_features:
            index["track_features"] = " ".join(self.track_features)
        if self.noarch:
            index["noarch"] = self.noarch
        else:
            index.update(arch=ARCHES[self.subdir], platform="linux")
        return index


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a facts file that repeats one is wrong."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load(path: Path = FACTS) -> dict[str, Any]:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506


def upload_ms(build: dict[str, Any]) -> int | None:
    """A build's recorded `uploaded` time (ISO 8601, UTC) in ms, as repodata's timestamp."""
    uploaded = build.get("uploaded")
    if uploaded is None:
        return None
    moment = datetime.fromisoformat(str(uploaded).replace("Z", "+00:00"))
    return int(moment.astimezone(timezone.utc).timestamp() * 1000)


def _fill(text: str, python: str | None, digest: str) -> str:
    values = {"hash": digest}
    if python:
        major, minor = python.split(".")
        values |= {
            "py": f"{major}{minor}",
            "py_dot": python,
            "py_next": f"{major}.{int(minor) + 1}",
        }
    return text.format(**values)


def records(facts: dict[str, Any] | None = None, *, patched: bool = True) -> list[Record]:
    """Every build the facts record, expanded per subdir and per Python.

    `patched` applies the facts' repodata patches, as conda-forge's repodata serves the builds;
    without it, the records are as the feedstocks built them (what a package's index.json says).
    """
    facts = facts if facts is not None else load()
    found = []
    for name, builds in facts["packages"].items():
        for build in builds:
            subdirs = ["noarch"] if build.get("noarch") else build["subdirs"]
            number = int(build.get("build_number", 0))
            # A leaf may record no build string: conda-forge's usual h<hash>_<number> stands in.
            template = build.get("build", f"h{{hash}}_{number}")
            for subdir in subdirs:
                for python in build.get("python") or [None]:
                    # conda-forge's hash covers the variant; any stable stand-in will do.
                    seed = json.dumps(
                        [name, build["version"], template, subdir, python, build.get("depends")]
                    )
                    digest = hashlib.sha256(seed.encode()).hexdigest()[:7]
                    source = build["source"]
                    found.append(
                        Record(
                            name=name,
                            version=str(build["version"]),
                            build=_fill(template, python, digest),
                            build_number=number,
                            subdir=subdir,
                            depends=tuple(
                                _fill(d, python, digest) for d in build.get("depends") or []
                            ),
                            constrains=tuple(
                                _fill(c, python, digest) for c in build.get("constrains") or []
                            ),
                            noarch=build.get("noarch"),
                            python=python,
                            leaf=bool(build.get("leaf")),
                            source=f"{source['feedstock']}: {source.get('path', '')}",
                            timestamp=upload_ms(build) or TIMESTAMP_MS,
                            uploaded=upload_ms(build) is not None,
                            track_features=tuple(build.get("track_features") or ()),
                        )
                    )
    if patched:
        found = [apply_patches(record, facts.get("patches") or []) for record in found]
    return found


# ----------------------------------------------------------------------------- repodata patches

# The `then` instructions of conda-forge's patch_yaml this reads: (field, how).
_ACTIONS = {
    "replace_depends": ("depends", "replace"),
    "replace_constrains": ("constrains", "replace"),
    "add_depends": ("depends", "add"),
    "add_constrains": ("constrains", "add"),
    "remove_depends": ("depends", "remove"),
    "remove_constrains": ("constrains", "remove"),
}


def patch_applies(record: Record, condition: dict[str, Any]) -> bool:
    """conda-forge's patch_yaml `if:` for the keys the facts use; any other key is refused."""
    from rattler import Version as CondaVersion

    version = CondaVersion(record.version)
    tests = {
        "name": lambda value: record.name == value,
        "subdir_in": lambda value: record.subdir in ([value] if isinstance(value, str) else value),
        "version_ge": lambda value: version >= CondaVersion(str(value)),
        "version_gt": lambda value: version > CondaVersion(str(value)),
        "version_le": lambda value: version <= CondaVersion(str(value)),
        "version_lt": lambda value: version < CondaVersion(str(value)),
        "timestamp_lt": lambda value: record.timestamp < int(value),
    }
    unknown = set(condition) - set(tests)
    if unknown:
        raise ValueError(f"repodata patch condition(s) {sorted(unknown)} are not understood")
    matched = all(tests[key](value) for key, value in condition.items())
    if matched and "timestamp_lt" in condition and not record.uploaded:
        raise ValueError(
            f"{record.filename}: a repodata patch cuts off by upload time, and the facts record "
            "no `uploaded` for this build"
        )
    return matched


def apply_patches(record: Record, patches: list[dict[str, Any]]) -> Record:
    """The record as conda-forge's repodata serves it, after every patch that matches it."""
    for patch in patches:
        if not patch_applies(record, patch["if"]):
            continue
        for instruction in patch["then"]:
            ((action, argument),) = instruction.items()
            field, how = _ACTIONS[action]
            specs = list(getattr(record, field))
            if how == "replace":  # an exact match of the whole spec, as patch_yaml's replace
                specs = [argument["new"] if s == argument["old"] else s for s in specs]
            elif how == "add":
                items = [argument] if isinstance(argument, str) else argument
                specs += [item for item in items if item not in specs]
            else:
                items = [argument] if isinstance(argument, str) else argument
                specs = [s for s in specs if s not in items]
            if field == "depends":
                record = dataclasses.replace(record, depends=tuple(specs))
            else:
                record = dataclasses.replace(record, constrains=tuple(specs))
    return record


def write_repodata(channel: Path, entries: dict[str, dict[str, dict[str, Any]]]) -> None:
    """{subdir: {filename: repodata entry}} as each subdir's repodata.json (noarch always)."""
    for subdir in ("noarch", *SUBDIRS):
        folder = channel / subdir
        folder.mkdir(parents=True, exist_ok=True)
        repodata = {
            "info": {"subdir": subdir},
            "packages": dict(sorted(entries.get(subdir, {}).items())),
            "packages.conda": {},
            "repodata_version": 1,
        }
        (folder / "repodata.json").write_text(json.dumps(repodata, indent=1), encoding="utf-8")


def metadata_channel(folder: Path, facts: dict[str, Any] | None = None) -> Path:
    """A channel of repodata only (no archives): enough to solve against, not to install."""
    entries: dict[str, dict[str, dict[str, Any]]] = {}
    for record in records(facts):
        entry = record.index_json()
        entry["sha256"] = hashlib.sha256(record.filename.encode()).hexdigest()
        entry["size"] = 0
        entries.setdefault(record.subdir, {})[record.filename] = entry
    write_repodata(folder, entries)
    return folder


# ----------------------------------------------------------------------------- solving


def virtual_packages(subdir: str, catalogue: dict[str, Any]) -> list[Any]:
    """What the conda lock declares of the image, as scripts/conda_lock.py does."""
    from rattler import BuildString, GenericVirtualPackage, PackageName
    from rattler import Version as CondaVersion

    platform = next(p for p in catalogue["platforms"].values() if p["conda_subdir"] == subdir)
    declared = {
        "__unix": ("0", "0"),
        "__linux": (catalogue["conda"]["linux"], "0"),
        "__glibc": (catalogue["conda"]["glibc"], "0"),
        "__archspec": ("1", platform["archspec"]),
    }
    return [
        GenericVirtualPackage(PackageName(name), CondaVersion(version), BuildString(build))
        for name, (version, build) in declared.items()
    ]


def solve(channel: Path, specs: list[str], subdir: str, catalogue: dict[str, Any]) -> list[Any]:
    """py-rattler's solution for these environment.yml specs, as the conda lock would solve them."""
    from rattler import Channel, Gateway, MatchSpec, Subdir
    from rattler import solve as rattler_solve

    async def run() -> list[Any]:
        return await rattler_solve(
            [Channel(channel.as_uri())],
            [MatchSpec(spec, strict=False) for spec in specs],
            Gateway(),
            [Subdir(subdir), Subdir("noarch")],
            virtual_packages=virtual_packages(subdir, catalogue),
        )

    return asyncio.run(run())


def catalogue_spec_sets(catalogue: dict[str, Any]) -> dict[str, list[str]]:
    """Each conda spec set the template can write, by a name that says where it comes from.

    Every torch release line with every torch-family library conda would install under it, and
    every library or store with a conda package; pythons come from the facts' newest lines.
    """
    libraries = catalogue["libraries"]
    sets: dict[str, list[str]] = {}
    for line in catalogue["torch_releases"]:
        specs = []
        for key, pin in line.items():
            if key == "conda" or "conda" not in libraries.get(key, {}):
                continue
            conda = libraries[key]["conda"]
            build = f"={conda['build']}" if "build" in conda else ""
            specs.append(f"{conda['name']}={pin}{build}")
        sets[f"torch {line['torch']}{' (conda: false)' if line.get('conda') is False else ''}"] = (
            specs
        )
    for kind in ("libraries", "stores"):
        for key, entry in catalogue[kind].items():
            conda = (entry or {}).get("conda")
            if conda and not entry.get("torch_family"):
                sets[f"{kind}.{key}"] = [f"{conda['name']}{conda.get('version', entry['version'])}"]
    return sets


def unsolvable(channel: Path, catalogue: dict[str, Any], pythons: list[str]) -> list[str]:
    """One line per catalogue spec set that has no solution, for some Python and platform."""
    from rattler.exceptions import SolverError

    problems = []
    for label, specs in catalogue_spec_sets(catalogue).items():
        expected = "conda: false" not in label
        for python in pythons:
            for subdir in SUBDIRS:
                try:
                    solve(channel, [f"python={python}.*", *specs], subdir, catalogue)
                    solved = True
                except SolverError as error:
                    solved, reason = False, str(error).strip().splitlines()[0]
                if solved != expected:
                    what = "has no solution" if expected else "solves, so drop `conda: false`"
                    detail = f": {reason}" if not solved else ""
                    problems.append(f"{label} on {subdir}, python {python}: {what}{detail}")
    return problems


# ----------------------------------------------------------------------------- refreshing


def newest_on_channel(channel_url: str, names: list[str]) -> dict[tuple[str, str], str]:
    """{(name, subdir): newest version} on a live channel, for just these names."""
    from rattler import Channel, Gateway, Subdir

    async def run() -> list[Any]:
        subdirs = [Subdir(subdir) for subdir in (*SUBDIRS, "noarch")]
        return await Gateway().query([Channel(channel_url)], subdirs, names, recursive=False)

    newest: dict[tuple[str, str], Any] = {}
    for group in asyncio.run(run()):
        for record in group:
            key = (record.name.normalized, str(record.subdir))
            if key not in newest or record.version > newest[key]:
                newest[key] = record.version
    return {key: str(version) for key, version in newest.items()}


def stale_facts(channel_url: str, facts: dict[str, Any]) -> list[str]:
    recorded: dict[str, set[str]] = {}
    for record in records(facts):
        recorded.setdefault(record.name, set()).add(record.version)
    lines = []
    for (name, subdir), version in sorted(newest_on_channel(channel_url, list(recorded)).items()):
        if version not in recorded.get(name, set()):
            lines.append(f"{name} {version} ({subdir}) is not in the facts")
    return lines


def template_pythons() -> list[str]:
    """The Python versions copier.yml offers."""
    questions = yaml.safe_load((ROOT / "copier.yml").read_text(encoding="utf-8"))
    return [str(choice) for choice in questions["python_version"]["choices"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channel", help="compare the facts with this live channel")
    parser.add_argument("--facts", type=Path, default=FACTS)
    args = parser.parse_args(argv)
    facts = load(args.facts)
    if args.channel:
        lines = stale_facts(args.channel, facts)
        print("\n".join(lines) if lines else "every newest version on the channel is recorded")
        return 1 if lines else 0
    catalogue = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    pythons = template_pythons()
    with tempfile.TemporaryDirectory() as folder:
        problems = unsolvable(metadata_channel(Path(folder), facts), catalogue, pythons)
    print("\n".join(problems) if problems else "every catalogue conda spec set solves")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
