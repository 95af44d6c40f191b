"""`python -m tools.pins` against loopback stand-ins of every registry it reads.

Three worlds: every source answers with the catalogue's own releases (all current); every source
has moved on (a new torch line, a new major, a new uv, micromamba and action release); and
sources that cannot be reached. `--write` must change exactly the safe values, nothing else.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from harness.registry_standins import (
    Standins,
    admitted_ranges,
    closed_port_url,
    conda_channel,
    cpu_index_folder,
    github_release,
    pypi_project,
    registry_tags,
)
from harness.render import ANSWER_SETS, CATALOGUE, ROOT, answers_for, render
from tools.pins import USES_LINE, workflow_files

SOURCES = ("pypi", "cpu", "conda", "registry", "github")
MICROMAMBA = CATALOGUE["images"]["micromamba"].split(":")[1]  # 2.6.1-debian13-slim
UV = CATALOGUE["images"]["uv"].split(":")[1]
NEW_SHA = "1" * 40
# What the moved-on world publishes beyond the catalogue's pins.
NEW_TORCH, NEW_TORCHVISION = "2.15.0", "0.30.0"
NEW_TRANSFORMERS, NEW_UV, NEW_CHECKOUT = "6.0.0", "0.14.2", "v7.1.0"
NEW_MICROMAMBA = "2.7.0-debian13-slim"


def range_pins() -> dict[str, tuple[str, str]]:
    return admitted_ranges(CATALOGUE)


def lowest(spec: str) -> str:
    """The lowest release a `>=` range admits, as a full version."""
    return next(s.version for s in SpecifierSet(spec) if s.operator == ">=") + ".0"


def conda_ranges() -> dict[str, tuple[str, str]]:
    """conda name -> (range, catalogue place) of every conda spec outside the torch family."""
    found = {}
    for group in ("libraries", "stores"):
        for key, entry in CATALOGUE[group].items():
            for i, pinned in enumerate([entry, *entry.get("requires", [])]):
                if "conda" not in pinned or "version" not in pinned:
                    continue
                place = f"{group}.{key}" + (f".requires[{i - 1}]" if i else "")
                if "version" in pinned["conda"]:
                    found[pinned["conda"]["name"]] = (
                        pinned["conda"]["version"],
                        f"{place}.conda.version",
                    )
                else:
                    found[pinned["conda"]["name"]] = (pinned["version"], f"{place}.version")
    return found


def conda_lines() -> set[tuple[str, str]]:
    """(row name, place) of every torch-family conda spec: each line conda may install."""
    libraries = CATALOGUE["libraries"]
    return {
        (f"{libraries[key]['conda']['name']} on conda-forge", f"torch_releases[{i}].{key}")
        for i, line in enumerate(CATALOGUE["torch_releases"])
        if line.get("conda", True) is not False
        for key in line
        if key in libraries and "conda" in libraries[key]
    }


def actions() -> dict[str, tuple[str, str]]:
    """owner/repo -> (sha, release) as the workflows pin them."""
    found = {}
    for path in workflow_files(ROOT):
        for match in USES_LINE.finditer(path.read_text(encoding="utf-8")):
            found["/".join(match["action"].split("/")[:2])] = (match["ref"], match["comment"])
    return found


def server_images() -> dict[str, str]:
    """repository -> tag of every server store's upstream image."""
    return dict(
        store["server"]["image"].rsplit(":", 1)
        for store in CATALOGUE["stores"].values()
        if "image" in store.get("server", {})
    )


def line_version(pin: str, suffix: str = "") -> str:
    return pin.replace("*", "0") + suffix


