"""Which of the template's pins are behind their latest releases; `--write` bumps the safe ones.

    uv run python -m tools.pins [--json] [--write]

Reads catalogue.yml (torch release lines, library and store ranges, base images) and every
action pinned in the template's workflows, asks each pin's registry for its latest release, and
prints current versus latest. Every conda spec the template can write into environment.yml is
judged against conda-forge's newest release (of the catalogue's CPU build, where it names one):
pytorch-cpu, torchvision and torchaudio per torch release line (except lines marked
`conda: false`), and each library or store with a `conda` entry, by its conda range or else its
PyPI range. Exit status: 0 when nothing is behind, 1 when a pin is behind (its range excludes the
newest release; older torch lines count only for releases of their own line) or admits no
release at all, 2 when the catalogue cannot be read. A registry that cannot be reached reads
"unknown (unreachable)" and does not change the exit status.

`--json` prints {"pins": [{"kind", "name", "where", "current", "latest", "status", "note",
"writable", "proposed"}], "summary": {status: count}, "written": [{"where", "old", "new",
"files"}]}; with `--write`, "pins" and "summary" describe the files as written.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from tools.catalogue_edit import Catalogue, EditError
from tools.sources import Sources, Unreachable

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = "unknown (unreachable)"
STATUSES = ("behind", "unavailable", "unknown", "current")
FAILING = {"behind", "unavailable"}
# `uses: owner/repo[/path]@ref  # vX.Y.Z`, one action per line.
USES_LINE = re.compile(
    r"^\s*(?:-\s+)?uses:\s*(?P<action>[^@\s#]+)@(?P<ref>[^\s#]+)"
    r"(?:\s+#\s*(?P<comment>\S+))?\s*$",
    re.MULTILINE,
)
UV_VERSION_LINE = re.compile(r'^(?P<key>\s*UV_VERSION:\s*)"(?P<version>[^"]+)"', re.MULTILINE)
IMAGE_TAG = re.compile(r"^(?P<prefix>v?)(?P<version>\d+(?:\.\d+)*)(?P<flavour>.*)$")


@dataclass
class Fix:
    """The safe update of one pin: its new value and how to write it."""

    new: str
    apply: Callable[[Catalogue], None]
    also: Callable[[Path], list[Path]] = lambda root: []  # edits outside catalogue.yml


@dataclass
class Row:
    kind: str  # torch line | range | image | conda | action
    name: str  # what is pinned, and where its latest release is read
    where: str  # the pin's place: a catalogue key path, or workflow files
    current: str
    latest: str
    status: str  # one of STATUSES
    note: str = ""
    fix: Fix | None = field(default=None, repr=False)

    def as_json(self) -> dict:
        data = {key: value for key, value in asdict(self).items() if key != "fix"}
        data["writable"] = self.fix is not None
        data["proposed"] = self.fix.new if self.fix else None
        return data


def unknown(row: Row, error: Unreachable) -> Row:
    row.latest, row.status, row.note = UNREACHABLE, "unknown", str(error)
    return row


# ---------------------------------------------------------------------- versions and pins


def specifier(pin: str) -> SpecifierSet:
    """A catalogue pin as a specifier: "2.13.*" is a release line, anything else a range."""
    return SpecifierSet(f"=={pin}" if pin[:1].isdigit() else pin)


def judge(pin: str, versions: list[Version], *, newest_line: bool = True) -> tuple[str, str]:
    """(status, note) of a pin against a source's releases."""
    spec = specifier(pin)
    admitted = [v for v in versions if spec.contains(v, prereleases=False)]
    if not admitted:
        return "unavailable", "no release matches the pin"
    latest = max(versions)
    if latest > max(admitted) and newest_line:
        return "behind", f"newest admitted: {public(max(admitted))}"
    return "current", ""


def public(version: Version) -> str:
    return version.public


def latest_text(versions: list[Version]) -> str:
    return public(max(versions)) if versions else "none"


