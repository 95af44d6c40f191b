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
import tarfile
from datetime import date
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


def test_every_source_carries_its_own_commit_date():
    """`read` is when the facts were read; each feedstock commit has the date it was made."""
    read = date.fromisoformat(FACTS["read"])
    for key, source in FACTS["sources"].items():
        if source["committed"] is None:  # only where the date could not be read, saying why
            assert "not readable" in source["note"], key
            continue
        assert date.fromisoformat(source["committed"]) <= read, key
    for patch in FACTS["patches"]:
        assert patch["source"]["feedstock"] in FACTS["sources"]


def test_the_facts_loader_refuses_a_duplicate_key(tmp_path):
    """PyYAML would keep the last of two `note:` keys silently."""
    facts = tmp_path / "facts.yml"
    facts.write_text('packages:\n  a:\n    - version: "1"\n      note: "x"\n      note: "y"\n')
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'note'"):
        conda_facts.load(facts)


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


def test_builds_made_with_llvm_openmp_carry_its_strong_run_exports():
    """conda-build adds a host package's strong run_exports to the build's depends."""
    (llvm,) = FACTS["packages"]["llvm-openmp"]
    exports = [e for e in llvm["run_exports"]["strong"] if not e.startswith("llvm-openmp ")]
    # The LLVM mutex needs llvm-openmp at run time, not in host: it gets no run_exports.
    built_with = [
        r
        for r in RECORDS
        if r.name != "_openmp_mutex" and any(d.startswith("llvm-openmp ") for d in r.depends)
    ]
    assert built_with
    for record in built_with:
        missing = [e for e in exports if e not in record.depends]
        assert not missing, f"{record.filename} ({record.subdir}) lacks {missing}"


def test_pytorch_2_10_and_2_11_pin_the_llvm_openmp_of_their_build_date():
    """llvm-openmp 22.1.8 landed 2026-06-18, after the v2.10.x and v2.11.x heads were built."""
    bounds = {"2.10.0": "llvm-openmp >=22.1.6", "2.11.0": "llvm-openmp >=22.1.7"}
    for record in RECORDS:
        if record.name in ("pytorch", "libtorch") and record.version in bounds:
            pins = [d for d in record.depends if d.startswith("llvm-openmp ")]
            assert pins == [bounds[record.version]], record.filename


def test_libtorch_cpu_generic_carries_libblas_run_export():
    """The host libblas (variant 3.9.* netlib) exports libblas >=3.9.0,<4.0a0 (max_pin x)."""
    generic = [r for r in RECORDS if r.name == "libtorch" and "generic" in r.build]
    assert generic
    for record in generic:
        assert "libblas >=3.9.0,<4.0a0" in record.depends, record.filename


def test_sympy_1_13_3_is_served_with_the_mpmath_bound_of_conda_forges_patch():
    """conda-forge's repodata patch (sympy.yaml) caps mpmath for sympy uploaded before a cut-off."""
    served = [r for r in RECORDS if r.name == "sympy" and r.version == "1.13.3"]
    built = [r for r in conda_facts.records(FACTS, patched=False) if r.name == "sympy"]
    assert served and all("mpmath >=0.19,<1.4" in r.depends for r in served)
    assert "mpmath >=0.19" in next(r for r in built if r.version == "1.13.3").depends
    # sympy 1.14.0 build 6 came after the cut-off with its own <1.5 pin: left as built.
    newer = {r.filename: r.depends for r in RECORDS if r.name == "sympy" and r.version != "1.13.3"}
    assert newer == {r.filename: r.depends for r in built if r.version != "1.13.3"}


def test_a_patch_cut_off_by_time_needs_the_builds_upload_time():
    facts = copy.deepcopy(FACTS)
    for build in facts["packages"]["sympy"]:
        build.pop("uploaded")
    with pytest.raises(ValueError, match="no `uploaded`"):
        conda_facts.records(facts)


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


def test_cpu_generic_pytorch_takes_the_llvm_openmp_mutex_and_openblas(facts_channel):
    """llvm-openmp's run_exports force `_openmp_mutex * *_llvm` over the GNU mutex's build 20."""
    torch = CATALOGUE["torch_releases"][0]["torch"]
    spec = f"pytorch-cpu={torch}=cpu_generic*"
    for subdir in conda_facts.SUBDIRS:
        solution = solve(facts_channel, [f"python={PYTHONS[0]}.*", spec], subdir)
        assert str(solution["_openmp_mutex"].build).endswith("_llvm"), subdir
        assert str(solution["libblas"].build).endswith("_openblas"), subdir


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
    channel = build_channel()
    served = channel_records(channel)

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
    # As on conda-forge, a patched build's archive still says what the recipe made.
    (sympy,) = [r for r in conda_facts.records(FACTS, patched=False) if r.version == "1.13.3"]
    archive = channel / sympy.subdir / sympy.filename
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("info/index.json"))  # type: ignore[arg-type]
    assert index["depends"] == list(sympy.depends)
    assert served[sympy.subdir][sympy.filename]["depends"] != index["depends"]
