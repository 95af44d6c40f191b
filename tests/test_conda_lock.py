"""The conda layer's lock: written at copy, by `make lock` and on update; uv.lock agrees with it.

Projects lock against the local conda channel of harness/conda_channel.py (the builds
facts/conda-forge.yml records, with real PyPI wheels' files where an image installs them),
served on loopback, and against the local CPU torch mirror. What a lock holds is checked against the
channel's own repodata, not against what scripts/conda_lock.py says of itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomlkit
import yaml
from copier import run_copy, run_update
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.utils import canonicalize_name
from packaging.version import Version
from rattler import MatchSpec
from rattler.explicit_environment import ExplicitEnvironmentSpec

from harness.compat import tomllib
from harness.conda_channel import (
    LAGGING,
    ChannelServer,
    build_channel,
    channel_records,
    unreachable_url,
)
from harness.render import (
    CATALOGUE,
    ROOT,
    answers_for,
    copier_copy_cli,
    local_answers,
    render,
)
from tools import conda_facts

HOOK = ROOT / "hooks" / "lock_project.py"
PREFIX = f"[{CATALOGUE['contracts']['name']}]"
UV_ENV = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
PYPI_NAMES = CATALOGUE["conda"]["pypi_names"]
AMD64 = "conda-linux-64.lock"
RECORDS = conda_facts.records()


def newest(name: str) -> str:
    """conda-forge's newest version of a package, as the facts record it."""
    return str(max(Version(r.version) for r in RECORDS if r.name == name))


def pypi_newest(name: str) -> Version:
    with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=60) as response:
        return Version(json.load(response)["info"]["version"])


@pytest.fixture(scope="module")
def channel() -> Path:
    return build_channel()


@pytest.fixture(scope="module")
def channel_url(channel) -> Iterator[str]:
    with ChannelServer(channel) as server:
        yield server.url


def answers(mirror_url: str, channel_url: str, name: str = "default", **overrides) -> dict:
    return answers_for(name, **local_answers(mirror_url, conda_channel=channel_url, **overrides))