def line_of(version: Version) -> str:
    return f"{version.major}.{version.minor}.*"


def upper_bound_raised(pin: str, latest: Version) -> str | None:
    """The range with its one `<` bound moved just past `latest` (same number of parts)."""
    try:
        uppers = [s for s in SpecifierSet(pin) if s.operator in ("<", "<=")]
        bound = Version(uppers[0].version) if len(uppers) == 1 else None
    except (InvalidSpecifier, InvalidVersion):
        return None
    if bound is None or bound.is_prerelease or bound.local:
        return None
    parts = len(bound.release)
    release = list(latest.release) + [0] * parts
    new = [*release[: parts - 1], release[parts - 1] + 1] if parts > 1 else [latest.major + 1]
    text = re.sub(
        rf"{re.escape(uppers[0].operator)}\s*{re.escape(uppers[0].version)}",
        "<" + ".".join(map(str, new)),
        pin,
        count=1,
    )
    return text if SpecifierSet(text).contains(latest) else None


# ---------------------------------------------------------------------- torch release lines


def family_keys(data: dict) -> list[str]:
    return [key for key, lib in data["libraries"].items() if lib.get("torch_family")]


def conda_builds_line(line: dict) -> bool:
    """Whether conda may install this release line (`conda: false` says conda-forge cannot)."""
    return line.get("conda", True) is not False


def conda_versions(sources: Sources, conda: dict) -> list[Version]:
    """conda-forge releases of a package, of the CPU build the catalogue names."""
    build = conda.get("build", "*")
    return sorted(
        {v for v, b in sources.conda_records(conda["name"]) if fnmatch.fnmatchcase(b, build)}
    )


def family_versions(sources: Sources, library: dict, origin: str) -> list[Version]:
    if origin == "conda-forge":
        return conda_versions(sources, library["conda"])
    return sources.cpu_index_versions(library["pypi"])


def companion_offsets(lines: list[dict], key: str) -> tuple[int, int] | None:
    """(major, minor offset from torch's minor) shared by every line holding `key`."""
    seen = set()
    for line in lines:
        if key in line:
            torch, companion = Version(line["torch"][:-2]), Version(line[key][:-2])
            seen.add((companion.major, companion.minor - torch.minor))
    return seen.pop() if len(seen) == 1 else None


def newest_lines_with(lines: list[dict], keys: list[str], origin: str) -> dict[str, int | None]:
    """Per library, the index of the newest line that holds it from `origin`."""
    return {
        key: next(
            (
                i
                for i, line in enumerate(lines)
                if key in line and (origin != "conda-forge" or conda_builds_line(line))
            ),
            None,
        )
        for key in keys
    }


def pypi_torch_row(lines: list[dict], libraries: dict, sources: Sources) -> Row:
    """The newest line's torch against PyPI, which shows a new release line first."""
    pypi = Row("torch line", "torch on PyPI", "torch_releases[0].torch", lines[0]["torch"], "", "")
    try:
        versions = sources.pypi_versions(libraries["torch"]["pypi"])
        pypi.latest = latest_text(versions)
        pypi.status, pypi.note = judge(pypi.current, versions)
        if pypi.status == "behind":
            pypi.note = f"new release line {line_of(max(versions))} on PyPI"
    except Unreachable as error:
        unknown(pypi, error)
    return pypi


def line_rows(data: dict, sources: Sources, origin: str) -> list[Row]:
    """One row per library of every line that `origin` serves, against that source's releases."""
    lines, libraries, rows = data["torch_releases"], data["libraries"], []
    keys = family_keys(data)
    # Only the newest line holding a library must hold that source's newest release of it.
    newest_with = newest_lines_with(lines, keys, origin)
    for i, line in enumerate(lines):
        for key in keys:
            if key not in line:
                continue
            if origin == "conda-forge" and (
                "conda" not in libraries[key] or not conda_builds_line(line)
            ):
                continue
            name = (
                libraries[key]["conda"]["name"]
                if origin == "conda-forge"
                else libraries[key]["pypi"]
            )
            row = Row(
                "torch line", f"{name} on {origin}", f"torch_releases[{i}].{key}", line[key], "", ""
            )
            try:
                versions = family_versions(sources, libraries[key], origin)
                row.latest = latest_text(versions)
                row.status, row.note = judge(line[key], versions, newest_line=newest_with[key] == i)
            except Unreachable as error:
                unknown(row, error)
            rows.append(row)
    return rows


