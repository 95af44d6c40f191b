"""Run a child process under a time limit, and never leave it running behind the hook."""

from __future__ import annotations

import subprocess
from pathlib import Path


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
    """Terminate, and kill what does not end within 10 s."""
    process.terminate()
    try:
        process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
