"""Lock a generated project against its CPU index, without ever harming the project.

Copier runs this after `copier copy` (as a task) and after `copier update` (as a
migration, with --after-update). It uses only the standard library, because it runs
under whichever Python runs Copier.

Whatever happens (uv missing, index down, a conflict, Ctrl-C), the project is kept,
`uv.lock` is either the previous one, absent, or a complete new lock, and the message
says what failed and what to run next. Set ML_TEMPLATE_STRICT=1 to exit non-zero on
failure (for CI). ML_TEMPLATE_LOCK_TIMEOUT sets the seconds uv may take (default 900).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import conda_layer
from bounded import run_bounded

PREFIX = "[ml-container-template]"
CONFLICT_MARKERS = ("<<<<<<< ", "=======", ">>>>>>> ")
UV_INSTALL_URL = "https://docs.astral.sh/uv/getting-started/installation/"
NOT_WRITABLE = "uv.lock could not be written (permission denied: the project is read-only)"
NOT_WRITABLE_NEXT = "uv lock   (as a user who may write to the project)"


@dataclass
class Failure:
    """Why locking failed, in words for the user, and what to run once it is fixed."""

    reason: str
    detail: str = ""
    next_step: str = "uv lock"
    lock_state: str = ""  # what became of uv.lock, when the failure came after it was written


def say(*lines: str) -> None:
    for line in lines:
        print(f"{PREFIX} {line}" if line else "", flush=True)


def strict() -> bool:
    return os.environ.get("ML_TEMPLATE_STRICT", "") not in ("", "0", "false", "no")


def log_run(project: Path, mode: str) -> None:
    """Append one line per run to ML_TEMPLATE_HOOK_LOG, so runs can be counted."""
    log = os.environ.get("ML_TEMPLATE_HOOK_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{mode} {project.resolve()}\n")


def find_uv() -> str | None:
    """uv on PATH, or the uv that launched Copier (uv exports its own path as UV)."""
    launched_by = os.environ.get("UV")
    if launched_by and os.access(launched_by, os.X_OK) and Path(launched_by).name.startswith("uv"):
        return launched_by
    return shutil.which("uv")


def has_conflict_markers(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return any(line.startswith(CONFLICT_MARKERS) for line in text.splitlines())


def is_complete_lock(path: Path) -> bool:
    """A lock uv can read: TOML with a version and at least the project's own package."""
    if sys.version_info >= (3, 11):
        import tomllib

        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            return False
        return "version" in data and bool(data.get("package"))
    # Python 3.10 has no tomllib: fall back to a structural check.
    text = path.read_text(encoding="utf-8", errors="replace")
    return text.startswith("version = ") and "[[package]]" in text


