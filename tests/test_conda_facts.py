"""The conda specs the template writes, solved against what conda-forge really publishes.

facts/conda-forge.yml records conda-forge's builds, read from the feedstocks; these tests solve
every conda spec the catalogue can put into environment.yml (every torch release line, every
library and store, every answer set, every Python the template offers, both platforms) with
py-rattler and the virtual packages the conda lock declares. The local test channel is built
from the same facts and nothing else.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from packaging.version import Version
from rattler import MatchSpec
from rattler.exceptions import SolverError

from harness.conda_channel import build_channel, channel_records
from harness.render import ANSWER_SETS, CATALOGUE, answers_for, render
from tools import conda_facts

FACTS = conda_facts.load()
RECORDS = conda_facts.records(FACTS)
PYTHONS = conda_facts.template_pythons()
SPEC_SETS = conda_facts.catalogue_spec_sets(CATALOGUE)
COMMIT = re.compile(r"[0-9a-f]{40}")


@pytest.fixture(scope="module")
def facts_channel(tmp_path_factory) -> Path:
    return conda_facts.metadata_channel(tmp_path_factory.mktemp("facts-channel"))


def solve(channel: Path, specs: list[str], subdir: str, catalogue: dict = CATALOGUE) -> dict:
    """{name: record} of the solution."""
    solution = conda_facts.solve(channel, specs, subdir, catalogue)
    return {record.name.normalized: record for record in solution}


def newest(name: str) -> str:
    return str(max((Version(r.version) for r in RECORDS if r.name == name), default=None))


# --------------------------------------------------------------------------- the facts themselves


def test_every_fact_names_the_feedstock_commit_it_was_read_from():
    sources = FACTS["sources"]
    for key, source in sources.items():
        assert COMMIT.fullmatch(source["commit"]), key
        assert source["repo"].startswith("conda-forge/") or source["repo"].startswith("mamba-org/")
    for name, builds in FACTS["packages"].items():
        for build in builds:
            assert build["source"]["feedstock"] in sources, f"{name} {build['version']}"


def test_the_facts_are_closed_every_dependency_has_a_build():
    """A solver can follow every depends line: each names a recorded package on that subdir."""
    names = {(r.name, r.subdir) for r in RECORDS}
    for record in RECORDS:
        for spec in record.depends:
            name = MatchSpec(spec, strict=False).name.normalized
            if name.startswith("__"):
                continue
            wanted = [record.subdir] if record.subdir != "noarch" else list(conda_facts.SUBDIRS)
            for subdir in wanted:
                assert (name, subdir) in names or (name, "noarch") in names, (
                    f"{record.name} {record.version} ({record.subdir}) depends on {spec}, "
                    "which no recorded build provides"
                )


# --------------------------------------------------------------------------- the catalogue's specs


@pytest.mark.parametrize("subdir", conda_facts.SUBDIRS)
@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("label", list(SPEC_SETS))
def test_every_catalogue_conda_spec_set_solves(facts_channel, label, python, subdir):
    specs = [f"python={python}.*", *SPEC_SETS[label]]
    if "(conda: false)" in label:
        # The catalogue routes this line to the CPU index: it must really have no solution.
        with pytest.raises(SolverError):
            solve(facts_channel, specs, subdir)
        return
    solution = solve(facts_channel, specs, subdir)
    for spec in SPEC_SETS[label]:
        name = MatchSpec(spec, strict=False).name.normalized
        assert name in solution, f"{spec} is not in the solution"


@pytest.mark.parametrize("subdir", conda_facts.SUBDIRS)
@pytest.mark.parametrize("name", list(ANSWER_SETS))
@pytest.mark.parametrize("installer", ["conda", "uv"])
def test_every_answer_sets_environment_solves(tmp_path, facts_channel, name, installer, subdir):
    project = render(tmp_path / "project", answers_for(name, torch_installer=installer))
    specs = yaml.safe_load((project / "environment.yml").read_text())["dependencies"]
    solution = solve(facts_channel, specs, subdir)
    assert "python" in solution
    assert not any(
        "cuda" in str(record.build) or name.startswith("cuda-") for name, record in solution.items()
    ), "a CUDA build was solved for"


def test_a_range_conda_forge_lacks_is_caught(facts_channel):
    """PyPI's faiss 1.15 as the conda range, as the catalogue had it: no solution."""
    catalogue = copy.deepcopy(CATALOGUE)
    catalogue["stores"]["faiss"]["conda"].pop("version")
    problems = conda_facts.unsolvable(facts_channel, catalogue, PYTHONS[:1])
    assert any(line.startswith("stores.faiss on linux-64") for line in problems), problems


def test_torchaudio_2_11_with_conda_torch_2_11_has_no_solution(facts_channel):
    """Why the 2.11 line says `conda: false`: torchaudio 2.11.0 was built against pytorch 2.10."""
    catalogue = copy.deepcopy(CATALOGUE)
    for line in catalogue["torch_releases"]:
        line.pop("conda", None)
    problems = conda_facts.unsolvable(facts_channel, catalogue, PYTHONS[:1])
    assert any(line.startswith("torch 2.11.* on linux-64") for line in problems), problems


# ---------------------------------------------------------------- choices the facts force


def test_pytorch_is_the_cpu_generic_build_without_mkl(facts_channel):
    torch = next(
        line
        for line in SPEC_SETS
        if line.startswith(f"torch {CATALOGUE['torch_releases'][0]['torch']}")
    )
    for subdir in conda_facts.SUBDIRS:
        solution = solve(facts_channel, [f"python={PYTHONS[0]}.*", *SPEC_SETS[torch]], subdir)
        assert "generic" in str(solution["pytorch"].build), subdir
        assert "mkl" not in solution, subdir


def test_unpinned_pytorch_cpu_takes_mkl_on_linux_64(facts_channel):
    """What choosing the variant avoids: the cpu_mkl build's higher build number wins."""
    line = CATALOGUE["torch_releases"][0]["torch"]
    solution = solve(facts_channel, [f"python={PYTHONS[0]}.*", f"pytorch-cpu={line}"], "linux-64")
    assert "mkl" in str(solution["pytorch"].build) and "mkl" in solution


def test_newest_libfaiss_needs_archspec(facts_channel):
    """Without __archspec the solver cannot take the builds that need a CPU level."""
    specs = [f"python={PYTHONS[0]}.*", "faiss-cpu"]
    declared = solve(facts_channel, specs, "linux-64")
    assert str(declared["faiss-cpu"].version) == newest("faiss-cpu")
    catalogue = copy.deepcopy(CATALOGUE)
    catalogue["platforms"]["linux/amd64"]["archspec"] = "i686"
    try:
        without = solve(facts_channel, specs, "linux-64", catalogue)
    except SolverError:
        return
    assert str(without["libfaiss"].build) != str(declared["libfaiss"].build)


# --------------------------------------------------------------------------- the test channel


def test_the_test_channel_serves_exactly_the_recorded_builds():
    served = channel_records(build_channel())

    def specs(lines: list[str]) -> list[str]:  # the indexer writes each spec in its own words
        return sorted(str(MatchSpec(line, strict=False)) for line in lines)

    expected = {
        (r.subdir, r.filename): (r.name, r.version, r.build_number, specs(list(r.depends)))
        for r in RECORDS
    }
    got = {
        (subdir, filename): (e["name"], e["version"], e["build_number"], specs(e["depends"]))
        for subdir, entries in served.items()
        for filename, e in entries.items()
    }
    assert got == expected, json.dumps(sorted(set(got) ^ set(expected)), default=str)[:2000]
