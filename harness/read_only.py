"""Running a command with one folder read-only, also for root, who ignores file modes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def read_only_prefix(project: Path) -> tuple[str, ...] | None:
    """A command prefix that runs the command with `project` mounted read-only, for root;
    None when this machine permits no private read-only bind mount."""
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'
    prefix = ("unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(project))
    if shutil.which("unshare") is None:
        return None
    probe = subprocess.run(
        [*prefix, "sh", "-c", f'! touch "{project}/.probe"'], capture_output=True, check=False
    )
    (project / ".probe").unlink(missing_ok=True)
    return prefix if probe.returncode == 0 else None