def publish(
    standins: Standins,
    folder: Path,
    *,
    moved_on: bool,
    conda_torchvision_build: str = "cpu_py311_h1234567_0",
    torchaudio_follows: bool = False,
    conda_extra: tuple[tuple[str, str, str], ...] = (),
) -> dict[str, str]:
    """Register one world's answers on `standins`; the URL of each source."""
    lines = CATALOGUE["torch_releases"]
    torch = [line_version(line["torch"]) for line in lines]
    companions = {
        key: sorted({line_version(line[key]) for line in lines if key in line})
        for key in ("torchvision", "torchaudio")
    }
    pypi = {"torch": torch, "uv": [UV]}
    pypi.update({name: [low] for name, (_, low) in range_pins().items()})
    conda = [("pytorch-cpu", v, "cpu_generic_py311_h1234567_0") for v in torch]
    conda += [(key, v, "cpu_py311_h1234567_0") for key, vs in companions.items() for v in vs]
    conda += [
        (name, lowest(spec), "py311_h1234567_0") for name, (spec, _) in conda_ranges().items()
    ]
    tags = [[MICROMAMBA, "2.6.1", "2.6.0-debian13-slim", "latest"]]
    releases = {repo: (comment, sha) for repo, (sha, comment) in actions().items()}
    if moved_on:
        pypi["torch"].append(NEW_TORCH)
        pypi["transformers"].append(NEW_TRANSFORMERS)
        pypi["uv"].append(NEW_UV)
        torch.append(NEW_TORCH)
        companions["torchvision"].append(NEW_TORCHVISION)
        conda += [
            ("pytorch-cpu", NEW_TORCH, "cpu_generic_py311_h7654321_0"),
            ("torchvision", NEW_TORCHVISION, conda_torchvision_build),
            ("faiss-cpu", "2.0.0", "py311_h7654321_0"),
        ]
        tags.append(["2.6.2", NEW_MICROMAMBA, "2.7.0"])  # a second page
        releases["actions/checkout"] = (NEW_CHECKOUT, NEW_SHA)
    conda += conda_extra
    if torchaudio_follows:
        companions["torchaudio"].append(NEW_TORCH)
        conda.append(("torchaudio", NEW_TORCH, "cpu_py311_h7654321_0"))
    for name, versions in pypi.items():
        # A yanked release above every other must never count as the latest.
        pypi_project(standins, name, versions, yanked=["99.0.0"] if name == "uv" else [])
    cpu = cpu_index_folder(
        folder / "cpu",
        {
            "torch": [f"{v}+cpu" for v in torch],
            **{key: [f"{v}+cpu" for v in vs] for key, vs in companions.items()},
        },
    )
    registry_tags(standins, "mambaorg/micromamba", tags)
    for repository, tag in server_images().items():
        registry_tags(standins, repository, [[tag, "latest"]])
    for repo, (tag, sha) in releases.items():
        github_release(standins, repo, tag, sha)
    return {
        "pypi": f"{standins.url}/pypi/simple",
        "cpu": standins.serve_folder("cpu", cpu),
        "conda": standins.serve_folder("conda", conda_channel(folder / "conda", conda)),
        "registry": f"{standins.url}/registry",
        "github": f"{standins.url}/github",
    }


@pytest.fixture
def root(tmp_path) -> Path:
    """The files the command reads, copied so `--write` never touches this repository."""
    root = tmp_path / "template"
    for name in ("catalogue.yml", "copier.yml"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, root / name)
    shutil.copytree(ROOT / ".github" / "workflows", root / ".github" / "workflows")
    shutil.copytree(
        ROOT / "template" / ".github" / "workflows", root / "template" / ".github" / "workflows"
    )
    return root


@pytest.fixture
def standins():
    with Standins() as server:
        yield server