def check_torch_lines(data: dict, sources: Sources) -> list[Row]:
    rows = [pypi_torch_row(data["torch_releases"], data["libraries"], sources)]
    for origin in ("CPU index", "conda-forge"):
        rows += line_rows(data, sources, origin)
    cpu_torch = next(
        r for r in rows if r.where == "torch_releases[0].torch" and r.name.endswith("CPU index")
    )
    if cpu_torch.status == "behind":
        cpu_torch.note, cpu_torch.fix = propose_line(data, sources)
    return rows


def propose_line(data: dict, sources: Sources) -> tuple[str, Fix | None]:
    """A new newest line, when the CPU index and conda-forge both have every library it needs.

    The companions' versions follow the pairing the catalogue's lines already show (torchvision
    0.28 with torch 2.13); a release line must exist wherever a project may install it from.
    """
    lines, libraries = data["torch_releases"], data["libraries"]
    torch = max(sources.cpu_index_versions(libraries["torch"]["pypi"]))
    entries = {"torch": line_of(torch)}
    missing = []
    keys = family_keys(data)
    for key in keys:
        if key == "torch":
            pin = entries["torch"]
        elif offsets := companion_offsets(lines, key):
            pin = f"{offsets[0]}.{torch.minor + offsets[1]}.*"
        else:
            continue
        places = ["CPU index", *(["conda-forge"] if "conda" in libraries[key] else [])]
        absent = []
        for place in places:
            try:
                versions = family_versions(sources, libraries[key], place)
                if not any(specifier(pin).contains(v) for v in versions):
                    absent.append(f"{key} {pin} not on {place}")
            except Unreachable:
                absent.append(f"{key} {pin} unknown on {place} (unreachable)")
        if absent:
            missing += absent if key in lines[0] else []
        elif key != "torch":
            entries[key] = pin
    if missing:
        return "not written: " + "; ".join(missing), None
    # Lines holding no library the new one lacks would never be chosen again.
    superseded = [i for i, line in enumerate(lines) if set(line).intersection(keys) <= set(entries)]
    text = ", ".join(f"{key} {pin}" for key, pin in entries.items())

    def apply(catalogue: Catalogue) -> None:
        # The new line has every library of line 0, so line 0 is always among them.
        catalogue.replace_item(("torch_releases", superseded[0]), entries)
        for i in superseded[1:]:
            catalogue.remove_item(("torch_releases", i))

    return f"new release line: {text}", Fix(text, apply)


# ---------------------------------------------------------------------- library and store ranges


def range_pins(data: dict) -> list[tuple[tuple, dict]]:
    """(key path of the version, catalogue entry) for every range outside the torch family."""
    pins: list[tuple[tuple, dict]] = []
    for group in ("libraries", "stores"):
        for key, entry in data[group].items():
            if "version" in entry:
                pins.append(((group, key, "version"), entry))
            for i, required in enumerate(entry.get("requires", [])):
                pins.append(((group, key, "requires", i, "version"), required))
            # A server store's client libraries.
            for i, client in enumerate(entry.get("server", {}).get("libraries", [])):
                pins.append(((group, key, "server", "libraries", i, "version"), client))
    return pins


