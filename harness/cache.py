"""The one folder every fixture built at test time is cached in (never committed)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$MLCT_CACHE_DIR, else ml-container-template/ under $XDG_CACHE_HOME or ~/.cache."""
    explicit = os.environ.get("MLCT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ml-container-template"
