#!/usr/bin/env python3
"""Summarise what uv.lock would install in the container, per platform.

For each locked platform it reports the number of distributions, any GPU (CUDA) packages,
where torch comes from, the download size of the chosen wheels, and whether
environment.yml pins the same torch minor version as the lock.

Standard library only, so it runs before any environment exists:
    python scripts/lock_report.py [--project DIR] [--platform linux/amd64] [--json]

Exit status: 0 all good, 1 problems found, 2 uv.lock or pyproject.toml missing/unreadable.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 lacks tomllib; tomli is the same parser.
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None

CPU_INDEX_NAME = "pytorch-cpu"
CONDA_TORCH = "pytorch-cpu"
TORCH = "torch"
# Container platform -> the `platform_machine` value Linux reports for it.
PLATFORM_MACHINES = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
PLATFORM_ALIASES = {
    "amd64": "linux/amd64",
    "x86_64": "linux/amd64",
    "linux/x86_64": "linux/amd64",
    "arm64": "linux/arm64",
    "aarch64": "linux/arm64",
    "linux/aarch64": "linux/arm64",
    "linux/arm64/v8": "linux/arm64",
}
LOCAL_SOURCES = ("virtual", "editable", "directory")


class ReportError(Exception):
    """A missing or unreadable input file; the CLI turns it into exit status 2."""


@dataclass(frozen=True)
class Target:
    """One platform plus the Python version the image will run."""

    platform: str
    python: tuple[int, int]
    python_full: str

    @property
    def machine(self) -> str:
        return PLATFORM_MACHINES[self.platform]

    def marker_env(self) -> dict[str, object]:
        """PEP 508 marker variables as a Linux CPython container would report them."""
        return {
            "os_name": "posix",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "platform_machine": self.machine,
            "platform_python_implementation": "CPython",
            "implementation_name": "cpython",
            "implementation_version": self.python_full,
            "python_version": f"{self.python[0]}.{self.python[1]}",
            "python_full_version": self.python_full,
            "platform_release": "",
            "platform_version": "",
            # No extras or groups of the root project are activated in a plain `uv sync`.
            "extra": "",
            "extras": frozenset(),
            "dependency_groups": frozenset(),
        }


# --------------------------------------------------------------------------- versions

_VERSION_RE = re.compile(
    r"^\s*v?(?P<release>\d+(?:\.\d+)*)"
    r"(?:[-_.]?(?P<pre>a|b|c|rc|alpha|beta|pre|preview)[-_.]?(?P<pre_n>\d*))?"
    r"(?:[-_.]?(?P<post>post|rev|r)[-_.]?(?P<post_n>\d*))?"
    r"(?:[-_.]?dev[-_.]?(?P<dev_n>\d*))?"
    r"(?:\+[a-z0-9._]+)?\s*$",
    re.IGNORECASE,
)
_PRE_RANK = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}


def version_key(text: str) -> tuple | None:
    """A sortable PEP 440 key (local part ignored), or None if `text` is not a version."""
    match = _VERSION_RE.match(text)
    if not match:
        return None
    release = [int(part) for part in match["release"].split(".")]
    while len(release) > 1 and release[-1] == 0:  # 3.12 == 3.12.0
        release.pop()
    has_dev = match["dev_n"] is not None
    if match["pre"]:
        pre = (0, _PRE_RANK[match["pre"].lower()], int(match["pre_n"] or 0))
    elif has_dev and not match["post"]:
        pre = (-1, 0, 0)  # 1.0.dev1 sorts before 1.0a1
    else:
        pre = (1, 0, 0)
    post = int(match["post_n"] or 0) if match["post"] else -1
    dev = (0, int(match["dev_n"] or 0)) if has_dev else (1, 0)
    return (tuple(release), pre, post, dev)


def _release(text: str) -> list[int]:
    return [int(part) for part in re.findall(r"\d+", text.split("+")[0])]


def major_minor(version: str) -> str | None:
    """`2.13.0+cpu` -> `2.13`."""
    match = re.match(r"\s*v?(\d+)\.(\d+)", version)
    return f"{match[1]}.{match[2]}" if match else None


def compare_versions(lhs: str, op: str, rhs: str) -> bool | None:
    """Evaluate `lhs op rhs` as PEP 440 versions; None when either side is not a version."""
    if op == "===":
        return lhs == rhs
    if op in ("==", "!=") and rhs.endswith(".*"):
        prefix, actual = _release(rhs[:-2]), _release(lhs)
        if not prefix or version_key(lhs) is None:
            return None
        padded = actual + [0] * (len(prefix) - len(actual))
        return (padded[: len(prefix)] == prefix) == (op == "==")
    left, right = version_key(lhs), version_key(rhs)
    if left is None or right is None:
        return None
    if op == "~=":
        prefix = _release(rhs)[:-1] or _release(rhs)
        return left >= right and compare_versions(lhs, "==", ".".join(map(str, prefix)) + ".*")
    return {
        "==": left == right,
        "!=": left != right,
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
    }[op]


# ----------------------------------------------------------------------- PEP 508 markers

_MARKER_TOKEN = re.compile(
    r"\s*(?:(?P<string>'[^']*'|\"[^\"]*\")"
    r"|(?P<op>===|==|!=|<=|>=|~=|<|>|\(|\))"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)
_COMPARISON_OPS = {"===", "==", "!=", "<=", ">=", "~=", "<", ">", "in", "not in"}
_MIRRORED_OPS = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}


def _tokenize_marker(marker: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    marker = marker.strip()
    while pos < len(marker):
        match = _MARKER_TOKEN.match(marker, pos)
        if not match or match.end() == pos:
            raise ValueError(f"cannot parse marker {marker!r} at position {pos}")
        kind = match.lastgroup
        text = match[kind]
        # `not in` is one operator; merging here keeps the parser free of look-ahead.
        if kind == "word" and text == "in" and tokens and tokens[-1] == ("word", "not"):
            tokens[-1] = ("op", "not in")
        elif kind == "word" and text == "in":
            tokens.append(("op", "in"))
        else:
            tokens.append((kind, text))
        pos = match.end()
        while pos < len(marker) and marker[pos].isspace():
            pos += 1
    return tokens


class _MarkerParser:
    """Recursive descent over `or` > `and` > atom, evaluating as it goes."""

    def __init__(self, marker: str, env: dict[str, object]):
        self.marker = marker
        self.tokens = _tokenize_marker(marker)
        self.pos = 0
        self.env = env

    def parse(self) -> bool:
        value = self._or()
        if self.pos != len(self.tokens):
            raise ValueError(f"unexpected {self.tokens[self.pos][1]!r} in marker {self.marker!r}")
        return value

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            raise ValueError(f"marker ends early: {self.marker!r}")
        self.pos += 1
        return token

    def _or(self) -> bool:
        value = self._and()
        while self._peek() == ("word", "or"):
            self.pos += 1
            value = self._and() or value  # evaluate both sides so every token is consumed
        return value

    def _and(self) -> bool:
        value = self._atom()
        while self._peek() == ("word", "and"):
            self.pos += 1
            value = self._atom() and value
        return value

    def _atom(self) -> bool:
        if self._peek() == ("op", "("):
            self.pos += 1
            value = self._or()
            if self._take() != ("op", ")"):
                raise ValueError(f"unbalanced parentheses in marker {self.marker!r}")
            return value
        lhs = self._operand()
        kind, op = self._take()
        if kind != "op" or op not in _COMPARISON_OPS:
            raise ValueError(f"expected a comparison operator, got {op!r} in {self.marker!r}")
        rhs = self._operand()
        return _evaluate_comparison(lhs, op, rhs)

    def _operand(self) -> tuple[bool, object]:
        """(is_variable, value) so comparisons know which side came from the environment."""
        kind, text = self._take()
        if kind == "string":
            return False, text[1:-1]
        if kind == "word" and text in self.env:
            return True, self.env[text]
        raise ValueError(f"unknown marker variable {text!r} in {self.marker!r}")


def _evaluate_comparison(lhs: tuple[bool, object], op: str, rhs: tuple[bool, object]) -> bool:
    (_, left), (right_is_var, right) = lhs, rhs
    if op in ("in", "not in"):
        found = left in right if isinstance(right, (str, frozenset)) else False
        return found == (op == "in")
    if right_is_var and not lhs[0]:
        # `'3.12' <= python_version` reads as `python_version >= '3.12'`.
        left, right, op = right, left, _MIRRORED_OPS.get(op, op)
    left, right = str(left), str(right)
    as_versions = compare_versions(left, op, right)
    if as_versions is not None:
        return as_versions
    if op in ("==", "==="):
        return left == right
    if op == "!=":
        return left != right
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}.get(
        op, False
    )


def evaluate_marker(marker: str | None, env: dict[str, object]) -> bool:
    """True when the PEP 508 marker holds in `env`; an empty marker always holds."""
    if not marker or not marker.strip():
        return True
    return _MarkerParser(marker, env).parse()


# --------------------------------------------------------------------------- wheel tags

_MANYLINUX_RE = re.compile(r"^manylinux_(\d+)_(\d+)_(\w+)$")
_LEGACY_MANYLINUX = {"manylinux2014": 17, "manylinux2010": 12, "manylinux1": 5}
_INTERPRETER_RE = re.compile(r"^(cp|py)(\d)(\d*)$")


def platform_tag_rank(tag: str, machine: str) -> int | None:
    """Higher = more specific; 0 for `any`; None when a Linux glibc box cannot use it."""
    if tag == "any":
        return 0
    match = _MANYLINUX_RE.match(tag)
    if match:
        return 100 + int(match[2]) if match[3] == machine else None
    for legacy, glibc_minor in _LEGACY_MANYLINUX.items():
        if tag == f"{legacy}_{machine}":
            return 100 + glibc_minor
    return 1 if tag == f"linux_{machine}" else None


def interpreter_rank(interpreter: str, abi: str, python: tuple[int, int]) -> int | None:
    """Rank an interpreter/abi pair the way pip orders tags; None if incompatible."""
    match = _INTERPRETER_RE.match(interpreter)
    if not match or int(match[2]) != python[0]:
        return None
    kind, minor = match[1], int(match[3]) if match[3] else None
    exact = minor == python[1]
    if kind == "cp" and exact:
        return {f"cp{python[0]}{python[1]}": 100, "abi3": 90, "none": 80}.get(abi)
    if kind == "cp" and minor is not None and minor < python[1] and abi == "abi3":
        return 50 + minor  # stable ABI built for an older CPython still loads
    if kind == "py" and abi == "none":
        if exact:
            return 40
        if minor is None:
            return 39
        if minor < python[1]:
            return 20 + minor
    return None


def wheel_rank(filename: str, target: Target) -> tuple[int, int, int] | None:
    """Best (platform-specific, interpreter, platform) rank among the wheel's tags."""
    if not filename.endswith(".whl"):
        return None
    parts = filename[: -len(".whl")].split("-")
    if len(parts) < 5:
        return None
    best = None
    for interpreter in parts[-3].split("."):
        for abi in parts[-2].split("."):
            for platform in parts[-1].split("."):
                plat = platform_tag_rank(platform, target.machine)
                interp = interpreter_rank(interpreter, abi, target.python)
                if plat is None or interp is None:
                    continue
                rank = (int(plat > 0), interp, plat)
                best = rank if best is None or rank > best else best
    return best