def where_of(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def scalar_fix(path: tuple, value: str) -> Fix:
    """The fix that writes `value` at `path` in catalogue.yml."""
    return Fix(value, lambda catalogue: catalogue.set_scalar(path, value))


def check_ranges(data: dict, sources: Sources) -> list[Row]:
    rows = []
    for path, entry in range_pins(data):
        pin = entry["version"]
        row = Row("range", f"{entry['pypi']} on PyPI", where_of(path), pin, "", "")
        try:
            versions = sources.pypi_versions(entry["pypi"])
            row.latest = latest_text(versions)
            row.status, row.note = judge(pin, versions)
            if row.status == "behind":
                latest = max(versions)
                raised = upper_bound_raised(pin, latest)
                row.note = f"newer major: {latest.major}" if raised else row.note
                if raised:
                    row.fix = scalar_fix(path, raised)
        except Unreachable as error:
            unknown(row, error)
        rows.append(row)
        if "conda" in entry:
            rows.append(check_conda_range(path, entry, sources))
    return rows


def check_conda_range(path: tuple, entry: dict, sources: Sources) -> Row:
    """The spec environment.yml gets: the conda range where there is one, else the PyPI range."""
    conda = entry["conda"]
    if "version" in conda:
        path, pin = (*path[:-1], "conda", "version"), conda["version"]
    else:
        pin = entry["version"]
    row = Row("conda", f"{conda['name']} on conda-forge", where_of(path), pin, "", "")
    try:
        versions = conda_versions(sources, conda)
        row.latest = latest_text(versions)
        row.status, row.note = judge(pin, versions)
        if row.status == "behind":
            row.note = f"conda-forge's newest is outside the range; {row.note}"
    except Unreachable as error:
        unknown(row, error)
    return row


# ---------------------------------------------------------------------- base images


def split_image(image: str) -> tuple[str, str]:
    name, _, tag = image.rpartition(":")
    return name, tag


def check_images(data: dict, sources: Sources) -> list[Row]:
    rows = []
    uv_name, uv_tag = split_image(data["images"]["uv"])
    uv = Row("image", "uv on PyPI", "images.uv", uv_tag, "", "")
    try:
        versions = sources.pypi_versions("uv")
        if not versions:
            raise Unreachable("the index lists no uv release")
        latest = max(versions)
        uv.latest = public(latest)
        uv.status = "behind" if latest > Version(uv_tag) else "current"
        if uv.status == "behind":
            new = public(latest)
            uv.fix = Fix(
                new,
                lambda c: c.set_scalar(("images", "uv"), f"{uv_name}:{new}"),
                lambda root: write_uv_version(root, uv_tag, new),
            )
            # The rest read the tag: generated CI and uv_build bound (the plan), .ci/run (uv_line).
            uv.note = "the template's workflows' UV_VERSION, .ci/run and the uv_build bound follow"
    except (Unreachable, InvalidVersion) as error:
        unknown(uv, Unreachable(str(error)))
    rows.append(uv)

    rows.append(registry_image_row(data["images"]["micromamba"], "images.micromamba", sources))
    # The official image each server store's compose file runs.
    for key, store in data["stores"].items():
        if "image" in store.get("server", {}):
            where = f"stores.{key}.server.image"
            rows.append(registry_image_row(store["server"]["image"], where, sources))
    return rows


def registry_image_row(image: str, where: str, sources: Sources) -> Row:
    """An image pinned by tag, against the newest tag of the same flavour on its registry."""
    name, tag = split_image(image)
    # A registry host, if named, is the first part with a dot or a port.
    first, _, rest = name.partition("/")
    repository = rest if rest and ("." in first or ":" in first) else name
    current = IMAGE_TAG.match(tag)
    row = Row("image", f"{repository} on the registry", where, tag, "", "")
    try:
        if not current:
            raise Unreachable(f"tag {tag} does not start with a version")
        same_flavour = [
            (Version(m["version"]), t)
            for t in sources.image_tags(repository)
            if (m := IMAGE_TAG.match(t))
            and (m["prefix"], m["flavour"]) == (current["prefix"], current["flavour"])
        ]
        if not same_flavour:
            raise Unreachable(f"no tag ending in {current['flavour']!r}")
        latest_version, latest_tag = max(same_flavour)
        row.latest = latest_tag
        row.status = "behind" if latest_version > Version(current["version"]) else "current"
        row.note = "check the image, then edit by hand" if row.status == "behind" else ""
    except Unreachable as error:
        unknown(row, error)
    return row


def workflow_files(root: Path) -> list[Path]:
    return sorted(
        [
            *(root / ".github" / "workflows").glob("*.yml"),
            *(root / "template" / ".github" / "workflows").glob("*.jinja"),
        ]
    )


def write_uv_version(root: Path, old: str, new: str) -> list[Path]:
    """The template's own workflows install the uv release the Dockerfile copies."""
    changed = []
    for path in (root / ".github" / "workflows").glob("*.yml"):
        text = path.read_text(encoding="utf-8")
        edited = UV_VERSION_LINE.sub(
            lambda m: f'{m["key"]}"{new}"' if m["version"] == old else m[0], text
        )
        if edited != text:
            path.write_text(edited, encoding="utf-8")
            changed.append(path)
    return changed


# ---------------------------------------------------------------------- workflow actions


def check_actions(root: Path, sources: Sources) -> list[Row]:
    pins: dict[tuple[str, str, str], list[str]] = {}
    for path in workflow_files(root):
        for match in USES_LINE.finditer(path.read_text(encoding="utf-8")):
            key = (match["action"], match["ref"], match["comment"] or "")
            pins.setdefault(key, []).append(path.name)
    rows = []
    for (action, ref, comment), files in sorted(pins.items()):
        repository = "/".join(action.split("/")[:2])
        current = f"{comment or ref} ({ref[:12]})" if comment else ref
        row = Row("action", f"{action} on GitHub", ", ".join(sorted(set(files))), current, "", "")
        try:
            tag = sources.latest_release(repository)
            row.latest = tag
            pinned = Version(comment or ref)
            row.status = "behind" if Version(tag) > pinned else "current"
            if row.status == "behind":
                row.note = f"pin: {action}@{sources.commit_of(repository, tag)} # {tag}"
        except InvalidVersion:
            row.status, row.note = "unknown", f"{comment or ref} or the release is not a version"
        except Unreachable as error:
            if row.latest:  # the release is known, only its commit is not
                row.note = f"commit of {row.latest} unknown: {error}"
            else:
                unknown(row, error)
        rows.append(row)
    return rows


# ---------------------------------------------------------------------- report


def check(root: Path, sources: Sources) -> list[Row]:
    data = yaml.safe_load((root / "catalogue.yml").read_text(encoding="utf-8"))
    return [
        *check_torch_lines(data, sources),
        *check_ranges(data, sources),
        *check_images(data, sources),
        *check_actions(root, sources),
    ]


def write(root: Path, rows: list[Row]) -> list[dict]:
    """Apply every safe fix to catalogue.yml (and the workflows' uv release); what changed."""
    path = root / "catalogue.yml"
    catalogue = Catalogue(path.read_text(encoding="utf-8"))
    fixes = [(row, fix) for row in rows if (fix := row.fix)]
    for _, fix in fixes:
        fix.apply(catalogue)
    text = catalogue.edited()
    if text == catalogue.text:
        return []
    yaml.safe_load(text)  # never leave a catalogue that does not parse
    path.write_text(text, encoding="utf-8")
    written = []
    for row, fix in fixes:
        files = ["catalogue.yml", *(str(p.relative_to(root)) for p in fix.also(root))]
        written.append({"where": row.where, "old": row.current, "new": fix.new, "files": files})
    return written


def table(rows: list[Row]) -> str:
    header = ("KIND", "PIN", "WHERE", "CURRENT", "LATEST", "STATUS", "NOTE")
    cells = [
        header,
        *((r.kind, r.name, r.where, r.current, r.latest, r.status, r.note) for r in rows),
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header) - 1)]
    lines = [
        "  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]])
        for row in cells
    ]
    return "\n".join(line.rstrip() for line in lines)


