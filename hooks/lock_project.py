"""Lock a generated project against its CPU index, without ever harming the project.

Copier runs this after `copier copy` (as a task) and after `copier update` (as a
migration, with --after-update). It uses only the standard library and PyYAML, because it
runs under whichever Python runs Copier (PyYAML is one of Copier's own dependencies).

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
from dataclasses import dataclass, field
from pathlib import Path

import conda_layer
import yaml  # Copier's own dependency
from bounded import Stopped, run_to_end
from contracts import (
    credential_variables,
    on_loopback,
    script_result,
    uv_kind,
    without_result,
    wrap,
)

ANSWERS = ".copier-answers.yml"
CONFLICT_MARKERS = ("<<<<<<< ", "=======", ">>>>>>> ")
# Every file the hook reads or runs: a conflict marker in any of them stops the relock.
INPUTS = (
    "pyproject.toml",
    "environment.yml",
    "scripts/conda_lock.py",
    "scripts/lock_report.py",
    ANSWERS,
)
REPORT = Path("scripts") / "lock_report.py"
UV_INSTALL_URL = "https://docs.astral.sh/uv/getting-started/installation/"
NOT_WRITABLE = "uv.lock could not be written (permission denied: the project is read-only)"
NOT_WRITABLE_WHEN = "as a user who may write to the project"


@dataclass
class Failure:
    """Why locking failed, in words for the user, and what to run once it is fixed."""

    reason: str
    detail: str = ""
    next_step: str = "uv lock"
    when: str = ""  # the condition under which next_step can succeed, in words
    lock_state: str = ""  # what became of uv.lock, when the failure came after it was written
    or_step: str = ""  # another command that would do instead, and when
    or_when: str = ""
    conda_locked: bool = False  # whether the conda layer was locked in this run


def say(*lines: str) -> None:
    for line in lines:
        for part in wrap(line):
            print(part, flush=True)


def say_command(project: Path, command: str) -> None:
    """A command on a line of its own, unprefixed and unwrapped, to copy as it is."""
    print(f"    cd {project} && {command}", flush=True)


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


@dataclass
class Index:
    """The project's CPU index, for messages only: its URL from the answers, uv's variables,
    and whether the image build reaches a mirror only on the host's network."""

    url: str = "the CPU index"
    credentials: str = " and ".join(credential_variables())
    loopback: bool = False

    @classmethod
    def of(cls, project: Path) -> Index:
        """The URL the project was answered with; a word for it when that cannot be read."""
        try:
            answers = yaml.safe_load((project / ANSWERS).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return cls()
        if not isinstance(answers, dict):
            return cls()
        url, channel = answers.get("torch_index_url"), answers.get("conda_channel")
        sources = [value for value in (url, channel) if isinstance(value, str)]
        loopback = any(on_loopback(source) for source in sources)
        return cls(url, loopback=loopback) if isinstance(url, str) and url else cls()


# What each kind of uv failure (contracts.uv_kind) means, in words, and when `uv lock` can work
# again: {url} is the project's index, {credentials} uv's variables for it.
UV_FAILURES: dict[str | None, dict[str, str]] = {
    # uv reports a 401 on the index as "not found" with a hint: the hint is the cause.
    "auth": {
        "reason": "the index refused access without valid credentials (is {url} private?)",
        "when": "with {credentials} set in the environment",
    },
    "missing": {"reason": "a package is missing from an index (is torch served at {url}?)"},
    "platform": {
        "reason": "the dependencies cannot be satisfied: a package has no wheels for one of "
        "the lock platforms (a conflict, not a network problem)",
        "when": "after removing that platform from environments and required-environments "
        "in pyproject.toml, or with an index that has its wheels",
    },
    "conflict": {
        "reason": "the dependencies cannot be satisfied together (a conflict, not a network "
        "problem)",
        "when": "after changing the conflicting requirement in pyproject.toml",
    },
    # uv needs an interpreter for requires-python and could not fetch one: not the index.
    "python": {
        "reason": "uv needs the project's Python to lock, found none installed, and could not "
        "download one",
        "next_step": "uv python install && uv lock",
    },
    "permission": {
        "reason": "uv could not write a file; permission denied (is the project or uv's cache "
        "read-only?)",
        "when": NOT_WRITABLE_WHEN,
    },
    "network": {"reason": "a package index could not be reached or answered with an error"},
    None: {"reason": "uv lock failed"},
}


def classify(uv_output: str, index: Index) -> Failure:
    """Name what went wrong from uv's message (catalogue.yml's uv_phrases, in their order)."""
    words = {"url": index.url, "credentials": index.credentials}
    meaning = {key: text.format(**words) for key, text in UV_FAILURES[uv_kind(uv_output)].items()}
    return Failure(
        meaning["reason"],
        shorten(uv_output),
        next_step=meaning.get("next_step", "uv lock"),
        when=meaning.get("when", ""),
    )


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
    command = [uv, "lock"]
    result = run_to_end(
        command, project, timeout, what="uv lock", waits_on="index", merge_stderr=True
    )
    if isinstance(result, Stopped):
        return Failure(result.reason, when=result.when)
    if result.returncode != 0:
        return classify(result.stdout, index)
    return None


def conflicted_inputs(project: Path) -> list[str]:
    return [name for name in INPUTS if has_conflict_markers(project / name)]


def pending_rejects(project: Path) -> list[str]:
    return [name for name in INPUTS if (project / f"{name}.rej").exists()]


def ready_to_lock(project: Path) -> Failure | None:
    """Whether the project can be locked now: its inputs whole and its lock writable."""
    pyproject, lockfile = project / "pyproject.toml", project / "uv.lock"
    if not pyproject.exists():
        return Failure(f"{pyproject} does not exist", next_step="copier recopy --trust")
    if not writable(project):
        # Checked first: locking takes minutes, and its result could not be saved.
        return Failure(NOT_WRITABLE, next_step="make lock", when=NOT_WRITABLE_WHEN)
    if has_conflict_markers(lockfile):
        # The lock is derived data: rebuild it from pyproject.toml rather than merge it. Removed
        # before the inputs' check, so no conflict marker survives in it even when that fails;
        # on copy too, as `copier recopy` keeps the project's uv.lock.
        say("uv.lock had merge conflict markers; removing it, to rebuild it from pyproject.toml")
        lockfile.unlink()
    conflicted = conflicted_inputs(project)
    if conflicted:
        names = ", ".join(conflicted)
        return Failure(
            f"{names} {'has' if len(conflicted) == 1 else 'have'} merge conflict markers from "
            "the update; resolve them first",
            next_step="make lock",
            when=f"after resolving the conflicts in {names}",
        )
    # A lock made now would leave out the user's edits that wait in a .rej file.
    rejected = pending_rejects(project)
    if rejected:
        names = ", ".join(f"{name}.rej" for name in rejected)
        return Failure(
            f"{names} holds edits of yours that the update could not apply; apply them by hand "
            "and delete the .rej file first",
            next_step="make lock",
            when=f"after applying {names} and deleting it",
        )
    return None


@dataclass
class LockRun:
    """One run of both locks and the report in a project that is ready to lock."""

    project: Path
    uv: str
    index: Index
    timeout: float
    conda: conda_layer.CondaFailure | None = None
    conda_locked: bool = False
    notes: list[str] = field(default_factory=list)

    def lock_layers(self) -> Failure | None:
        """The conda layer, then uv.lock; uv.lock is put back as it was unless both finish."""
        lockfile = self.project / "uv.lock"
        guard = LockGuard(lockfile)
        try:
            self.conda = conda_layer.lock_conda(self.project, self.uv, self.timeout)
            self.conda_locked = self.conda is None
            if self.conda is not None:
                say(*self.conda.lines())
            say(f"locking against {self.index.url} with {self.uv} ...")
            failure = run_uv_lock(self.uv, self.project, self.index, self.timeout)
            if failure is None and not is_complete_lock(lockfile):
                failure = Failure("uv lock finished but uv.lock is not a complete lock")
        except KeyboardInterrupt:
            # A second Ctrl-C must not stop the restore halfway.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            guard.restore()
            where = "" if self.conda_locked else " the conda layer"
            failure = Failure(f"interrupted while locking{where}")
        except BaseException:
            guard.restore()
            raise
        if failure is not None:
            guard.restore()
            return self.relocking_both(failure)
        return None

    def relocking_both(self, failure: Failure) -> Failure:
        """Until the conda layer is locked, only `make lock` brings both locks up to date."""
        if not self.conda_locked:
            failure.next_step = failure.next_step.replace("uv lock", "make lock")
        failure.conda_locked = self.conda_locked
        return failure

    def check_report(self) -> Failure | None:
        """After a relock: the conda layer's failure if any, else what the report found."""
        failure = self.report_finding()
        if failure is not None:
            failure.conda_locked = self.conda_locked
        return failure

    def report_finding(self) -> Failure | None:
        written = "uv.lock is written"
        report = show_report(self.project, self.uv)
        if self.conda is not None:  # the cause of any overlap the report found
            return Failure(
                self.conda.summary(),
                next_step=self.conda.next_step,
                when=self.conda.when,
                lock_state=conda_layer.STALE_PINS,
                or_step=self.conda.or_step,
                or_when=self.conda.or_when,
            )
        if report is None:
            return Failure(
                f"{REPORT} crashed, so whether uv.lock is CPU-only is unknown (see above)",
                next_step=f"uv run --script {REPORT}",
                when=f"after fixing {REPORT}",
                lock_state=written,
            )
        if report["status"] == "problems":
            return Failure(
                "the lock is not CPU-only, or both layers install a package: "
                + "; ".join(report.get("problems", [])),
                next_step=f"make lock && uv run --script {REPORT}",
                when="after fixing pyproject.toml or environment.yml",
                lock_state=f"{written}, with the problems above",
            )
        if report["status"] == "error":
            return Failure(
                f"{REPORT} could not read the lock: {report.get('message', '')}",
                next_step=f"uv run --script {REPORT}",
                lock_state=written,
            )
        return None


def show_report(project: Path, uv: str) -> dict | None:
    """Print the project's own lock report; its JSON line, or None when it crashed."""
    if not (project / REPORT).exists():
        return {"status": "ok"}
    command = [uv, "run", "--script", str(project / REPORT), "--project", str(project)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    print(result.stdout, end="", flush=True)
    outcome = script_result(result.stderr, "lock_report")
    if outcome is None:
        say(f"{REPORT} crashed:", *(f"    {line}" for line in shorten(result.stderr).splitlines()))
    elif outcome["status"] == "error":
        say(*without_result(result.stderr).strip().splitlines())
    return outcome


def uv_missing() -> Failure:
    return Failure(
        f"uv is not on PATH; install it, as {UV_INSTALL_URL} shows",
        next_step="make lock",
        when="once uv is installed",
    )


def lock(project: Path, index: Index) -> Failure | None:
    """Lock the project: check it, lock both layers, then report; the first failure found."""
    failure = ready_to_lock(project)
    if failure is not None:
        return failure
    uv = find_uv()
    if uv is None:
        return uv_missing()
    run = LockRun(project, uv, index, lock_timeout())
    return run.lock_layers() or run.check_report()


def project_state(project: Path, failure: Failure) -> str:
    """One true sentence on what the project holds now."""
    if failure.lock_state:
        uv_state = failure.lock_state
    else:
        kept = (project / "uv.lock").exists()
        uv_state = "uv.lock was left as it was" if kept else "uv.lock is absent"
    if failure.conda_locked or not (project / conda_layer.SCRIPT).exists():
        return f"Your project in {project} is kept and complete; {uv_state}."
    if any(project.glob("conda-*.lock")):
        return f"Your project in {project} is kept; its conda locks are not relocked; {uv_state}."
    return f"Your project in {project} is kept, but has no conda lock yet; {uv_state}."


def report_failure(project: Path, failure: Failure) -> None:
    lines = [f"could not lock the project: {failure.reason}"]
    if failure.detail:
        lines += ["uv said:"] + [f"    {line}" for line in failure.detail.splitlines()]
    lines += [project_state(project, failure)]
    say(*lines, f"Next, {failure.when}, run:" if failure.when else "Next, run:")
    say_command(project, failure.next_step)
    if failure.or_step:
        say(f"Or, {failure.or_when}, run:" if failure.or_when else "Or run:")
        say_command(project, failure.or_step)


def report_success(project: Path, after_update: bool, index: Index) -> None:
    if after_update:
        say("uv.lock and the conda locks are up to date and CPU-only.")
        return
    say("uv.lock is written and CPU-only; next, build the image:")
    say_command(project, "make build")
    if index.loopback:
        say(
            "Its package mirrors are on loopback, which an image build reaches only on the "
            "host's network, so make build passes --network host (NETWORK= turns that off)."
        )


def announce_changes(project: Path) -> None:
    """After an update, whether it changed any file: Copier's closing words cannot know."""
    try:
        command = ["git", "status", "--porcelain"]
        result = subprocess.run(
            command, cwd=project, capture_output=True, text=True, check=False, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return
    if result.returncode != 0:
        return
    changed = len(result.stdout.splitlines())
    if changed == 0:
        say("The update changed no file: the project is as you last committed it.")
    else:
        files = "file" if changed == 1 else "files"
        say(f"The update changed {changed} {files}, none committed yet: review, then commit.")


def conflicts_left(project: Path) -> tuple[list[str], list[str]]:
    """Files the update left in conflict: with markers (git's unmerged paths), and *.rej files."""
    marked = set(conflicted_inputs(project))
    try:
        command = ["git", "diff", "--name-only", "--diff-filter=U"]
        result = subprocess.run(
            command, cwd=project, capture_output=True, text=True, check=False, timeout=60
        )
        if result.returncode == 0:
            marked.update(result.stdout.split())
    except (OSError, subprocess.TimeoutExpired):
        pass  # no git: the inputs' own check above still holds
    rejects = [
        str(path.relative_to(project))
        for path in sorted(project.rglob("*.rej"))
        if ".git" not in path.relative_to(project).parts
    ]
    return sorted(marked), rejects


def announce_conflicts(project: Path) -> None:
    """What the update left to resolve by hand, if anything (Copier's message cannot know)."""
    marked, rejects = conflicts_left(project)
    if marked:
        say(
            "The update left conflict markers in:",
            *(f"    {name}" for name in marked),
            "Each conflict is a block of marker lines:",
            "    <<<<<<< before updating",
            "    (your lines)",
            "    =======",
            "    (the template's lines)",
            "    >>>>>>> after updating",
            "Keep what you need, delete the markers, then `git add` the file.",
        )
    if rejects:
        say(
            "Edits of yours that the update could not apply wait in:",
            *(f"    {name}" for name in rejects),
            "Apply each by hand, then delete it.",
        )


def announce_update() -> None:
    """Name the template versions; Copier passes them to migrations as VERSION_FROM/VERSION_TO."""
    old, new = os.environ.get("VERSION_FROM"), os.environ.get("VERSION_TO")
    if old and new:
        say(f"template updated from {old} to {new}" if old != new else f"template {new} kept")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="project directory")
    parser.add_argument("--after-update", action="store_true", help="run as the update migration")
    args = parser.parse_args(argv)
    project = args.project.resolve()
    log_run(project, "update" if args.after_update else "copy")
    if args.after_update:
        announce_update()
        announce_conflicts(project)
    index = Index.of(project)
    failure = lock(project, index)
    if failure is None:
        report_success(project, args.after_update, index)
    else:
        report_failure(project, failure)
    if args.after_update:
        announce_changes(project)
    return 0 if failure is None or not strict() else 1


if __name__ == "__main__":
    sys.exit(main())