# ------------------------------------------------------------------------ reading files


def read_toml(path: Path, fix: str) -> dict:
    """Parse a TOML file or explain which file is wrong and how to fix it."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ReportError(f"{path} not found; {fix}") from None
    except (OSError, ValueError) as err:  # TOMLDecodeError and bad UTF-8 are ValueErrors
        raise ReportError(f"cannot parse {path}: {err}; {fix}") from None


def python_lower_bound(spec: str | None) -> tuple[int, ...] | None:
    """Lowest version a requires-python specifier allows: `>=3.12,<3.13` -> (3, 12)."""
    bounds = []
    for clause in (spec or "").split(","):
        match = re.match(r"\s*(===|==|~=|>=|>)\s*v?(\d+(?:\.\d+)*)", clause)
        if match:
            bounds.append(tuple(int(part) for part in match[2].split(".")))
    return max(bounds) if bounds else None


def target_python(pyproject: dict, lock: dict) -> tuple[tuple[int, int], str]:
    """(major, minor) and full version string used for markers and wheel choice."""
    spec = pyproject.get("project", {}).get("requires-python")
    bound = python_lower_bound(spec) or python_lower_bound(lock.get("requires-python"))
    if not bound:
        raise ReportError(
            "cannot tell the Python version: set [project] requires-python in pyproject.toml"
        )
    full = (list(bound) + [0, 0])[:3]
    return (full[0], full[1]), ".".join(map(str, full))


def normalise_platform(name: str) -> str:
    platform = PLATFORM_ALIASES.get(name.strip().lower(), name.strip().lower())
    if platform not in PLATFORM_MACHINES:
        known = ", ".join(PLATFORM_MACHINES)
        raise argparse.ArgumentTypeError(f"unknown platform {name!r} (known: {known})")
    return platform


def locked_platforms(pyproject: dict, python: tuple[int, int], python_full: str) -> list[str]:
    """Platforms that `[tool.uv] environments` covers, in a stable order."""
    environments = pyproject.get("tool", {}).get("uv", {}).get("environments")
    if environments is None:
        return list(PLATFORM_MACHINES)
    if isinstance(environments, str):
        environments = [environments]
    found = []
    for marker in environments:
        for platform in PLATFORM_MACHINES:
            env = Target(platform, python, python_full).marker_env()
            if platform not in found and evaluate_marker(marker, env):
                found.append(platform)
    if not found:
        raise ReportError(
            "[tool.uv] environments in pyproject.toml covers no Linux container platform; "
            "pass --platform explicitly"
        )
    return found


def cpu_index_url(pyproject: dict) -> str | None:
    for index in pyproject.get("tool", {}).get("uv", {}).get("index", []):
        if index.get("name") == CPU_INDEX_NAME:
            return index.get("url")
    return None


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
    if path is None:
        return location.rstrip("/")
    return str(path.resolve())


# ----------------------------------------------------------------------- conda pinning


def conda_dependencies(text: str) -> list[str]:
    """Top-level items of the `dependencies:` list; nested `- pip:` lists are skipped."""
    items, inside, item_indent = [], False, None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        stripped = line.strip()
        if not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0 and not stripped.startswith("-"):
            inside, item_indent = stripped.startswith("dependencies:"), None
            continue
        if not inside or not stripped.startswith("-"):
            continue
        item_indent = indent if item_indent is None else item_indent
        if indent == item_indent:
            items.append(stripped[1:].strip().strip("'\""))
    return items


def conda_pin(items: list[str], package: str) -> str | None:
    """major.minor that a conda match spec pins `package` to (`=2.13`, `>=2.13,<2.14`)."""
    for item in items:
        match = re.match(r"^(?:[\w./-]+::)?([A-Za-z0-9_.-]+?)\s*([=<>!~ ].*)?$", item)
        if not match or match[1].lower() != package:
            continue
        for clause in re.split(r"[,|]", match[2] or ""):
            # Only exact or lower-bound clauses say which minor the environment gets.
            pinned = re.match(r"\s*(?:==|=|>=|~=)?\s*v?(\d+\.\d+)", clause)
            if pinned:
                return pinned[1]
    return None


def environment_pin(project: Path) -> str | None:
    path = project / "environment.yml"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    return conda_pin(conda_dependencies(text), CONDA_TORCH)


# ------------------------------------------------------------------------ walking the lock


def package_id(package: dict) -> tuple[str, str, str]:
    return (
        package["name"],
        package.get("version", ""),
        json.dumps(package.get("source", {}), sort_keys=True),
    )


def find_root(lock: dict, pyproject: dict) -> dict:
    """The project's own entry: source `{ virtual = "." }` / `{ editable = "." }`."""
    packages = lock.get("package", [])
    for package in packages:
        source = package.get("source", {})
        if "." in (source.get("virtual"), source.get("editable")):
            return package
    name = re.sub(r"[-_.]+", "-", pyproject.get("project", {}).get("name", "")).lower()
    for package in packages:
        if package.get("name") == name:
            return package
    raise ReportError("uv.lock has no entry for this project; run `uv lock`")