def run_pins(root: Path, urls: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GITHUB_TOKEN", "GH_TOKEN") and not k.startswith("PINS_")
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.pins",
            "--root",
            str(root),
            "--timeout",
            "10",
            "--pypi-url",
            urls["pypi"],
            "--cpu-index-url",
            urls["cpu"],
            "--conda-channel-url",
            urls["conda"],
            "--registry-url",
            urls["registry"],
            "--github-api-url",
            urls["github"],
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def report(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def row(data: dict, name: str, where: str) -> dict:
    matches = [r for r in data["pins"] if r["name"] == name and r["where"].startswith(where)]
    assert len(matches) == 1, (name, where, [r["name"] for r in data["pins"]])
    return matches[0]


# ---------------------------------------------------------------------- current


def test_every_pin_is_reported_and_current(root, standins, tmp_path):
    urls = publish(standins, tmp_path, moved_on=False)
    result = run_pins(root, urls, "--json")
    data = report(result)
    assert result.returncode == 0
    assert {r["status"] for r in data["pins"]} == {"current"}, data["pins"]
    names = {r["name"] for r in data["pins"]}
    # Every kind of pin, from every source.
    assert {
        "torch on PyPI",
        "torch on CPU index",
        "torchvision on CPU index",
        "torchaudio on CPU index",
        "pytorch-cpu on conda-forge",
        "torchvision on conda-forge",
        "faiss-cpu on conda-forge",
        "uv on PyPI",
        "mambaorg/micromamba on the registry",
        # Each server store's official image, which the generated compose.yaml runs.
        "chromadb/chroma on the registry",
        "pgvector/pgvector on the registry",
        "qdrant/qdrant on the registry",
    } <= names
    for repository, tag in server_images().items():
        image = row(data, f"{repository} on the registry", "stores.")
        assert (image["current"], image["latest"]) == (tag, tag)
    assert {f"{name} on PyPI" for name in range_pins()} <= names
    assert {
        f"{action} on GitHub"
        for action in (
            "actions/checkout",
            "astral-sh/setup-uv",
            "docker/setup-buildx-action",
            "docker/build-push-action",
        )
    } <= names
    assert row(data, "uv on PyPI", "images.uv")["latest"] == UV  # not the yanked one
    assert data["written"] == []


def test_every_source_can_be_set_from_the_environment(root, standins, tmp_path):
    urls = publish(standins, tmp_path, moved_on=False)
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_TOKEN", "GH_TOKEN")}
    env.update(
        {
            "PINS_ROOT": str(root),
            "PINS_PYPI_URL": urls["pypi"],
            "PINS_CPU_INDEX_URL": urls["cpu"],
            "PINS_CONDA_CHANNEL_URL": urls["conda"],
            "PINS_REGISTRY_URL": urls["registry"],
            "PINS_GITHUB_API_URL": urls["github"],
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "tools.pins", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert report(result)["summary"]["current"] == len(report(result)["pins"])
    bad = subprocess.run(
        [sys.executable, "-m", "tools.pins"],
        cwd=ROOT,
        env={**env, "PINS_TIMEOUT": "soon"},
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--timeout: invalid float value: 'soon'" in bad.stderr


def test_json_schema(root, standins, tmp_path):
    data = report(run_pins(root, publish(standins, tmp_path, moved_on=True), "--json"))
    assert set(data) == {"pins", "summary", "written"}
    assert set(data["summary"]) == {"behind", "unavailable", "unknown", "current"}
    assert sum(data["summary"].values()) == len(data["pins"])
    for pin in data["pins"]:
        assert set(pin) == {
            "kind",
            "name",
            "where",
            "current",
            "latest",
            "status",
            "note",
            "writable",
            "proposed",
        }
        assert pin["kind"] in {"torch line", "range", "image", "conda", "action"}
        assert pin["status"] in data["summary"]
        assert all(isinstance(pin[k], str) for k in ("name", "where", "current", "latest"))
        assert pin["writable"] == (pin["proposed"] is not None)


def test_text_report(root, standins, tmp_path):
    result = run_pins(root, publish(standins, tmp_path, moved_on=True))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["KIND", "PIN", "WHERE", "CURRENT", "LATEST", "STATUS", "NOTE"]
    transformers = next(line for line in lines if " transformers on PyPI" in line)
    assert ">=5.24,<6" in transformers and NEW_TRANSFORMERS in transformers
    assert "behind" in transformers and "newer major: 6" in transformers
    assert re.fullmatch(r"\d+ behind, \d+ current", lines[-1]), lines[-1]


# ---------------------------------------------------------------------- behind


def test_each_kind_of_pin_behind(root, standins, tmp_path):
    result = run_pins(root, publish(standins, tmp_path, moved_on=True), "--json")
    data = report(result)
    assert result.returncode == 1
    behind = {
        (r["name"], r["where"]): r
        for r in data["pins"]
        if r["status"] == "behind" and r["kind"] != "action"
    }
    assert set(behind) == {
        ("torch on PyPI", "torch_releases[0].torch"),
        ("torch on CPU index", "torch_releases[0].torch"),
        ("torchvision on CPU index", "torch_releases[0].torchvision"),
        ("pytorch-cpu on conda-forge", "torch_releases[0].torch"),
        ("torchvision on conda-forge", "torch_releases[0].torchvision"),
        ("transformers on PyPI", "libraries.transformers.version"),
        ("faiss-cpu on conda-forge", "stores.faiss.conda.version"),
        ("uv on PyPI", "images.uv"),
        ("mambaorg/micromamba on the registry", "images.micromamba"),
    }
    cpu_torch = behind[("torch on CPU index", "torch_releases[0].torch")]
    assert cpu_torch["latest"] == NEW_TORCH  # the public version: +cpu dropped
    assert cpu_torch["proposed"] == "torch 2.15.*, torchvision 0.30.*"
    assert (
        behind[("transformers on PyPI", "libraries.transformers.version")]["proposed"]
        == ">=5.24,<7"
    )
    assert behind[("uv on PyPI", "images.uv")]["proposed"] == NEW_UV
    micromamba = behind[("mambaorg/micromamba on the registry", "images.micromamba")]
    assert micromamba["latest"] == NEW_MICROMAMBA  # same flavour, from the second page
    assert not micromamba["writable"]
    checkout = next(r for r in data["pins"] if r["name"] == "actions/checkout on GitHub")
    assert checkout["status"] == "behind" and checkout["latest"] == NEW_CHECKOUT
    assert "ci.yml.jinja" in checkout["where"] and "tests.yml" in checkout["where"]
    assert [r["status"] for r in data["pins"] if r["kind"] == "action"].count("behind") == 1
    assert f"actions/checkout@{NEW_SHA} # {NEW_CHECKOUT}" in checkout["note"]
    # Older lines stay current: they are kept for the libraries the newest line lacks.
    assert row(data, "torchaudio on CPU index", "torch_releases[1]")["status"] == "current"
    assert row(data, "torch on CPU index", "torch_releases[1]")["status"] == "current"


def test_a_pin_that_admits_no_release_is_unavailable(root, standins, tmp_path):
    urls = publish(standins, tmp_path, moved_on=False)
    shutil.rmtree(tmp_path / "cpu" / "torchaudio")
    result = run_pins(root, urls, "--json")
    pin = row(report(result), "torchaudio on CPU index", "torch_releases[1]")
    assert result.returncode == 1
    assert pin["status"] == "unavailable" and pin["note"] == "no release matches the pin"


# ---------------------------------------------------------------------- conda-forge


def conda_rows(data: dict) -> dict[tuple[str, str], dict]:
    return {(r["name"], r["where"]): r for r in data["pins"] if r["name"].endswith("conda-forge")}


def test_every_conda_spec_is_judged_by_the_range_environment_yml_gets(root, standins, tmp_path):
    data = report(run_pins(root, publish(standins, tmp_path, moved_on=False), "--json"))
    rows = conda_rows(data)
    ranges = {(f"{name} on conda-forge", where) for name, (_, where) in conda_ranges().items()}
    assert set(rows) == conda_lines() | ranges
    assert all(r["status"] == "current" for r in rows.values()), rows
    # No conda build of a line marked `conda: false`: environment.yml never names it.
    marked = tuple(
        f"torch_releases[{i}]."
        for i, line in enumerate(CATALOGUE["torch_releases"])
        if line.get("conda") is False
    )
    assert not [where for _, where in rows if marked and where.startswith(marked)]
    # faiss: conda-forge's own range, not PyPI's (which admits nothing conda-forge builds).
    faiss = rows[("faiss-cpu on conda-forge", "stores.faiss.conda.version")]
    assert faiss["current"] == CATALOGUE["stores"]["faiss"]["conda"]["version"]
    assert faiss["kind"] == "conda" and faiss["latest"] == lowest(faiss["current"])


def test_every_spec_a_rendered_environment_yml_holds_has_a_row(root, standins, tmp_path):
    """Each answer set, with conda installing what it may: its specs are among the rows."""
    data = report(run_pins(root, publish(standins, tmp_path, moved_on=False), "--json"))
    judged = {(r["name"].removesuffix(" on conda-forge"), r["current"]) for r in data["pins"]}
    seen = set()
    for name in ANSWER_SETS:
        project = render(tmp_path / name, answers_for(name, torch_installer="conda"))
        env = yaml.safe_load((project / "environment.yml").read_text(encoding="utf-8"))
        for spec in env["dependencies"]:
            # `name=line=build` or `name<range>`, as includes/plan.jinja writes them.
            match = re.fullmatch(r"([a-z0-9_.-]+)(?:=([^=]+)(?:=.*)?|(.*))", spec)
            assert match, spec
            package, version = match[1], match[2] or match[3]
            if package != "python":
                assert (package, version) in judged, (name, spec)
                seen.add(package)
    assert {"pytorch-cpu", "faiss-cpu"} <= seen  # the answer sets reach both kinds


def test_a_conda_range_that_excludes_conda_forges_newest_fails(root, standins, tmp_path):
    urls = publish(
        standins, tmp_path, moved_on=False, conda_extra=(("faiss-cpu", "2.0.0", "py311_h0_0"),)
    )
    result = run_pins(root, urls, "--json")
    data = report(result)
    assert result.returncode == 1
    faiss = row(data, "faiss-cpu on conda-forge", "stores.faiss.conda.version")
    assert (faiss["status"], faiss["latest"]) == ("behind", "2.0.0")
    assert "outside the range" in faiss["note"] and not faiss["writable"]
    assert [r["name"] for r in data["pins"] if r["status"] != "current"] == [faiss["name"]]


def test_a_torch_line_without_the_chosen_conda_build_is_unavailable(root, standins, tmp_path):
    """conda-forge has pytorch-cpu 2.13 only as cpu_mkl: the line's cpu_generic spec fails."""
    urls = publish(standins, tmp_path, moved_on=False)
    repodata = tmp_path / "conda" / "linux-64" / "repodata.json"
    channel = json.loads(repodata.read_text())
    for record in channel["packages.conda"].values():
        if record["name"] == "pytorch-cpu":
            record["build"] = record["build"].replace("cpu_generic", "cpu_mkl")
    repodata.write_text(json.dumps(channel))
    result = run_pins(root, urls, "--json")
    pin = row(report(result), "pytorch-cpu on conda-forge", "torch_releases[0].torch")
    assert result.returncode == 1
    assert pin["status"] == "unavailable" and pin["latest"] == "none"


def test_without_a_conda_range_the_pypi_range_is_judged(root, standins, tmp_path):
    catalogue = root / "catalogue.yml"
    spec = CATALOGUE["stores"]["faiss"]["conda"]["version"]
    text = catalogue.read_text(encoding="utf-8")
    edited = text.replace(
        f'conda: {{name: faiss-cpu, version: "{spec}"}}', "conda: {name: faiss-cpu}"
    )
    assert edited != text
    catalogue.write_text(edited, encoding="utf-8")
    result = run_pins(root, publish(standins, tmp_path, moved_on=False), "--json")
    faiss = row(report(result), "faiss-cpu on conda-forge", "stores.faiss")
    assert result.returncode == 1
    assert faiss["where"] == "stores.faiss.version"
    assert faiss["current"] == CATALOGUE["stores"]["faiss"]["version"]
    assert faiss["status"] == "unavailable"  # conda-forge's newest is below PyPI's range


def test_an_unreachable_channel_leaves_every_conda_spec_unknown(root, standins, tmp_path):
    urls = {**publish(standins, tmp_path, moved_on=False), "conda": closed_port_url()}
    result = run_pins(root, urls, "--json")
    rows = conda_rows(report(result))
    assert result.returncode == 0
    assert len(rows) == len(conda_lines()) + len(conda_ranges())
    assert {r["status"] for r in rows.values()} == {"unknown"}


# ---------------------------------------------------------------------- unreachable


@pytest.mark.parametrize("source", SOURCES)
def test_an_unreachable_source_reads_unknown_and_the_rest_is_reported(
    root, standins, tmp_path, source
):
    urls = {**publish(standins, tmp_path, moved_on=True), source: closed_port_url()}
    result = run_pins(root, urls, "--json")
    data = report(result)
    assert result.returncode == 1  # the other sources still show pins behind
    origin = {
        "pypi": "on PyPI",
        "cpu": "on CPU index",
        "conda": "on conda-forge",
        "registry": "on the registry",
        "github": "on GitHub",
    }[source]
    mine = [r for r in data["pins"] if r["name"].endswith(origin)]
    others = [r for r in data["pins"] if not r["name"].endswith(origin)]
    assert mine and all(r["latest"] == "unknown (unreachable)" for r in mine)
    assert all(r["status"] == "unknown" and "127.0.0.1" in r["note"] for r in mine)
    assert all(r["status"] in ("behind", "current") for r in others)
    assert any(r["status"] == "behind" for r in others)


def test_nothing_reachable_reports_every_pin_unknown_and_exits_0(root):
    urls = {source: closed_port_url() for source in SOURCES}
    result = run_pins(root, urls)
    assert result.returncode == 0, result.stderr
    body = result.stdout.splitlines()[1:-1]
    assert body and all("unknown (unreachable)" in line for line in body)
    assert result.stdout.splitlines()[-1] == f"{len(body)} unknown (unreachable)"


def test_a_missing_catalogue_exits_2_naming_it(tmp_path):
    urls = {source: closed_port_url() for source in SOURCES}
    result = run_pins(tmp_path, urls)
    assert result.returncode == 2
    assert result.stderr.startswith("pins: cannot read the template")
    assert "No such file or directory" in result.stderr and "catalogue.yml" in result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------- --write


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    diff = list(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0))
    removed = [d[1:] for d in diff if d.startswith("-") and not d.startswith("---")]
    added = [d[1:] for d in diff if d.startswith("+") and not d.startswith("+++")]
    return removed, added


def test_write_changes_exactly_the_safe_values(root, standins, tmp_path):
    urls = publish(standins, tmp_path, moved_on=True)
    before = (root / "catalogue.yml").read_text(encoding="utf-8")
    workflows = {p: p.read_text() for p in (root / ".github" / "workflows").glob("*.yml")}

    result = run_pins(root, urls, "--write", "--json")

    data = report(result)
    after = (root / "catalogue.yml").read_text(encoding="utf-8")
    assert changed_lines(before, after) == (
        [
            f"  uv: ghcr.io/astral-sh/uv:{UV}",
            '  - {torch: "2.13.*", torchvision: "0.28.*"}',
            '    version: ">=5.24,<6"',
        ],
        [
            f"  uv: ghcr.io/astral-sh/uv:{NEW_UV}",
            '  - {torch: "2.15.*", torchvision: "0.30.*"}',
            '    version: ">=5.24,<7"',
        ],
    )
    assert yaml.safe_load(after)["torch_releases"][1] == CATALOGUE["torch_releases"][1]
    # The workflows install the uv release the Dockerfile now copies; nothing else changes.
    for path, text in workflows.items():
        assert path.read_text() == text.replace(f'UV_VERSION: "{UV}"', f'UV_VERSION: "{NEW_UV}"')
    assert {(w["where"], w["new"]) for w in data["written"]} == {
        ("torch_releases[0].torch", "torch 2.15.*, torchvision 0.30.*"),
        ("libraries.transformers.version", ">=5.24,<7"),
        ("images.uv", NEW_UV),
    }
    # The report describes the files as written: only the pins --write leaves alone are behind.
    still = {r["name"] for r in data["pins"] if r["status"] == "behind"}
    assert still == {
        "mambaorg/micromamba on the registry",
        "faiss-cpu on conda-forge",
        "actions/checkout on GitHub",
    }
    assert result.returncode == 1
    # Writing again changes nothing.
    report(run_pins(root, urls, "--write", "--json"))
    assert (root / "catalogue.yml").read_text(encoding="utf-8") == after


def test_write_adds_no_line_whose_torchvision_conda_lacks(root, standins, tmp_path):
    """torchvision 0.30 reached conda-forge as a CUDA build only: the line is not safe yet."""
    urls = publish(
        standins, tmp_path, moved_on=True, conda_torchvision_build="cuda126_py311_h1234567_0"
    )
    before = (root / "catalogue.yml").read_text(encoding="utf-8")
    data = report(run_pins(root, urls, "--write", "--json"))
    after = (root / "catalogue.yml").read_text(encoding="utf-8")
    removed, _ = changed_lines(before, after)
    assert '  - {torch: "2.13.*", torchvision: "0.28.*"}' not in removed
    pin = row(data, "torch on CPU index", "torch_releases[0].torch")
    assert pin["status"] == "behind" and not pin["writable"]
    assert "torchvision 0.30.* not on conda-forge" in pin["note"]
    assert len(removed) == 2  # the range and the uv image still move


def test_write_with_an_unreachable_channel_adds_no_line(root, standins, tmp_path):
    urls = {**publish(standins, tmp_path, moved_on=True), "conda": closed_port_url()}
    before = (root / "catalogue.yml").read_text(encoding="utf-8")
    data = report(run_pins(root, urls, "--write", "--json"))
    assert '"2.13.*"' in (root / "catalogue.yml").read_text(encoding="utf-8")
    assert (root / "catalogue.yml").read_text(encoding="utf-8") != before
    pin = row(data, "torch on CPU index", "torch_releases[0].torch")
    assert "unknown on conda-forge (unreachable)" in pin["note"]


def test_a_torchaudio_release_joins_the_new_line_and_retires_the_old_one(root, standins, tmp_path):
    urls = publish(standins, tmp_path, moved_on=True, torchaudio_follows=True)
    before = (root / "catalogue.yml").read_text(encoding="utf-8")
    report(run_pins(root, urls, "--write", "--json"))
    after = (root / "catalogue.yml").read_text(encoding="utf-8")
    removed, added = changed_lines(before, after)
    assert [line for line in removed if "torch:" in line] == [
        '  - {torch: "2.13.*", torchvision: "0.28.*"}',
        '  - {torch: "2.11.*", torchvision: "0.26.*", torchaudio: "2.11.*", conda: false}',
    ]
    assert [line for line in added if "torch:" in line] == [
        '  - {torch: "2.15.*", torchvision: "0.30.*", torchaudio: "2.15.*"}'
    ]
    assert yaml.safe_load(after)["torch_releases"] == [
        {"torch": "2.15.*", "torchvision": "0.30.*", "torchaudio": "2.15.*"}
    ]
