"""uv's release line, read from catalogue.yml with the standard library alone.

    python3 tools/uv_line.py            # uv>=0.13.9,<0.14 (what .ci/run installs)
    python3 tools/uv_line.py --version  # 0.13.9

.ci/run needs it before anything is installed, so no YAML parser: one regular expression reads
the `uv:` line under `images:`. The rule is includes/plan.jinja's: from the uv image's tag up to,
not including, its next minor (tests/test_plan_door.py checks the two agree).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

CATALOGUE = Path(__file__).resolve().parents[1] / "catalogue.yml"
# `images:` then, before the next top-level key, `  uv: <image>:<major>.<minor>.<rest>`.
UV_IMAGE = re.compile(
    r"^images:\n(?:[ #].*\n|\n)*?[ ]+uv:[ ]*\S+:(?P<version>(?P<major>\d+)\.(?P<minor>\d+)\.\S+)",
    re.MULTILINE,
)


def uv_version(text: str) -> tuple[str, str]:
    """The uv image's tag and its next minor, e.g. ("0.13.9", "0.14")."""
    match = UV_IMAGE.search(text)
    if match is None:
        raise ValueError("catalogue.yml has no `uv: <image>:<version>` under `images:`")
    return match["version"], f"{match['major']}.{int(match['minor']) + 1}"


def main(argv: list[str]) -> int:
    version, next_minor = uv_version(CATALOGUE.read_text(encoding="utf-8"))
    print(version if "--version" in argv else f"uv>={version},<{next_minor}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