def _resolution_matches(package: dict, env: dict[str, object]) -> bool:
    markers = package.get("resolution-markers")
    return not markers or any(evaluate_marker(marker, env) for marker in markers)


def pick_package(dep: dict, by_name: dict[str, list[dict]], env: dict[str, object]) -> dict:
    """The locked package a dependency edge points at, disambiguating forked versions."""
    candidates = by_name.get(dep["name"])
    if not candidates:
        raise ReportError(
            f"uv.lock lists {dep['name']} as a dependency but has no entry for it; run `uv lock`"
        )
    if len(candidates) == 1:
        return candidates[0]
    matching = [
        package
        for package in candidates
        if dep.get("version") in (None, package.get("version"))
        and dep.get("source") in (None, package.get("source"))
    ]
    if len(matching) > 1:
        matching = [p for p in matching if _resolution_matches(p, env)] or matching
    if not matching:
        raise ReportError(
            f"uv.lock has no {dep['name']} {dep.get('version', '')} entry; run `uv lock`"
        )
    return matching[0]


def installed_packages(lock: dict, root: dict, target: Target) -> list[dict]:
    """Distributions `uv sync --no-dev` installs on `target`, without the project itself."""
    env = target.marker_env()
    by_name: dict[str, list[dict]] = {}
    for package in lock.get("package", []):
        by_name.setdefault(package["name"], []).append(package)
    seen_extras: set[tuple[tuple[str, str, str], str]] = set()
    visited: dict[tuple[str, str, str], dict] = {}
    queue = [(root, [])]
    while queue:
        package, extras = queue.pop()
        key = package_id(package)
        edges = []
        if key not in visited:
            visited[key] = package
            edges += package.get("dependencies", [])
        for extra in extras:
            if (key, extra) not in seen_extras:
                seen_extras.add((key, extra))
                edges += package.get("optional-dependencies", {}).get(extra, [])
        for dep in edges:
            if evaluate_marker(dep.get("marker"), env):
                queue.append((pick_package(dep, by_name, env), dep.get("extra", [])))
    visited.pop(package_id(root))
    return [p for p in visited.values() if "virtual" not in p.get("source", {})]


