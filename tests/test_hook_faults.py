"""The lock hook under faults, each with a real process: the project survives whatever happens.

Every case renders a project with tasks off, then runs `hooks/lock_project.py --project <dir>`
twice at once, in normal and in strict mode (ML_TEMPLATE_STRICT=1), each on its own copy.
For every case:

- the project is kept and whole: every rendered file present and byte-for-byte unchanged;
- `uv.lock` is absent, or a complete lock uv wrote;
- the message names the failure class (and no other) and what to run next;
- normal mode exits 0 (so Copier keeps the files), strict mode exits 1;
- nothing is written beside the project, and no uv process is left running in it.

uv runs with its default retries and timeouts; each run gets a fresh UV_CACHE_DIR so a warm
cache cannot hide a fault of the index.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from copier.errors import TaskError
from plumbum import local

from harness import mirror
from harness.cache import cache_root
from harness.compat import tomllib
from harness.index_server import IndexFiles, IndexServer
from harness.loopback import closed_port_url
from harness.read_only import read_only_prefix
from harness.render import (
    ANSWER_SETS,
    CATALOGUE,
    ROOT,
    answers_for,
    copier_copy_cli,
    local_answers,
    render,
)

HOOK = ROOT / "hooks" / "lock_project.py"
# uv's rule for an index's credential variables: the name in upper case, other characters as "_".
INDEX_ENV = "UV_INDEX_" + re.sub(r"[^A-Z0-9]", "_", CATALOGUE["torch_index_name"].upper())
SLOW_TIMEOUT = "5"  # ML_TEMPLATE_LOCK_TIMEOUT for the stalled-index case, in seconds

# One distinct phrase per failure class; a message must carry its own and no other.
CLASSES = {
    "network": "could not be reached or answered with an error",
    "timeout": "took longer than",
    "missing": "a package is missing from an index",
    "conflict": "cannot be satisfied",
    "no-uv": "uv is not on PATH",
    "interrupted": "interrupted while locking",
    "permission": "permission denied",
    "auth": "refused access without valid credentials",
    "python": "could not download one",
}
PROBE = "torch-uv-bare"  # the answer set every fault is tried on
PROBE_SLUG = ANSWER_SETS[PROBE]["project_name"].lower().replace(" ", "-")


def probe_answers(index_url: str, **overrides) -> dict:
    return answers_for(PROBE, **local_answers(index_url, **overrides))


@pytest.fixture(scope="module")
def index_files(tmp_path_factory) -> IndexFiles:
    """Small synthetic CPU wheels for the HTTP index (the real torch wheel is 200 MB)."""
    root = tmp_path_factory.mktemp("fault-wheels")
    mirror.build_mirror(root, synthetic=True)
    return IndexFiles.from_mirror(root / "simple")


@pytest.fixture(scope="module")
def x86_only_mirror(tmp_path_factory) -> Iterator[str]:
    """Served on loopback: the probe's uv installer refuses a host-folder index."""
    root = tmp_path_factory.mktemp("x86-mirror")
    mirror.build_mirror(root, synthetic=True)
    with IndexServer(IndexFiles.from_mirror(root / "simple")) as server:
        yield server.url


# --------------------------------------------------------------------------- the harness


PREFIX = f"[{CATALOGUE['contracts']['name']}]"


def plain(output: str) -> str:
    """The hook's words without its line prefix and line breaks, to find a phrase in."""
    return " ".join(output.replace(PREFIX, " ").split())


def said(phrase: str, output: str) -> bool:
    """Whether the hook said `phrase`, however its lines were wrapped."""
    return " ".join(phrase.split()) in plain(output)


def split_phrases(output: str) -> list[str]:
    """Parenthesised phrases the hook split across its lines though they fit on one line."""
    room = 80 - len(PREFIX) - 1
    lines = [line.split(PREFIX, 1)[1].strip() for line in output.splitlines() if PREFIX in line]
    split, phrase, depth = [], [], 0
    for line in lines:
        for char in line:
            if char == "(":
                depth += 1
            if depth:
                phrase.append(char)
            if char == ")" and depth:
                depth -= 1
                if depth == 0:
                    text = "".join(phrase)
                    if "\n" in text and len(text) <= room:
                        split.append(text.replace("\n", " "))
                    phrase = []
        if depth:  # open at the line's end: the phrase runs on into the next line
            phrase.append("\n")
    return split


