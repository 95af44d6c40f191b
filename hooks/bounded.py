"""Run a child process under a time limit, and never leave it running behind the hook."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

KILL = getattr(signal, "SIGKILL", signal.SIGTERM)  # Windows has no SIGKILL; terminate kills there


@dataclass
class Stopped:
    """Why a command did not finish: it could not start, or outlived its time limit."""

    reason: str
    when: str = ""  # the condition under which running it again can succeed, in words


def run_to_end(
    command: list[str], cwd: Path, timeout: float, *, what: str, waits_on: str, **options: bool
) -> subprocess.CompletedProcess[str] | Stopped:
    """The finished `what` (e.g. "uv lock"), or why it stopped; `waits_on` names what it reads."""
    try:
        result = run_bounded(command, cwd, timeout, **options)
    except OSError as error:
        return Stopped(f"{what} could not be started ({error})")
    if result is None:
        return Stopped(
            f"{what} took longer than {timeout:g} s (a slow or stalled {waits_on}?)",
            when=f"once the {waits_on} is faster, or after you raise ML_TEMPLATE_LOCK_TIMEOUT",
        )
    return result


def run_bounded(
    command: list[str], cwd: Path, timeout: float, *, merge_stderr: bool = False
) -> subprocess.CompletedProcess[str] | None:
    """The finished process, or None when it outlived `timeout` and was stopped.

    Raises OSError when the command cannot start; on Ctrl-C the child is stopped first.
    """
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        text=True,
        # Its own group, so that stopping it reaches what it started (uv run's Python, say).
        start_new_session=hasattr(os, "killpg"),
    )
    try:
        output, errors = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(process)
        return None
    except KeyboardInterrupt:
        stop(process)
        raise
    return subprocess.CompletedProcess(command, process.returncode, output, errors)


def stop(process: subprocess.Popen) -> None:
    """Terminate the child and what it started; kill what does not end within 10 s."""
    for signal_number, grace in ((signal.SIGTERM, 10.0), (KILL, 5.0)):
        send_to_group(process, signal_number)
        try:
            process.communicate(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
    # Only a process that left the group can still hold the pipes: stop reading them.
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    process.wait()


def send_to_group(process: subprocess.Popen, signal_number: int) -> None:
    """The signal to the child's whole group where the system has groups, else to the child."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, signal_number)
        else:
            process.send_signal(signal_number)
    except ProcessLookupError:
        pass  # it has ended already