def summary(rows: list[Row]) -> dict[str, int]:
    return {status: sum(r.status == status for r in rows) for status in STATUSES}


def default_cpu_index(root: Path) -> str:
    """The CPU index a generated project locks against by default: copier.yml's answer."""
    copier = yaml.safe_load((root / "copier.yml").read_text(encoding="utf-8"))
    return copier["torch_index_url"]["default"]


# Where each registry is read: flag, environment variable, default, and what it serves.
SOURCE_OPTIONS = (
    ("--pypi-url", "PINS_PYPI_URL", "https://pypi.org/simple", "PEP 691/503 index for PyPI"),
    (
        "--cpu-index-url",
        "PINS_CPU_INDEX_URL",
        None,
        "PEP 691/503 CPU torch index; default: copier.yml's torch_index_url",
    ),
    (
        "--conda-channel-url",
        "PINS_CONDA_CHANNEL_URL",
        "https://conda.anaconda.org/conda-forge",
        "conda channel with <subdir>/repodata.json",
    ),
    ("--conda-subdir", "PINS_CONDA_SUBDIR", "linux-64", "channel subdir to read"),
    ("--registry-url", "PINS_REGISTRY_URL", "https://hub.docker.com", "Docker Hub style tags API"),
    (
        "--github-api-url",
        "PINS_GITHUB_API_URL",
        os.environ.get("GITHUB_API_URL", "https://api.github.com"),
        "GitHub REST API; else GITHUB_API_URL",
    ),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m tools.pins",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Every URL also reads from the environment variable named in its help.",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--write",
        action="store_true",
        help="update catalogue.yml where safe: range upper bounds, the uv image "
        "tag, a new torch release line whose libraries exist",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=Path(env("PINS_ROOT", ROOT)),
        help="the template repository (PINS_ROOT)",
    )
    for flag, variable, default, what in SOURCE_OPTIONS:
        parser.add_argument(flag, default=env(variable, default), help=f"{what} ({variable})")
    parser.add_argument(
        "--timeout",
        type=float,
        default=env("PINS_TIMEOUT", "20"),
        help="seconds per request (PINS_TIMEOUT)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.root.resolve()
    try:
        sources = Sources(
            pypi_url=args.pypi_url,
            cpu_index_url=args.cpu_index_url or default_cpu_index(root),
            conda_channel_url=args.conda_channel_url,
            conda_subdir=args.conda_subdir,
            registry_url=args.registry_url,
            github_api_url=args.github_api_url,
            github_token=os.environ.get("GITHUB_TOKEN") or os.environ.get("GH_TOKEN"),
            timeout=args.timeout,
        )
        rows = check(root, sources)
        written = write(root, rows) if args.write else []
        if written:  # report the files as they are now; the sources answer from memory
            rows = check(root, sources)
    except OSError as error:
        print(f"pins: cannot read the template at {root}: {error}", file=sys.stderr)
        return 2
    except (yaml.YAMLError, KeyError, TypeError, IndexError, ValueError, EditError) as error:
        print(
            f"pins: catalogue.yml in {root} is not shaped as expected: "
            f"{type(error).__name__}: {error}",
            file=sys.stderr,
        )
        return 2
    counts = summary(rows)
    if args.json:
        print(
            json.dumps(
                {"pins": [r.as_json() for r in rows], "summary": counts, "written": written},
                indent=2,
            )
        )
    else:
        print(table(rows))
        for change in written:
            print(
                f"wrote {change['where']}: {change['old']} -> {change['new']} "
                f"({', '.join(change['files'])})"
            )
        print(
            ", ".join(f"{n} {UNREACHABLE if s == 'unknown' else s}" for s, n in counts.items() if n)
            or "no pins"
        )
    return 1 if any(counts[s] for s in FAILING) else 0


if __name__ == "__main__":
    sys.exit(main())