def command_line(project: Path, command: str) -> str:
    """The next step as the hook prints it: a line of its own, to copy."""
    return f"\n    cd {project} && {command}\n"


def digest_tree(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def without_conda_locks(files: dict[str, str]) -> dict[str, str]:
    """The conda layer locks before uv does; its locks are test_conda_lock.py's to check."""
    return {name: digest for name, digest in files.items() if not name.startswith("conda-")}


def listing_outside(nest: Path, project: Path) -> list[str]:
    """Everything under the project's parent that is not inside the project."""
    return sorted(
        str(path.relative_to(nest))
        for path in nest.rglob("*")
        if path != project and project not in path.parents
    )


def processes_in(project: Path) -> list[int]:
    """Processes whose working directory is inside the project (a uv left running)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == project or project in cwd.parents:
            found.append(int(entry.name))
    return found


@dataclass
class Case:
    """One rendered project and the hook run on it."""

    strict: bool
    nest: Path
    project: Path
    cache: Path
    files: dict[str, str]
    outside: list[str]
    process: subprocess.Popen | None = None
    output: str = ""
    returncode: int | None = None

    @classmethod
    def render(cls, root: Path, strict: bool, answers: dict) -> Case:
        nest = root / ("strict" if strict else "normal")
        project = render(nest / "project", answers)
        case = cls(strict, nest, project, root / f"uv-cache-{strict}", digest_tree(project), [])
        case.outside = listing_outside(nest, project)
        return case

    def env(self, **extra: str | None) -> dict[str, str]:
        env = {**os.environ, "UV_CACHE_DIR": str(self.cache), "ML_TEMPLATE_STRICT": "0"}
        env.pop("UV_NO_CACHE", None)
        if self.strict:
            env["ML_TEMPLATE_STRICT"] = "1"
        for key, value in extra.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def start(
        self,
        *,
        prefix: tuple[str, ...] = (),
        new_session: bool = False,
        python: str = sys.executable,
        env: Mapping[str, str | None] | None = None,
    ) -> subprocess.Popen:
        self.process = subprocess.Popen(
            [
                *prefix,
                python,
                str(HOOK),
                "--project",
                str(self.project),
            ],
            cwd=self.nest,
            env=self.env(**(env or {})),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=new_session,
        )
        return self.process

    def wait(self, timeout: float = 180) -> Case:
        assert self.process is not None, "start() first"
        try:
            self.output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the hook outlived {timeout:g} s; still running:\n{self.stop_all()}")
        self.returncode = self.process.returncode
        return self

    def stop_all(self) -> str:
        """The hook and what it started, listed, then killed."""
        assert self.process is not None
        listing = subprocess.run(
            ["ps", "-eo", "pid=,ppid=,stat=,etime=,args="], capture_output=True, text=True
        ).stdout
        rows = [(int(line.split()[0]), int(line.split()[1]), line) for line in listing.splitlines()]
        tree = {self.process.pid}
        for _ in range(4):  # the hook, uv, what uv runs, and what that runs
            tree |= {pid for pid, parent, _ in rows if parent in tree}
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.communicate()
        return "\n".join(line for pid, _, line in rows if pid in tree)

    def check(self, kind: str | None) -> None:
        """The guarantees every fault case must keep; kind=None for a successful lock."""
        where = f"({'strict' if self.strict else 'normal'} mode)\n{self.output}"
        assert "Traceback" not in self.output, where
        after = without_conda_locks(digest_tree(self.project))
        lock = after.pop("uv.lock", None)
        assert after == self.files, f"the project changed {where}"
        assert listing_outside(self.nest, self.project) == self.outside, f"wrote outside {where}"
        assert not processes_in(self.project), f"a process is still running in the project {where}"
        # Only a word longer than a line (a temporary path, a URL uv quotes) may run past 80.
        judged = [line for line in self.output.splitlines() if PREFIX in line]
        assert all(len(line) <= 80 or max(map(len, line.split())) > 40 for line in judged), where
        assert split_phrases(self.output) == [], where
        if kind is None:
            assert self.returncode == 0, where
            assert lock is not None, where
            data = tomllib.loads((self.project / "uv.lock").read_text(encoding="utf-8"))
            names = {package["name"] for package in data["package"]}
            assert data["version"] >= 1 and {PROBE_SLUG, "torch"} <= names, where
            # The next step, to copy; the index is on loopback, which the build reaches only
            # on the host's network, and the words say how make build does that.
            assert said("uv.lock is written and CPU-only; next, build the image:", self.output)
            assert command_line(self.project, "make build") in self.output, where
            assert said("make build passes --network host", self.output), where
            return
        assert lock is None, f"uv.lock was left behind {where}"
        assert self.returncode == (1 if self.strict else 0), where
        assert said("could not lock the project: ", self.output), where
        assert said(CLASSES[kind], self.output), where
        for other, phrase in CLASSES.items():
            if other != kind:
                assert not said(phrase, self.output), f"{kind} reported as {other} {where}"
        # The conda layer is locked before uv.lock; these faults stop that lock too, so the
        # project is not complete and the next step relocks both layers.
        # Without a Python to download, the conda lock fails too unless uv still holds an
        # environment for its script: the hook must report whichever happened.
        conda_written = any(self.project.glob("conda-*.lock"))
        no_conda_lock = kind in ("no-uv", "permission") or (kind == "python" and not conda_written)
        state = "kept, but has no conda lock yet" if no_conda_lock else "kept and complete"
        assert said(
            f"Your project in {self.project} is {state}; uv.lock is absent.", self.output
        ), where
        next_step = "make lock" if no_conda_lock else "uv lock"
        if kind == "python":
            next_step = f"uv python install && {next_step}"
        assert command_line(self.project, next_step) in self.output, where


def run_both(
    root: Path, answers: dict, python: str = sys.executable, **env: str | None
) -> list[Case]:
    """Normal and strict mode at once, each on its own copy of the project."""
    cases = [Case.render(root, strict, answers) for strict in (False, True)]
    for case in cases:
        case.start(python=python, env=env)
    return [case.wait() for case in cases]


def python_310() -> str | None:
    """A Python 3.10 interpreter, the oldest the hook supports, if this machine has one."""
    candidates = [
        shutil.which("python3.10"),
        *map(str, sorted(Path.home().glob(".pyenv/versions/3.10*/bin/python3.10"))),
    ]
    for candidate in filter(None, candidates):
        check = "import sys; assert sys.version_info[:2] == (3, 10)"
        probe = subprocess.run([candidate, "-c", check], capture_output=True, check=False)
        if probe.returncode == 0:
            return candidate
    return None


def copier_dependencies(python: str) -> Path:
    """PyYAML for `python`: Copier's own Python always has it, and the hook reads the catalogue."""
    target = cache_root() / "hook-python-3.10"
    if not (target / "yaml").is_dir():
        subprocess.run(
            [
                "uv",
                "pip",
                "install",
                "--quiet",
                "--python",
                python,
                "--target",
                str(target),
                "pyyaml",
            ],
            check=True,
            capture_output=True,
        )
    return target


# --------------------------------------------------------------------------- the matrix


@pytest.mark.parametrize("interpreter", ["current", "3.10"])
def test_control_a_healthy_index_locks(tmp_path, index_files, interpreter):
    """The harness itself: against a healthy index both modes lock and exit 0, also when the
    hook runs on Python 3.10 (no tomllib: it checks the lock another way; uv runs the report)."""
    python = sys.executable if interpreter == "current" else python_310()
    if python is None:
        pytest.skip("no Python 3.10 interpreter on this machine")
    env = {} if interpreter == "current" else {"PYTHONPATH": str(copier_dependencies(python))}
    with IndexServer(index_files) as server:
        for case in run_both(tmp_path, probe_answers(server.url), python=python, **env):
            case.check(None)
            assert "uv.lock footprint" in case.output  # the lock report ran


def test_private_index_without_credentials(tmp_path, index_files):
    """A 401 from the index is named as such, with the variables uv reads credentials from."""
    with IndexServer(index_files, auth=("ci-user", "s3cr3t")) as server:
        cases = run_both(
            tmp_path,
            probe_answers(server.url),
            UV_INDEX_PYTORCH_CPU_USERNAME=None,
            UV_INDEX_PYTORCH_CPU_PASSWORD=None,
        )
    for case in cases:
        case.check("auth")
        assert said(f"{INDEX_ENV}_USERNAME and {INDEX_ENV}_PASSWORD", case.output)


@pytest.mark.parametrize(
    ("fault", "kind", "uv_words"),
    [
        ("503", "network", "503 Service Unavailable"),
        ("truncated", "network", "end of file before message length reached"),
        ("404", "missing", "torch was not found in the package registry"),
    ],
)
def test_index_fault(tmp_path, index_files, fault, kind, uv_words):
    with IndexServer(index_files, fault) as server:
        cases = run_both(tmp_path, probe_answers(server.url))
        assert server.requests, "uv never asked the index"
    for case in cases:
        case.check(kind)
        assert said(uv_words, case.output)  # uv's own reason, passed on


def test_index_slower_than_the_lock_timeout(tmp_path, index_files):
    with IndexServer(index_files, "slow", delay=120) as server:
        started = time.monotonic()
        cases = run_both(tmp_path, probe_answers(server.url), ML_TEMPLATE_LOCK_TIMEOUT=SLOW_TIMEOUT)
        elapsed = time.monotonic() - started
        assert server.stalled.is_set()
    assert elapsed < 60, "the hook did not stop uv at its timeout"
    for case in cases:
        case.check("timeout")
        assert said("raise ML_TEMPLATE_LOCK_TIMEOUT", case.output)


def test_unreachable_index(tmp_path):
    for case in run_both(tmp_path, probe_answers(closed_port_url())):
        case.check("network")


def test_uv_missing(tmp_path, x86_only_mirror):
    path = os.pathsep.join(
        folder
        for folder in os.environ.get("PATH", "").split(os.pathsep)
        if folder and not (Path(folder) / "uv").exists()
    )
    assert shutil.which("uv", path=path) is None
    for case in run_both(tmp_path, probe_answers(x86_only_mirror), PATH=path, UV=None):
        case.check("no-uv")
        assert said("once uv is installed", case.output)


def test_python_missing_and_not_downloadable(tmp_path, x86_only_mirror):
    """uv must fetch the project's Python and cannot: not an index problem."""
    dead_mirror = closed_port_url().removesuffix("/simple")
    for case in run_both(
        tmp_path,
        probe_answers(x86_only_mirror),
        UV_PYTHON_PREFERENCE="only-managed",
        UV_PYTHON_INSTALL_DIR=str(tmp_path / "no-pythons"),
        UV_PYTHON_INSTALL_MIRROR=dead_mirror,
        UV_PYTHON_DOWNLOADS="automatic",
    ):
        case.check("python")
        assert "uv python install" in case.output


def test_unsatisfiable_platform(tmp_path, x86_only_mirror):
    """linux/arm64 against a mirror that only has x86_64 torch: a conflict, not the network."""
    answers = probe_answers(x86_only_mirror, lock_platforms=["linux/arm64"])
    for case in run_both(tmp_path, answers):
        case.check("conflict")
        assert said("compatible wheels", case.output)
        assert said("environments", case.output)  # the next step says what to change


@pytest.mark.parametrize("target", ["hook", "process-group"])
def test_interrupted_mid_lock(tmp_path, index_files, target):
    """SIGINT once uv is waiting on the index: to the hook alone, or to the whole group (Ctrl-C)."""
    for strict in (False, True):
        with IndexServer(index_files, "slow", delay=120) as server:
            case = Case.render(tmp_path, strict, probe_answers(server.url))
            process = case.start(new_session=True, env={"ML_TEMPLATE_LOCK_TIMEOUT": "300"})
            assert process.stdout is not None  # a pipe, as start() asks
            first_line = ""
            while "locking against" not in first_line:  # after the conda layer's lines
                first_line = process.stdout.readline()
                assert first_line, "the hook never started uv lock"
            assert server.stalled.wait(60), "uv never reached the index"
            if target == "hook":
                process.send_signal(signal.SIGINT)
            else:
                os.killpg(process.pid, signal.SIGINT)
            case.wait(timeout=60)
            case.output = first_line + case.output
        case.check("interrupted")


def test_read_only_project(tmp_path, x86_only_mirror):
    """Root ignores file modes, so as root the project is a read-only bind mount instead."""
    cases = [
        Case.render(tmp_path, strict, probe_answers(x86_only_mirror)) for strict in (False, True)
    ]
    as_root = os.geteuid() == 0
    try:
        for case in cases:
            if as_root:
                prefix = read_only_prefix(case.project)
                if prefix is None:
                    pytest.skip(
                        "running as root, and no private read-only bind mount is "
                        "permitted here (unshare/mount refused), so nothing is read-only"
                    )
                case.start(prefix=prefix)
            else:
                case.project.chmod(0o555)
                case.start()
            case.wait()
    finally:
        for case in cases:
            case.project.chmod(0o755)
    for case in cases:
        case.check("permission")
        assert said("as a user who may write to the project", case.output)


# --------------------------------------------------------------------------- through Copier


@contextlib.contextmanager
def task_env(monkeypatch, **values: str | None):
    """Environment for Copier's tasks. Copier runs them with plumbum's `local.env`, a copy of
    os.environ taken when plumbum is imported, so monkeypatching os.environ alone misses them."""
    for key, value in values.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    with local.env(**{k: v for k, v in values.items() if v is not None}):
        for key in [k for k, v in values.items() if v is None]:
            if key in local.env:
                del local.env[key]
        yield


def test_copier_keeps_the_project_when_the_index_is_unreachable(tmp_path, monkeypatch, capfd):
    """`copier copy` runs the hook as its task; with the index down, Copier keeps every file."""
    answers = probe_answers(closed_port_url())
    reference = digest_tree(render(tmp_path / "reference", answers))
    destination = tmp_path / "nest" / "project"
    with task_env(monkeypatch, UV_CACHE_DIR=str(tmp_path / "uv-cache"), ML_TEMPLATE_STRICT=None):
        render(destination, answers, tasks=True)
    output = capfd.readouterr().out
    kept = without_conda_locks(digest_tree(destination))
    # Every file, unchanged, and no uv.lock. Only the answers file may differ: Copier records
    # a fresh commit id for a template with uncommitted changes on every render.
    assert kept.keys() == reference.keys()
    assert {k: v for k, v in kept.items() if k != ".copier-answers.yml"} == {
        k: v for k, v in reference.items() if k != ".copier-answers.yml"
    }
    recorded = yaml.safe_load((destination / ".copier-answers.yml").read_text())
    assert {k: recorded[k] for k in answers} == answers
    assert sorted(p.name for p in (tmp_path / "nest").iterdir()) == ["project"]
    assert said(CLASSES["network"], output)
    assert command_line(destination, "uv lock") in output


@pytest.mark.parametrize("index", ["unreachable", "working"])
def test_copier_cli_messages_follow_the_lock_outcome(tmp_path, x86_only_mirror, index):
    """What a user reads after `copier copy`: the hook's outcome, then a neutral next-steps note."""
    url = closed_port_url() if index == "unreachable" else x86_only_mirror
    answers = tmp_path / "answers.yml"
    answers.write_text(yaml.safe_dump(probe_answers(url)))
    destination = tmp_path / "project"
    env = {**os.environ, "UV_CACHE_DIR": str(tmp_path / "uv-cache"), "ML_TEMPLATE_STRICT": "0"}
    result = copier_copy_cli(answers, destination, env)
    assert result.returncode == 0, result.stderr
    if index == "unreachable":
        assert said(CLASSES["network"], result.stdout)
        assert not said("uv.lock is written", result.stdout)
    else:
        assert said("uv.lock is written and CPU-only", result.stdout)
    # Copier echoes the task's command: it names no credential variable.
    echoed = [line for line in result.stderr.splitlines() if "Running task" in line]
    assert echoed and not any("UV_INDEX" in line or "credential" in line for line in echoed)
    message = result.stderr[result.stderr.index("Copier wrote") :]
    assert "ready" not in message and "docker build" not in message
    assert "uv sync" in message and "make test" in message and "README.md" in message


def test_copier_strict_mode_fails_the_copy(tmp_path, monkeypatch, index_files):
    """For CI: ML_TEMPLATE_STRICT=1 turns a failed lock into Copier's TaskError."""
    env = task_env(monkeypatch, UV_CACHE_DIR=str(tmp_path / "uv-cache"), ML_TEMPLATE_STRICT="1")
    with env, IndexServer(index_files, "404") as server:
        answers = probe_answers(server.url)
        with pytest.raises(TaskError):
            render(tmp_path / "project", answers, tasks=True)
    # Copier removes a new project whose task failed (its cleanup_on_error): strict is for CI.
    assert not (tmp_path / "project").exists()


def test_a_restored_lock_keeps_its_permissions(tmp_path, monkeypatch):
    """A lock put back after a failed relock stays readable by the image build's user."""
    monkeypatch.syspath_prepend(str(ROOT / "hooks"))  # as when Copier runs the hook by path
    hook = importlib.import_module("lock_project")
    lock = tmp_path / "uv.lock"
    lock.write_text("version = 1\n")
    lock.chmod(0o644)
    guard = hook.LockGuard(lock)
    lock.write_text("half-written by a failed relock")

    guard.restore()

    assert lock.read_text() == "version = 1\n"
    assert lock.stat().st_mode & 0o777 == 0o644


def test_interrupted_during_the_conda_lock(tmp_path, x86_only_mirror):
    """Ctrl-C while the conda channel stalls: no conda lock yet, so `make lock` is next, and the
    project is not called complete (its constraint-dependencies are still empty)."""
    with socket.socket() as channel:
        # Listening but never accepting: the kernel takes the connection, nothing answers it.
        channel.bind(("127.0.0.1", 0))
        channel.listen(16)
        url = f"http://127.0.0.1:{channel.getsockname()[1]}/channel"
        case = Case.render(tmp_path, False, probe_answers(x86_only_mirror, conda_channel=url))
        process = case.start(new_session=True, env={"ML_TEMPLATE_LOCK_TIMEOUT": "300"})
        readable, _, _ = select.select([channel], [], [], 120)
        assert readable, "the conda lock never reached the channel"
        os.killpg(process.pid, signal.SIGINT)
        case.wait(timeout=60)
    assert "Traceback" not in case.output, case.output
    assert without_conda_locks(digest_tree(case.project)) == case.files, case.output
    assert not list(case.project.glob("conda-*.lock")) and not (case.project / "uv.lock").exists()
    assert said("interrupted while locking the conda layer", case.output), case.output
    assert not said("kept and complete", case.output), case.output
    assert said("kept, but has no conda lock yet; uv.lock is absent.", case.output), case.output
    assert command_line(case.project, "make lock") in case.output, case.output


@pytest.mark.parametrize(
    "line",
    [
        # Both split "(make build)" before the hook held such phrases together.
        "uv.lock is written and CPU-only: /home/someone/src/my-service is ready to build "
        "(make build).",
        "uv.lock is written and CPU-only: /home/me/src/embedding-service is ready to build "
        "(make build).",
    ],
)
def test_wrapping_keeps_a_parenthesised_phrase_whole(monkeypatch, line):
    """A phrase in parentheses that fits on a line is never split across two prefixed lines."""
    monkeypatch.syspath_prepend(str(ROOT / "hooks"))  # as when Copier runs the hook by path
    contracts = importlib.import_module("contracts")
    wrapped = contracts.wrap(line)
    assert len(wrapped) > 1 and all(len(part) <= 80 for part in wrapped)
    assert split_phrases("\n".join(wrapped)) == []
    assert plain("\n".join(wrapped)) == line
