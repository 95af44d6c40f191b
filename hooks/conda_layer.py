"""Lock a generated project's conda layer by running its own scripts/conda_lock.py.

Imported by lock_project.py, so standard library only. The script writes every
conda-<platform>.lock and pyproject.toml's constraint-dependencies, or nothing; this module
runs it under a timeout and turns its exit status into words and the next command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bounded import run_bounded

SCRIPT = Path("scripts") / "conda_lock.py"
NEXT_STEP = "make lock"
STALE_PINS = "uv.lock is written, but its pins from the conda layer are stale"
# uv's words when the script's Python is missing and cannot be downloaded.
NO_PYTHON_SIGNS = ("python-build-standalone", "No interpreter found", "No Python installation")
# scripts/conda_lock.py's exit statuses for failures it recognises.
REASONS = {
    10: "environment.yml or pyproject.toml cannot be read for the conda lock",
    11: "the conda channel did not answer (unreachable, or an HTTP error)",
    12: "environment.yml has no solution in the conda channel",
    13: "the conda channel has no packages for one of the lock platforms",
}


@dataclass
class CondaFailure:
    """Why the conda lock failed, what the script said, and what to run once it is fixed."""

    reason: str
    detail: str = ""
    next_step: str = NEXT_STEP

    def lines(self) -> list[str]:
        """Said at once, before uv.lock is locked anyway."""
        return [
            f"could not lock the conda layer: {self.reason}",
            *(f"    {line}" for line in self.detail.splitlines()),
            "locking uv.lock anyway; its pins from the conda layer stay stale until "
            f"`{NEXT_STEP}` succeeds",
        ]

    def summary(self) -> str:
        return f"the conda layer is not locked: {self.reason}"


def lock_conda(project: Path, uv: str, timeout: float) -> CondaFailure | None:
    """Write the conda locks; None on success or when the project has no conda lock script."""
    if not (project / SCRIPT).exists():
        return None
    command = [uv, "run", "--quiet", "--script", str(SCRIPT)]
    try:
        result = run_bounded(command, project, timeout)
    except OSError as error:
        return CondaFailure(f"uv could not be started for the conda lock ({error})")
    if result is None:
        return CondaFailure(
            f"the conda lock took longer than {timeout:g} s (a slow or stalled channel?)",
            next_step=f"{NEXT_STEP}   (or raise ML_TEMPLATE_LOCK_TIMEOUT)",
        )
    output, errors = result.stdout, result.stderr
    for line in output.splitlines():
        print(f"[ml-container-template] {line}", flush=True)
    if result.returncode == 0:
        return None
    detail = "\n".join(line for line in errors.strip().splitlines()[-6:] if line.strip())
    if result.returncode in REASONS:
        return CondaFailure(REASONS[result.returncode], detail)
    if any(sign in errors for sign in NO_PYTHON_SIGNS):
        return CondaFailure(
            "uv found no Python for the project and could not download one",
            detail,
            next_step=f"uv python install   (then: {NEXT_STEP})",
        )
    return CondaFailure(
        "scripts/conda_lock.py could not run (could uv install py-rattler from PyPI?)", detail
    )