# --------------------------------------------------------------------------- sizes


def artifact_filename(entry: dict) -> str:
    if entry.get("filename"):
        return entry["filename"]
    location = entry.get("url") or entry.get("path") or ""
    return unquote(urlparse(location).path if _is_url(location) else location).rsplit("/", 1)[-1]


def choose_artifact(package: dict, target: Target) -> dict | None:
    """The wheel `target` would install (most specific tags win), else the sdist."""
    best_rank, best = None, None
    for wheel in package.get("wheels", []):
        rank = wheel_rank(artifact_filename(wheel), target)
        if rank is not None and (best_rank is None or rank > best_rank):
            best_rank, best = rank, wheel
    return best or package.get("sdist")


def _artifact_base(package: dict, project: Path) -> Path:
    """Directory that relative artifact paths hang off: uv writes them relative to a
    local index's directory, and relative to the project for path sources."""
    registry = package.get("source", {}).get("registry")
    if registry:
        return location_path(registry, project) or project
    return project


def artifact_size(entry: dict, package: dict, project: Path) -> int | None:
    """Bytes to download: the lock's `size`, else the local file's size, else None."""
    if isinstance(entry.get("size"), int):
        return entry["size"]
    source = package.get("source", {})
    if entry.get("path"):
        path = location_path(entry["path"], _artifact_base(package, project))
    elif entry.get("url"):
        path = location_path(entry["url"], project) if entry["url"].startswith("file:") else None
    elif source.get("path"):
        path = location_path(source["path"], project)  # `{ filename = ... }` of a path source
    else:
        path = None
    try:
        return path.stat().st_size if path is not None and path.is_file() else None
    except OSError:
        return None