class LockGuard:
    """Remembers uv.lock as it was and puts it back unless the new one is committed."""

    def __init__(self, lock: Path) -> None:
        self.lock = lock
        self.before = lock.read_bytes() if lock.exists() else None
        # The mode too: mkstemp makes 0600 files, which an image build's other user cannot read.
        self.mode = lock.stat().st_mode & 0o777 if lock.exists() else 0o644

    def restore(self) -> None:
        """Put the lock back as it was; a failure to do so is reported, never raised."""
        try:
            self._put_back()
        except OSError as error:
            say(f"warning: could not put uv.lock back as it was ({error})")

    def _put_back(self) -> None:
        if self.before is None:
            # Only unlink what is there: on a read-only file system even a missing
            # file's unlink fails with EROFS.
            if self.lock.exists() or self.lock.is_symlink():
                self.lock.unlink()
            return
        if self.lock.exists() and self.lock.read_bytes() == self.before:
            return
        # Write beside the lock, then rename: the lock is never half-written.
        fd, temp = tempfile.mkstemp(prefix=".uv.lock.", dir=self.lock.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(self.before)
            os.chmod(temp, self.mode)
            os.replace(temp, self.lock)
        except OSError:
            Path(temp).unlink(missing_ok=True)
            raise


def shorten(uv_output: str, limit: int = 8) -> str:
    """uv's own message without progress noise, a few lines at most."""
    noise = ("Using CPython", "Using Python", "Resolved ", "Updated ", "Added ", "Removed ")
    kept = []
    for line in uv_output.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(noise):
            continue
        kept.append(stripped if len(stripped) <= 200 else stripped[:197] + "...")
    if len(kept) > limit:
        kept = kept[: limit - 1] + [f"... ({len(kept) - limit + 1} more lines)"]
    return "\n".join(kept)


NETWORK_SIGNS = (
    "failed to fetch",
    "error sending request",
    "connection refused",
    "dns error",
    "tcp connect error",
    "timed out",
    "timeout",
    "server error",
    "status code 5",
    "503",
    "502",
    "504",
    "request failed after",
    "error decoding response body",
    "connection closed",
    "connection reset",
    "failed to read from",
    "network",
    "could not connect",
    "unexpected eof",
    "incomplete message",
)


AUTH_SIGNS = (
    "lack of valid authentication credentials",
    "401 unauthorized",
    "403 forbidden",
    "missing credentials",
    "no credentials",
)


@dataclass
class Index:
    """The project's CPU index, as copier.yml passes it; for messages only."""

    url: str = "the CPU index"
    credentials: str = "uv's UV_INDEX_<NAME>_USERNAME and _PASSWORD variables"


def classify(uv_output: str, index: Index) -> Failure:
    """Name what went wrong from uv's message; a resolution conflict is never a network error."""
    text = uv_output.lower()
    detail = shorten(uv_output)
    if any(sign in text for sign in AUTH_SIGNS):
        # uv reports a 401 on the index as "not found" with a hint: the hint is the cause.
        return Failure(
            f"the index refused access without valid credentials (is {index.url} private?)",
            detail,
            f"uv lock   (with {index.credentials} set in the environment)",
        )
    if "no solution found" in text or "unsatisfiable" in text:
        if "not found in the package registry" in text or "was not found in the provided" in text:
            return Failure(
                f"a package is missing from an index (is torch served at {index.url}?)", detail
            )
        if "compatible wheels" in text:
            return Failure(
                "the dependencies cannot be satisfied: a package has no wheels for one of the "
                "lock platforms (a conflict, not a network problem)",
                detail,
                "uv lock   (after removing that platform from environments and "
                "required-environments in pyproject.toml, or with an index that has its wheels)",
            )
        return Failure(
            "the dependencies cannot be satisfied together (a conflict, not a network problem)",
            detail,
            "uv lock   (after changing the conflicting requirement in pyproject.toml)",
        )
    if "no interpreter found" in text or ("no python" in text and "found" in text):
        return Failure(
            "uv found no Python interpreter that satisfies requires-python",
            detail,
            "uv python install   (then: uv lock)",
        )
    if "python-build-standalone" in text or "cpython-" in text and "failed to download" in text:
        # uv needs an interpreter for requires-python and could not fetch one: not the index.
        return Failure(
            "uv needs the project's Python to lock, found none installed, and could not "
            "download one",
            detail,
            "uv python install   (or install that Python yourself; then: uv lock)",
        )
    if "permission denied" in text or "read-only file system" in text:
        return Failure(
            "uv could not write a file (permission denied: is the project or uv's cache "
            "read-only?)",
            detail,
            NOT_WRITABLE_NEXT,
        )
    if any(sign in text for sign in NETWORK_SIGNS):
        return Failure("a package index could not be reached or answered with an error", detail)
    return Failure("uv lock failed", detail)


def writable(project: Path) -> bool:
    """Whether uv.lock can be written: the directory, and the lock if it exists."""
    lock = project / "uv.lock"
    return os.access(project, os.W_OK | os.X_OK) and (not lock.exists() or os.access(lock, os.W_OK))


def lock_timeout() -> float:
    """ML_TEMPLATE_LOCK_TIMEOUT in seconds; a bad value falls back to the default, with a word."""
    raw = os.environ.get("ML_TEMPLATE_LOCK_TIMEOUT", "")
    try:
        value = float(raw) if raw.strip() else 900.0
    except ValueError:
        value = 0.0
    if not value > 0 or value != value:  # also rejects NaN
        say(f"ignoring ML_TEMPLATE_LOCK_TIMEOUT={raw!r} (not a positive number of seconds)")
        value = 900.0
    return value


def run_uv_lock(uv: str, project: Path, index: Index, timeout: float) -> Failure | None:
    """Run `uv lock` in the project; None on success."""
    try:
        result = run_bounded([uv, "lock"], project, timeout, merge_stderr=True)
    except OSError as error:
        return Failure(f"uv could not be started ({error})")
    if result is None:
        return Failure(
            f"uv lock took longer than {timeout:g} s (a slow or stalled index?)",
            next_step="uv lock   (or raise ML_TEMPLATE_LOCK_TIMEOUT)",
        )
    if result.returncode != 0:
        return classify(result.stdout, index)
    return None


def show_report(project: Path, uv: str) -> int:
    """Print the project's own lock report; its exit status says whether the lock is CPU-only."""
    report = project / "scripts" / "lock_report.py"
    if not report.exists():
        return 0
    command = [uv, "run", "--script", str(report), "--project", str(project)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    print(result.stdout, end="", flush=True)
    if result.returncode not in (0, 1):
        say("the lock report could not run:", shorten(result.stderr))
    return result.returncode


def lock(project: Path, index: Index) -> Failure | None:
    """Lock the project; returns the failure to report, if any."""
    pyproject, lockfile = project / "pyproject.toml", project / "uv.lock"
    if not pyproject.exists():
        return Failure(f"{pyproject} does not exist", next_step="copier recopy --trust")
    if not writable(project):
        # Checked first: locking takes minutes, and its result could not be saved.
        return Failure(NOT_WRITABLE, next_step=NOT_WRITABLE_NEXT)
    if has_conflict_markers(lockfile):
        # The lock is derived data: rebuild it from pyproject.toml rather than merge it. Removed
        # before the pyproject.toml check, so no conflict marker survives in it even when that
        # fails; on copy too, as `copier recopy` keeps the project's uv.lock.
        say("uv.lock had merge conflict markers; removing it, to rebuild it from pyproject.toml")
        lockfile.unlink()
    if has_conflict_markers(pyproject):
        return Failure(
            "pyproject.toml has merge conflict markers from the update; resolve them first",
            next_step="uv lock   (after resolving the conflicts in pyproject.toml)",
        )
    # A lock made now would leave out the user's edits that wait in a .rej file.
    for source, relock in (("pyproject.toml", "uv lock"), ("environment.yml", "make lock")):
        if (project / f"{source}.rej").exists():
            return Failure(
                f"{source}.rej holds edits of yours that the update could not apply; "
                f"apply them to {source} by hand and delete the .rej file first",
                next_step=f"{relock}   (after applying {source}.rej and deleting it)",
            )
    uv = find_uv()
    if uv is None:
        return Failure(
            f"uv is not on PATH (install it: {UV_INSTALL_URL})",
            next_step="uv lock   (once uv is installed)",
        )
    timeout = lock_timeout()
    guard = LockGuard(lockfile)
    conda_failure = None
    try:
        conda_failure = conda_layer.lock_conda(project, uv, timeout)
        if conda_failure is not None:
            say(*conda_failure.lines())
        say(f"locking against {index.url} with {uv} ...")
        failure = run_uv_lock(uv, project, index, timeout)
        if failure is None and not is_complete_lock(lockfile):
            failure = Failure("uv lock finished but uv.lock is not a complete lock")
    except KeyboardInterrupt:
        # A second Ctrl-C must not stop the restore halfway.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        guard.restore()
        return Failure("interrupted while locking")
    except BaseException:
        guard.restore()
        raise
    if failure is not None:
        guard.restore()
        return failure
    report_status = show_report(project, uv)
    if conda_failure is not None:  # the cause of any overlap the report found
        return Failure(
            conda_failure.summary(),
            next_step=conda_failure.next_step,
            lock_state=conda_layer.STALE_PINS,
        )
    if report_status == 1:
        return Failure(
            "the lock is not CPU-only, or both layers install a package (see the problems above)",
            next_step="make lock && uv run --script scripts/lock_report.py"
            "   (after fixing pyproject.toml or environment.yml)",
        )
    return None


def report_failure(project: Path, failure: Failure) -> None:
    exists = (project / "uv.lock").exists()
    state = failure.lock_state or ("uv.lock was left as it was" if exists else "uv.lock is absent")
    lines = [f"could not lock the project: {failure.reason}"]
    if failure.detail:
        lines += ["uv said:"] + [f"    {line}" for line in failure.detail.splitlines()]
    lines += [
        f"Your project in {project} is kept and complete; {state}.",
        f"Next, run:  cd {project} && {failure.next_step}",
    ]
    say(*lines)


def report_success(project: Path, after_update: bool) -> None:
    if after_update:
        say("uv.lock is up to date with pyproject.toml and CPU-only.")
    else:
        say(f"uv.lock is written and CPU-only: {project} is ready to build (make build).")


def announce_update() -> None:
    """Name the template versions; Copier passes them to migrations as VERSION_FROM/VERSION_TO."""
    old, new = os.environ.get("VERSION_FROM"), os.environ.get("VERSION_TO")
    if old and new:
        say(f"template updated from {old} to {new}" if old != new else f"template {new} kept")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="project directory")
    parser.add_argument("--after-update", action="store_true", help="run as the update migration")
    parser.add_argument("--index-url", default=Index.url, help="the CPU index's URL")
    parser.add_argument(
        "--index-credentials", default=Index.credentials, help="uv's variables for its credentials"
    )
    args = parser.parse_args(argv)
    project = args.project.resolve()
    log_run(project, "update" if args.after_update else "copy")
    if args.after_update:
        announce_update()
    failure = lock(project, Index(args.index_url, args.index_credentials))
    if failure is None:
        report_success(project, args.after_update)
        return 0
    report_failure(project, failure)
    return 1 if strict() else 0


if __name__ == "__main__":
    sys.exit(main())