def run_hook(project: Path, *extra: str, strict: bool = True) -> subprocess.CompletedProcess:
    env = {**UV_ENV, "ML_TEMPLATE_STRICT": "1" if strict else "0"}
    return subprocess.run(
        [sys.executable, str(HOOK), "--project", str(project), *extra],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def conda_lock_script(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["uv", "run", "--quiet", "--script", "scripts/conda_lock.py", *args],
        cwd=project,
        env=UV_ENV,
        capture_output=True,
        text=True,
        check=False,
    )


def said(phrase: str, output: str) -> bool:
    """Whether the hook said `phrase`, however it wrapped its lines."""
    return " ".join(phrase.split()) in " ".join(output.replace(PREFIX, " ").split())


def next_step(project: Path, command: str) -> str:
    """The command the hook names, on a line of its own."""
    return f"\n    cd {project} && {command}\n"


def result_line(stderr: str) -> dict:
    """The JSON line a generated script ends its stderr with."""
    return json.loads(stderr.strip().splitlines()[-1])[CATALOGUE["contracts"]["name"]]


def digest_tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def locked_records(project: Path, channel: Path, lock: str = AMD64) -> dict[str, dict]:
    """{conda name: repodata record} for each package the lock lists, checked against the channel.

    Every line must be a URL under the channel with the sha256 of that very file.
    """
    spec = ExplicitEnvironmentSpec.from_path(project / lock)
    subdir = str(spec.platform)
    served = channel_records(channel)
    url = yaml.safe_load((project / "environment.yml").read_text())["channels"][0]
    found = {}
    for entry in spec.packages:
        location, _, digest = entry.url.partition("#")
        assert location.startswith(f"{url}/"), location
        folder, filename = location.removeprefix(f"{url}/").split("/")
        assert folder in (subdir, "noarch")
        record = served[folder][filename]
        assert digest == record["sha256"]
        assert digest == hashlib.sha256((channel / folder / filename).read_bytes()).hexdigest()
        found[record["name"]] = record
    return found


def python_distributions(records: dict[str, dict]) -> dict[str, str]:
    """PyPI name -> version of the locked conda packages that depend on python."""
    return {
        canonicalize_name(PYPI_NAMES.get(name, name)): record["version"]
        for name, record in records.items()
        if name != "python"
        and name not in CATALOGUE["conda"]["not_distributions"]
        and any(MatchSpec(dep).name.normalized == "python" for dep in record["depends"])
    }


def uv_versions(project: Path) -> dict[str, set[str]]:
    data = tomllib.loads((project / "uv.lock").read_text())
    versions: dict[str, set[str]] = {}
    for package in data["package"]:
        if "version" in package:
            versions.setdefault(package["name"], set()).add(Version(package["version"]).public)
    return versions


def assert_layers_agree(project: Path, channel: Path) -> dict[str, str]:
    """Every Python distribution both layers hold has one version, conda's, in uv.lock."""
    from_conda = python_distributions(locked_records(project, channel))
    from_uv = uv_versions(project)
    shared = from_conda.keys() & from_uv.keys()
    assert shared, "no package is shared: the check would prove nothing"
    for name in shared:
        assert from_uv[name] == {from_conda[name]}, f"{name}: uv {from_uv[name]}, not conda's"
    return from_conda


# --------------------------------------------------------------------------- the question

CHANNEL_REFUSALS = [
    ("file:///srv/channel", "must not be a file:// URL", "serve the folder"),
    ("https://user:token@host/ch", "must not hold credentials", "auth files"),
    ('https://host/"x"', "must not hold quotes", "Percent-encode"),
    ("ftp://host/channel", "must be an http(s):// URL", "host name"),
    ("conda forge", "must not contain spaces", "conda-forge"),
]


@pytest.mark.parametrize(("value", "rule", "advice"), CHANNEL_REFUSALS)
def test_bad_channel_is_refused_with_a_short_clear_message(tmp_path, value, rule, advice):
    destination = tmp_path / "project"
    with pytest.raises(ValueError, match="question 'conda_channel'") as refused:
        render(destination, answers_for("default", conda_channel=value))
    message = str(refused.value).split("question 'conda_channel': ", 1)[1]
    assert message.startswith(rule) and advice in message
    assert all(len(line) <= 80 for line in str(refused.value).splitlines()), message
    assert not destination.exists()


@pytest.mark.parametrize(
    "value",
    [
        "conda-forge/label/dev",
        "https://mirror.example/conda-forge",
        "http://[::1]:8080/ch",
    ],
)
def test_channel_names_and_urls_reach_environment_yml(tmp_path, value):
    project = render(tmp_path / "project", answers_for("default", conda_channel=value))
    channels = yaml.safe_load((project / "environment.yml").read_text())["channels"]
    assert channels == [value, "nodefaults"]


CHANNEL_TEXT = st.one_of(
    st.text(max_size=30),
    st.from_regex(r"\A(https?|file|FILE|ftp)://[a-z0-9.:@%/\[\]#\"' -]{0,24}\Z"),
    st.from_regex(r"\A[A-Za-z0-9._/-]{1,24}\Z"),
)


@settings(max_examples=40)
@given(value=CHANNEL_TEXT)
def test_any_channel_answer_is_refused_by_name_or_reaches_environment_yml(value):
    """Never a credential or a host path in the locks, never YAML that reads back otherwise."""
    with tempfile.TemporaryDirectory() as folder:
        destination = Path(folder) / "project"
        try:
            render(destination, answers_for("default", conda_channel=value))
        except ValueError as refused:
            assert "question 'conda_channel'" in str(refused)
            assert not destination.exists()
            return
        channels = yaml.safe_load((destination / "environment.yml").read_text())["channels"]
    assert channels == [value, "nodefaults"]
    assert "@" not in value and not value.lower().startswith("file:")


# --------------------------------------------------------------------------- locks at copy


@pytest.fixture(scope="module")
def default_project(tmp_path_factory, mirror_url, channel_url) -> Path:
    destination = tmp_path_factory.mktemp("conda-default") / "project"
    return render(destination, answers(mirror_url, channel_url), tasks=True)


def test_copy_writes_the_conda_lock_from_the_channel(default_project, channel):
    records = locked_records(default_project, channel)
    # The same specs, solved by the facts' own solve with the lock's virtual packages.
    specs = yaml.safe_load((default_project / "environment.yml").read_text())["dependencies"]
    solution = conda_facts.solve(channel, specs, "linux-64", CATALOGUE)
    assert set(records) == {record.name.normalized for record in solution}
    assert records["pytorch"]["build"].startswith("cpu_generic")
    assert "mkl" not in records, "the cpu_generic build needs no MKL"
    # The older builds the channel carries for lagging images are never picked unpinned.
    for name in LAGGING:
        older = [r for r in RECORDS if r.name == name and r.version != records[name]["version"]]
        assert older and all(Version(r.version) < Version(records[name]["version"]) for r in older)
    assert not (default_project / "conda-linux-aarch64.lock").exists()
    total = sum(record["size"] for record in records.values())
    assert f"# download-bytes: {total}\n" in (default_project / AMD64).read_text()


def test_lock_lines_put_every_dependency_before_its_dependents(default_project, channel):
    """micromamba links an explicit file in file order, so a dependent never comes first."""
    order = list(locked_records(default_project, channel).values())
    place = {record["name"]: index for index, record in enumerate(order)}
    for index, record in enumerate(order):
        for spec in record["depends"]:
            name = MatchSpec(spec, strict=False).name.normalized
            assert place.get(name, -1) < index, f"{record['name']} is listed before {name}"


def test_uv_lock_agrees_with_the_conda_lock(default_project, channel):
    conda = assert_layers_agree(default_project, channel)
    shared = {n: v for n, v in conda.items() if n in uv_versions(default_project)}
    # uv took conda-forge's versions, even where PyPI has newer ones: the conda lock pinned them.
    lagging_pypi = [n for n in shared if pypi_newest(n) > Version(shared[n])]
    assert lagging_pypi, "no shared package is older on conda-forge: the check proves nothing"
    assert uv_versions(default_project)["torch"] == {"2.13.0"}


def test_both_locks_are_fresh(default_project):
    check = conda_lock_script(default_project, "--check")
    assert check.returncode == 0, check.stderr
    assert result_line(check.stderr) == {
        "script": "conda_lock",
        "status": "fresh",
        "exit": 0,
        "message": "",
    }
    uv_check = subprocess.run(
        ["uv", "lock", "--check"],
        cwd=default_project,
        env=UV_ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    assert uv_check.returncode == 0, uv_check.stderr


def test_faiss_answers_lock_conda_faiss_and_its_numpy(tmp_path, mirror_url, channel_url, channel):
    project = render(
        tmp_path / "project",
        answers(mirror_url, channel_url, "faiss-conda-sklearn-313"),
        tasks=True,
    )
    shared = assert_layers_agree(project, channel)
    # conda-forge's faiss (PyPI's newest is 1.15.x): one version in both layers.
    assert Version(shared["faiss-cpu"]) < pypi_newest("faiss-cpu")
    assert shared["faiss-cpu"] == newest("faiss-cpu")
    assert "numpy" in shared
    assert "torch" not in shared


def test_torchaudio_and_faiss_lock_with_the_conda_installer(
    tmp_path, mirror_url, channel_url, channel
):
    """conda-forge has no torchaudio for its pytorch 2.11: the family comes from the CPU index."""
    project = render(
        tmp_path / "project",
        answers(mirror_url, channel_url, "faiss-audio-uv", torch_installer="conda"),
        tasks=True,
    )
    specs = yaml.safe_load((project / "environment.yml").read_text())["dependencies"]
    names = {MatchSpec(spec, strict=False).name.normalized for spec in specs}
    assert "faiss-cpu" in names and not names & {"pytorch-cpu", "torchaudio", "torchvision"}
    shared = assert_layers_agree(project, channel)
    assert "torch" not in shared and "torchaudio" not in shared
    assert shared["faiss-cpu"] == newest("faiss-cpu")
    assert uv_versions(project)["torchaudio"] == {"2.11.0"}


def make(project: Path, target: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", target], cwd=project, env=UV_ENV, capture_output=True, text=True, check=False
    )


def test_make_verify_names_a_stale_lock_and_make_lock_freshens_both(
    default_project, tmp_path, channel
):
    project = shutil.copytree(default_project, tmp_path / "project")
    environment = project / "environment.yml"
    environment.write_text(environment.read_text() + "  - numpy\n")
    stale = make(project, "verify")
    assert stale.returncode != 0
    assert f"{AMD64} is stale" in stale.stderr and "make lock" in stale.stderr

    relocked = make(project, "lock")
    assert relocked.returncode == 0, relocked.stderr
    verified = make(project, "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    numpy = python_distributions(locked_records(project, channel))["numpy"]
    assert f"numpy=={numpy};" in (project / "pyproject.toml").read_text()
    assert "numpy" in locked_records(project, channel)
    assert_layers_agree(project, channel)


def test_check_names_pins_edited_by_hand(default_project, tmp_path):
    project = shutil.copytree(default_project, tmp_path / "project")
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    pin = f'"sympy=={newest("sympy")};'
    assert pin in text
    pyproject.write_text(text.replace(pin, '"sympy==1.12;'))
    edited = conda_lock_script(project, "--check")
    assert edited.returncode == 1 and "constraint-dependencies" in edited.stderr


# --------------------------------------------------------------------------- the lock report


def lock_report(project: Path) -> tuple[int, dict]:
    result = subprocess.run(
        ["uv", "run", "--quiet", "--script", "scripts/lock_report.py", "--json"],
        cwd=project,
        env=UV_ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def test_lock_report_shows_both_layers_and_no_overlap(default_project, channel):
    status, report = lock_report(default_project)
    assert status == 0, report["problems"]
    amd64 = report["platforms"]["linux/amd64"]
    layers = amd64["layers"]
    records = locked_records(default_project, channel)
    assert layers["conda"]["packages"] == len(records)
    assert layers["conda"]["download_bytes"] == sum(r["size"] for r in records.values())
    assert layers["overlaps"] == []
    shared = python_distributions(records).keys() & uv_versions(default_project).keys()
    assert layers["uv"]["packages"] == amd64["packages"] - len(shared)
    text = subprocess.run(
        ["uv", "run", "--quiet", "--script", "scripts/lock_report.py"],
        cwd=default_project,
        env=UV_ENV,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert f"{len(records)} pkgs" in text and "overlaps" in text


def test_lock_report_flags_a_package_both_layers_would_install(default_project, tmp_path, channel):
    """Without the conda pins, uv takes PyPI's newer release: both layers would install one."""
    conda = python_distributions(locked_records(default_project, channel))
    in_uv = uv_versions(default_project)
    name = next(
        n
        for n in sorted(conda)
        if n in in_uv and n != "torch" and pypi_newest(n) > Version(conda[n])
    )
    project = shutil.copytree(default_project, tmp_path / "project")
    pyproject = tomlkit.parse((project / "pyproject.toml").read_text())
    pyproject["tool"]["uv"]["constraint-dependencies"] = tomlkit.array()
    (project / "pyproject.toml").write_text(tomlkit.dumps(pyproject))
    relock = subprocess.run(
        ["uv", "lock", "--upgrade-package", name],
        cwd=project,
        env=UV_ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    assert relock.returncode == 0, relock.stderr
    newer = uv_versions(project)[name]
    assert newer != {conda[name]}, f"uv kept conda's {name}: the check proves nothing"
    status, report = lock_report(project)
    assert status == 1
    overlaps = report["platforms"]["linux/amd64"]["layers"]["overlaps"]
    assert f"{name} (conda {conda[name]}, uv {newer.pop()})" in overlaps
    assert any(
        f"both install {name}" in problem and "make lock" in problem
        for problem in report["problems"]
    )


# --------------------------------------------------------------------------- faults


def assert_kept(project: Path, before: dict[str, str], output: str) -> None:
    assert "Traceback" not in output, output
    after = digest_tree(project)
    after.pop("uv.lock", None)
    assert after == {k: v for k, v in before.items() if k != "uv.lock"}, "the project changed"


def test_unreachable_channel_keeps_the_project_and_names_make_lock(tmp_path, mirror_url):
    with unreachable_url() as dead:
        project = render(tmp_path / "project", answers(mirror_url, dead))
        before = digest_tree(project)
        results = [run_hook(project, strict=strict) for strict in (False, True)]
    for result, status in zip(results, (0, 1), strict=True):
        output = result.stdout
        assert result.returncode == status, output
        assert_kept(project, before, output)
        assert said("could not lock the conda layer: the conda channel did not answer", output)
        assert "Connection refused" in output or "connect" in output.lower()
        assert said("pins from the conda layer", output)
        # `make lock` alone cannot succeed while the channel is down: say what would.
        assert said("Next, once the conda channel answers (check the network), run:", output)
        assert next_step(project, "make lock") in output
        assert next_step(project, "copier update --trust --defaults --data conda_channel=") in (
            output.replace("<mirror URL>", "")
        )
        assert not list(project.glob("conda-*.lock"))
        assert (project / "uv.lock").exists(), "uv.lock is locked anyway"


def test_unsatisfiable_spec_is_named_and_the_old_lock_kept(default_project, tmp_path):
    project = shutil.copytree(default_project, tmp_path / "project")
    environment = project / "environment.yml"
    environment.write_text(environment.read_text() + "  - sympy=9.9.*\n")
    before = digest_tree(project)
    result = run_hook(project)
    assert result.returncode == 1
    assert_kept(project, before, result.stdout)
    assert said("environment.yml has no solution in the conda channel", result.stdout)
    assert said("`sympy=9.9.*` cannot be satisfied", result.stdout)
    assert next_step(project, "make lock") in result.stdout


@pytest.mark.parametrize(
    ("file", "edit", "message"),
    [
        ("environment.yml", lambda t: "<<<<<<< before updating\n" + t, "merge conflict markers"),
        (
            "environment.yml",
            lambda t: t + "  - pip:\n    - six\n",
            "put PyPI packages in pyproject",
        ),
        ("environment.yml", lambda t: t + "  - ]\n", "environment.yml is not valid YAML"),
        ("pyproject.toml", lambda t: t + "[[[\n", "pyproject.toml is not valid TOML"),
    ],
)
def test_bad_input_is_named_and_changes_nothing(default_project, tmp_path, file, edit, message):
    project = shutil.copytree(default_project, tmp_path / "project")
    (project / file).write_text(edit((project / file).read_text()))
    before = digest_tree(project)
    for args in ((), ("--check",)):
        result = conda_lock_script(project, *args)
        assert result.returncode == CATALOGUE["contracts"]["conda_lock"]["bad-input"]
        assert message in result.stderr and "Traceback" not in result.stderr
        outcome = result_line(result.stderr)
        assert outcome["status"] == "bad-input" and outcome["exit"] == result.returncode
        assert message in outcome["message"]
    assert digest_tree(project) == before


def test_a_platform_the_channel_lacks_writes_no_lock_at_all(tmp_path, mirror_url, channel):
    # Without torch, uv locks both platforms; this server hides the linux-aarch64 packages.
    with ChannelServer(channel, hide=("linux-aarch64",)) as server:
        project = render(
            tmp_path / "project",
            answers(
                mirror_url,
                server.url,
                ml_libraries=[],
                vector_store="none",
                lock_platforms=["linux/amd64", "linux/arm64"],
            ),
        )
        before = digest_tree(project)
        result = run_hook(project)
    assert result.returncode == 1
    assert_kept(project, before, result.stdout)
    assert said("has no packages for one of the lock platforms", result.stdout)
    assert said("no packages for linux-aarch64", result.stdout)
    assert not list(project.glob("conda-*.lock")), "all platforms or none"
    assert next_step(project, "make lock") in result.stdout


# --------------------------------------------------------------------------- copier update

GIT_ENV = {
    "GIT_AUTHOR_NAME": "T",
    "GIT_AUTHOR_EMAIL": "t@localhost",
    "GIT_COMMITTER_NAME": "T",
    "GIT_COMMITTER_EMAIL": "t@localhost",
}
V2_LINE = "# Pinned per platform in conda-<platform>.lock."
README_LINE = "A line the user added."


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        check=True,
        capture_output=True,
    )


def commit_all(cwd: Path, message: str) -> None:
    git(cwd, "add", "-A")
    git(cwd, "commit", "-q", "-m", message)


def test_update_relocks_both_layers_and_keeps_user_edits(
    tmp_path, mirror_url, channel_url, channel
):
    template = tmp_path / "template"
    shutil.copytree(
        ROOT,
        template,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "__pycache__", ".pytest_cache", ".ruff_cache"
        ),
    )
    git(template, "init", "-q", "-b", "main")
    commit_all(template, "Release 1.0.0")
    git(template, "tag", "v1.0.0")
    environment = template / "template" / "environment.yml.jinja"
    environment.write_text(environment.read_text().replace("channels:", f"{V2_LINE}\nchannels:"))
    commit_all(template, "Release 2.0.0")
    git(template, "tag", "v2.0.0")

    project = tmp_path / "project"
    run_copy(
        str(template),
        project,
        data=answers(mirror_url, channel_url),
        defaults=True,
        unsafe=True,
        vcs_ref="v1.0.0",
        quiet=True,
    )
    assert (project / AMD64).exists()
    git(project, "init", "-q", "-b", "main")
    commit_all(project, "Start")
    with (project / "README.md").open("a") as readme:
        readme.write(f"\n{README_LINE}\n")
    user_environment = project / "environment.yml"
    user_environment.write_text(user_environment.read_text() + "  - numpy\n")
    commit_all(project, "My edits")
    v1_lock = (project / AMD64).read_text()

    run_update(
        str(project), vcs_ref="v2.0.0", defaults=True, overwrite=True, unsafe=True, quiet=True
    )

    assert README_LINE in (project / "README.md").read_text()
    environment_text = user_environment.read_text()
    assert V2_LINE in environment_text and "  - numpy\n" in environment_text
    assert (project / AMD64).read_text() != v1_lock
    assert "numpy" in locked_records(project, channel)
    assert conda_lock_script(project, "--check").returncode == 0
    uv_check = subprocess.run(
        ["uv", "lock", "--check"],
        cwd=project,
        env=UV_ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    assert uv_check.returncode == 0, uv_check.stderr
    assert_layers_agree(project, channel)


def test_copy_output_fits_80_columns_with_the_default_answers(mirror_url, channel_url):
    """What a user reads after `copier copy` with the default answers: the hook's lines and
    Copier's closing message fit 80 columns, and the echoed task names no credential variable."""
    answers_file = Path(tempfile.mkdtemp(prefix="mct-")) / "answers.yml"
    answers_file.write_text(yaml.safe_dump(answers(mirror_url, channel_url)))
    destination = answers_file.parent / "project"
    result = copier_copy_cli(answers_file, destination, {**UV_ENV, "ML_TEMPLATE_STRICT": "1"})
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        # The test's mirror sits at a long temporary path; a user's index URL is shorter.
        stdout = result.stdout.replace(mirror_url, "https://mirror.example/whl/cpu")
        hook = [line for line in stdout.splitlines() if line.startswith(PREFIX)]
        message = result.stderr[result.stderr.index("Copier wrote") :].splitlines()
        assert hook and message
        assert [line for line in hook + message if len(line) > 80] == []
        echoed = [line for line in result.stderr.splitlines() if "Running task" in line]
        assert echoed and not any("UV_INDEX" in line for line in echoed)
    finally:
        shutil.rmtree(answers_file.parent, ignore_errors=True)