def package_size(package: dict, target: Target, project: Path) -> int | None:
    """Download size for one package; local directories build in place and download 0."""
    source = package.get("source", {})
    if any(kind in source for kind in LOCAL_SOURCES):
        return 0
    artifact = choose_artifact(package, target)
    return None if artifact is None else artifact_size(artifact, package, project)


# --------------------------------------------------------------------------- the report


def is_gpu_package(name: str) -> bool:
    return name == "triton" or name.startswith(("nvidia-", "cuda-", "pytorch-triton"))


def describe_source(source: dict) -> str:
    for kind in ("registry", "url", "path", "git", "directory", "editable"):
        if kind in source:
            return source[kind]
    return json.dumps(source, sort_keys=True)


def torch_summary(package: dict, cpu_index: str | None, project: Path) -> dict:
    version = package.get("version", "")
    registry = package.get("source", {}).get("registry")
    from_cpu = bool(
        cpu_index
        and registry
        and normalise_index(registry, project) == normalise_index(cpu_index, project)
    )
    return {
        "version": version,
        "local": version.split("+", 1)[1] if "+" in version else None,
        "source": describe_source(package.get("source", {})),
        "from_cpu_index": from_cpu,
    }


def platform_report(
    lock: dict, root: dict, target: Target, cpu_index: str | None, project: Path
) -> dict:
    packages = installed_packages(lock, root, target)
    sizes = {p["name"]: package_size(p, target, project) for p in packages}
    torch = next((p for p in packages if p["name"] == TORCH), None)
    supported = lock.get("supported-markers")
    env = target.marker_env()
    return {
        "packages": len(packages),
        "gpu_packages": sorted({p["name"] for p in packages if is_gpu_package(p["name"])}),
        "torch": torch_summary(torch, cpu_index, project) if torch else None,
        "download_bytes": sum(size for size in sizes.values() if size is not None),
        "unknown_size": sorted(name for name, size in sizes.items() if size is None),
        "in_lock": not supported or any(evaluate_marker(m, env) for m in supported),
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
            problems.append(
                f"{platform}: GPU packages would be installed: " + ", ".join(info["gpu_packages"])
            )
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
        if torch and pin and major_minor(torch["version"]) != pin:
            problems.append(
                f"{platform}: environment.yml pins {CONDA_TORCH}={pin} but uv.lock "
                f"has torch {torch['version']}"
            )
    return problems


def load_report(project: Path, platforms: list[str] | None = None) -> dict:
    """Build the whole report for the project in `project`; raises ReportError (exit 2)."""
    if tomllib is None:
        raise ReportError("needs Python 3.11+ (tomllib) or the `tomli` package on Python 3.10")
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
        names = [normalise_platform(p) for p in platforms] if platforms else None
    except argparse.ArgumentTypeError as err:
        raise ReportError(str(err)) from None
    try:
        return build_report(project, pyproject, lock, names)
    except ValueError as err:  # a marker this evaluator cannot read
        raise ReportError(f"cannot evaluate a marker: {err}") from None
    except (KeyError, TypeError, AttributeError) as err:
        raise ReportError(
            f"unexpected layout in uv.lock or pyproject.toml ({err!r}); run `uv lock`"
        ) from None


def build_report(project: Path, pyproject: dict, lock: dict, names: list[str] | None) -> dict:
    """The report for already-parsed files; `names` None means the locked platforms."""
    python, python_full = target_python(pyproject, lock)
    names = list(dict.fromkeys(names or locked_platforms(pyproject, python, python_full)))
    root = find_root(lock, pyproject)
    cpu_index = cpu_index_url(pyproject)
    per_platform = {
        name: platform_report(lock, root, Target(name, python, python_full), cpu_index, project)
        for name in names
    }
    pin = environment_pin(project)
    problems = find_problems(per_platform, cpu_index, pin)
    return {
        "python": f"{python[0]}.{python[1]}",
        "lock_requires_python": lock.get("requires-python"),
        "platforms": per_platform,
        "environment_pin": pin,
        "problems": problems,
        "ok": not problems,
    }


# --------------------------------------------------------------------------- output


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
            notes.append(
                f"{platform} unknown size (not in total): " + ", ".join(info["unknown_size"])
            )
    lines += notes
    lines += [f"problem: {problem}" for problem in report["problems"]]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Per-platform footprint of uv.lock: packages, GPU wheels, torch build, "
        "download size."
    )
    parser.add_argument(
        "--project",
        type=Path,
        default=Path.cwd(),
        help="project directory holding pyproject.toml and uv.lock (default: current directory)",
    )
    parser.add_argument(
        "--platform",
        dest="platforms",
        action="append",
        type=normalise_platform,
        help="linux/amd64 or linux/arm64; repeat for both "
        "(default: the platforms in [tool.uv] environments)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = load_report(args.project, args.platforms)
    except ReportError as err:
        print(f"lock_report: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2) if args.json else format_text(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
