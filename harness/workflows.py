"""A GitHub workflow file read as GitHub reads it."""

from __future__ import annotations

from pathlib import Path

import yaml


def load(path: Path) -> dict:
    """The workflow's mapping, its `on:` key under "on" as GitHub reads it."""
    # PyYAML reads the `on:` key as True (YAML 1.1).
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if True in data:
        data["on"] = data.pop(True)
    return data
