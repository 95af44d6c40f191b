"""What the hook and the generated lock scripts agree on, read from the template's catalogue.yml.

The exit codes, the JSON line each script ends with, the message prefix and uv's phrases are
written once there (its `contracts:` section); the scripts get them through the plan.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from urllib.parse import urlsplit

import yaml  # Copier's own dependency, so present under Copier's Python

CATALOGUE = Path(__file__).resolve().parent.parent / "catalogue.yml"
WIDTH = 80


def _load() -> dict:
    with CATALOGUE.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


_CATALOGUE = _load()
CONTRACTS: dict = _CATALOGUE["contracts"]
NAME: str = CONTRACTS["name"]
PREFIX = f"[{NAME}]"
CONDA_LOCK_EXITS: dict[str, int] = CONTRACTS["conda_lock"]
LOCK_REPORT_EXITS: dict[str, int] = CONTRACTS["lock_report"]
UV_PHRASES: dict[str, list[str]] = CONTRACTS["uv_phrases"]
LOOPBACK_HOSTS: list[str] = CONTRACTS["loopback_hosts"]
TORCH_INDEX_NAME: str = _CATALOGUE["torch_index_name"]


def credential_variables(index_name: str = TORCH_INDEX_NAME) -> list[str]:
    """uv's variables for an index's credentials: the name upper-cased, others as `_`."""
    stem = "UV_INDEX_" + re.sub(r"[^A-Z0-9]", "_", index_name.upper())
    return [f"{stem}_USERNAME", f"{stem}_PASSWORD"]


def on_loopback(url: str) -> bool:
    """Whether an http(s) URL names a host only this machine reaches (a loopback mirror)."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and (parts.hostname or "") in LOOPBACK_HOSTS


def uv_kind(uv_output: str) -> str | None:
    """The first kind in the catalogue's order whose phrase uv's output holds; None if none."""
    text = uv_output.lower()
    for kind, phrases in UV_PHRASES.items():
        if any(phrase in text for phrase in phrases):
            return kind
    return None


def script_result(stderr: str, script: str) -> dict | None:
    """The JSON line a script ends with, or None when it has none (it crashed)."""
    for line in reversed(stderr.strip().splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        result = data.get(NAME) if isinstance(data, dict) else None
        if isinstance(result, dict) and result.get("script") == script:
            return result
        return None
    return None


def without_result(stderr: str) -> str:
    """A script's stderr without its JSON line, for people."""
    return "\n".join(line for line in stderr.splitlines() if not line.startswith(f'{{"{NAME}"'))


ROOM = WIDTH - len(PREFIX) - 1  # the columns a message line has after its prefix
# A space no wrapping breaks at: it holds a parenthesised phrase on one line.
_HELD = "\x00"


def _hold_phrases(line: str) -> str:
    """Each innermost parenthesised phrase that fits on a line, held together."""
    return re.sub(
        r"\([^()]*\)",
        lambda found: found[0].replace(" ", _HELD) if len(found[0]) <= ROOM else found[0],
        line,
    )


def wrap(line: str) -> list[str]:
    """One message line as prefixed lines of at most WIDTH columns (a long word stays whole,
    and so does a parenthesised phrase that fits on a line)."""
    if len(line) <= ROOM:
        return [f"{PREFIX} {line}" if line else ""]
    indent = " " * (len(line) - len(line.lstrip()))
    wrapped = textwrap.wrap(
        _hold_phrases(line),
        ROOM,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return [f"{PREFIX} {part.replace(_HELD, ' ')}" for part in wrapped]
