"""Lock a generated project's conda layer by running its own scripts/conda_lock.py.

Imported by lock_project.py, so standard library and PyYAML only. The script writes every
conda-<platform>.lock and pyproject.toml's constraint-dependencies, or nothing, and ends with
one JSON line (catalogue.yml's contracts); this module runs it under a timeout and turns that
line, or its absence (a crash), into words and the next command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bounded import Stopped, run_to_end
from contracts import PREFIX, script_result, uv_kind, without_result

SCRIPT = Path("scripts") / "conda_lock.py"
NEXT_STEP = "make lock"
STALE_PINS = "uv.lock is written, but its pins from the conda layer are stale"
# What each of the script's failure statuses means, for the message.
REASONS = {
    "bad-input": "environment.yml or pyproject.toml cannot be read for the conda lock",
    "unreachable": "the conda channel did not answer (unreachable, or an HTTP error)",
    "unsatisfiable": "environment.yml has no solution in the conda channel",
    "no-platform": "the conda channel has no packages for one of the lock platforms",
}
# `make lock` cannot succeed until the channel answers: say what would.
MIRROR_STEP = "copier update --trust --defaults --data conda_channel=<mirror URL>"


@dataclass
class CondaFailure:
    """Why the conda lock failed, what the script said, and what to run once it is fixed."""

    reason: str
    detail: str = ""
    next_step: str = NEXT_STEP
    when: str = ""  # the condition under which next_step can succeed, in words
    or_step: str = ""  # another command that would do instead
    or_when: str = ""

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
    result = run_to_end(command, project, timeout, what="the conda lock", waits_on="channel")
    if isinstance(result, Stopped):
        return CondaFailure(result.reason, when=result.when)
    for line in result.stdout.splitlines():
        print(f"{PREFIX} {line}", flush=True)
    errors = without_result(result.stderr)
    detail = "\n".join(line for line in errors.strip().splitlines()[-6:] if line.strip())
    outcome = script_result(result.stderr, "conda_lock")
    if outcome is None:
        return crashed(errors, detail)
    status = outcome["status"]
    if status in ("locked", "fresh"):
        return None
    failure = CondaFailure(REASONS.get(status, f"scripts/conda_lock.py said {status}"), detail)
    if status == "unreachable":
        failure.when = "once the conda channel answers (check the network)"
        failure.or_step, failure.or_when = MIRROR_STEP, "to lock from a mirror of the channel"
    return failure


def crashed(errors: str, detail: str) -> CondaFailure:
    """The script ended without its JSON line: it never ran, or it crashed."""
    kind = uv_kind(errors)
    if kind == "python":
        return CondaFailure(
            "uv found no Python for the project and could not download one",
            detail,
            next_step=f"uv python install && {NEXT_STEP}",
        )
    if kind == "network":
        return CondaFailure(
            "uv could not download scripts/conda_lock.py's dependencies from PyPI",
            detail,
            when="once PyPI answers (check the network)",
        )
    return CondaFailure("scripts/conda_lock.py crashed", detail, when="after fixing it")
