"""Each kind of bad answer is refused with a message naming the question; nothing is written."""

from __future__ import annotations

import re

import pytest
import yaml

from harness.render import CATALOGUE, ROOT, answers_for, render

# Columns of the terminal the questions are checked against.
WIDTH = 80

# The question, a bad answer, and the rule Copier must show first for it.
REFUSALS = [
    ("project_name", "   ", "must not be empty"),
    ("project_slug", "My_Service", "use a-z, 0-9 and single hyphens"),
    ("project_slug", "-svc", "use a-z, 0-9 and single hyphens"),
    ("project_slug", "a" * 49, "must be at most 48 characters"),
    ("package_name", "2fast", "must be a lowercase identifier"),
    ("package_name", "my-pkg", "must be a lowercase identifier"),
    ("package_name", "class", "must not be a Python keyword"),
    ("package_name", "json", "must not shadow a stdlib module"),
    ("package_name", "torch", "must not shadow torch"),
    ("package_name", "chromadb", "must not shadow chromadb"),
    ("package_name", "sklearn", "must not shadow scikit-learn"),
    ("package_name", "sentence_transformers", "must not shadow a library"),
    ("package_name", "a" * 33, "must be at most 32 characters"),
    ("torch_index_url", "ftp://mirror/simple", "must be http(s):// or file:///"),
    ("torch_index_url", "https://host/a b", "must not contain spaces"),
    ("torch_index_url", "https://host/simple ", "must not contain spaces"),
    ("torch_index_url", 'https://host/"x"', "must not hold quotes $ # \\ or `"),
    ("torch_index_url", "https://user:token@host/simple", "must not hold credentials"),
    ("conda_channel", "file:///srv/channel", "must not be a file:// URL"),
    ("conda_channel", "conda forge", "must not contain spaces"),
    ("conda_channel", "https://host/a b", "must not contain spaces"),
    ("conda_channel", "conda_forge!", "must be a name or http(s):// URL"),
    ("lock_platforms", [], "must name at least one platform"),
]
# A store mode the chosen store does not run in: (store, mode, the rule shown first).
IMPOSSIBLE_MODES = [
    ("lancedb", "server", "lancedb runs embedded only"),
    ("faiss", "server", "faiss runs embedded only"),
    ("pgvector", "embedded", "pgvector runs server only"),
    ("none", "server", "server needs a vector store"),
]


@pytest.mark.parametrize(("question", "value", "rule"), REFUSALS)
def test_bad_answer_is_refused_by_name_with_the_rule_first(tmp_path, question, value, rule):
    """Asked interactively, Copier shows one line, cut at the terminal's width: the rule leads."""
    destination = tmp_path / "project"
    with pytest.raises(ValueError, match=f"question '{question}'") as refused:
        render(destination, answers_for("default", **{question: value}))
    first, *details = str(refused.value).splitlines()
    assert first == f"Validation error for question '{question}': {rule}"
    assert all(len(line) <= WIDTH for line in [first, *details]), str(refused.value)
    assert not destination.exists()


@pytest.mark.parametrize(("store", "mode", "rule"), IMPOSSIBLE_MODES)
def test_a_store_mode_the_store_lacks_is_refused_naming_the_ones_that_have_it(
    tmp_path, store, mode, rule
):
    """`store_mode` is asked only where a store runs both ways; given anyway, it is judged."""
    destination = tmp_path / "project"
    answers = answers_for("default", vector_store=store, store_mode=mode)
    if store == "none":
        answers["serve"] = "none"
    with pytest.raises(ValueError, match="question 'store_mode'") as refused:
        render(destination, answers)
    first, *details = str(refused.value).splitlines()
    assert first == f"Validation error for question 'store_mode': {rule}"
    able = [
        key
        for key, entry in CATALOGUE["stores"].items()
        if key != "none" and mode in entry["modes"]
    ]
    if store != "none":
        assert ", ".join(able) in " ".join(details)
    assert all(len(line) <= WIDTH for line in [first, *details]), str(refused.value)
    assert not destination.exists()


def test_store_mode_is_asked_only_of_a_store_that_runs_both_ways():
    question = yaml.safe_load((ROOT / "copier.yml").read_text())["store_mode"]
    both = [key for key, entry in CATALOGUE["stores"].items() if len(entry["modes"]) == 2]
    assert both == ["chromadb", "qdrant"]
    assert "modes | length > 1" in question["when"]


# Each library's import name, and the library as the project's dependencies name it.
LIBRARY_IMPORTS = {
    entry["import"]: entry["pypi"]
    for entry in [*CATALOGUE["libraries"].values(), *CATALOGUE["stores"].values()]
    if "import" in entry
}


@pytest.mark.parametrize(("module", "library"), sorted(LIBRARY_IMPORTS.items()))
def test_a_library_import_name_is_refused_naming_the_library(tmp_path, module, library):
    """The rule names the library where it fits the terminal; the next line always does."""
    with pytest.raises(ValueError, match="question 'package_name'") as refused:
        render(tmp_path / "project", answers_for("default", package_name=module))
    first, second, *rest = str(refused.value).splitlines()
    named = f"Validation error for question 'package_name': must not shadow {library}"
    if len(named) <= WIDTH:
        assert first == named
    else:
        assert first.endswith(": must not shadow a library")
    assert second == f'"{module}" is the import name of {library},'
    assert all(len(line) <= WIDTH for line in [first, second, *rest])


def test_every_help_and_choice_fits_the_terminal():
    """Copier asks with "🎤 " (3 columns) before the help, and lists choices indented."""
    questions = {
        name: q
        for name, q in yaml.safe_load((ROOT / "copier.yml").read_text()).items()
        if isinstance(q, dict) and "help" in q
    }
    assert questions
    for name, question in questions.items():
        assert len(question["help"]) + 3 <= WIDTH, name
        for label in question.get("choices", []):
            assert len(str(label)) + 4 <= WIDTH, (name, label)


@pytest.mark.parametrize(
    ("name", "slug", "package"),
    [
        ("Embedding Service", "embedding-service", "embedding_service"),
        ("  Über  Café!! ", "ber-caf", "ber_caf"),
        ("日本語", "ml-service", "ml_service"),
        ("42 Things", "42-things", "app_42_things"),
        ("Torch", "torch", "torch_app"),
        ("JSON", "json", "json_app"),
        ("Class", "class", "class_app"),
    ],
)
def test_derived_defaults_are_valid(tmp_path, name, slug, package):
    project = render(tmp_path / "project", answers_for("default", project_name=name))
    answers = (project / ".copier-answers.yml").read_text()
    assert f"project_slug: {slug}\n" in answers
    assert f"package_name: {package}\n" in answers
    assert (project / "src" / package / "__main__.py").exists()


def test_project_name_placeholder_reads_as_an_example():
    """Copier shows a placeholder greyed, like a default; Enter then submits nothing."""
    question = yaml.safe_load((ROOT / "copier.yml").read_text())["project_name"]
    assert "default" in question or question["placeholder"].startswith("e.g. ")


def test_the_readme_documents_every_question_once():
    """The README's questions table has one row per question a user can be asked, and no other."""
    asked = [
        name
        for name, q in yaml.safe_load((ROOT / "copier.yml").read_text()).items()
        if isinstance(q, dict) and "help" in q and q.get("when") is not False
    ]
    rows = re.findall(r"^\| `([a-z_]+)` \|", (ROOT / "README.md").read_text(), flags=re.MULTILINE)
    assert sorted(rows) == sorted(asked)
