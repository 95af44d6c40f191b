"""Each kind of bad answer is refused with a message naming the question; nothing is written."""

from __future__ import annotations

import pytest

from tests.support.render import answers_for, render

REFUSALS = [
    ("project_name", "   ", "project_name must not be empty"),
    ("project_slug", "My_Service", "project_slug must be a PEP 503 normalised name"),
    ("project_slug", "-svc", "project_slug must be a PEP 503 normalised name"),
    ("package_name", "2fast", "package_name must be a Python identifier"),
    ("package_name", "my-pkg", "package_name must be a Python identifier"),
    ("package_name", "class", "package_name must not be a Python keyword"),
    ("package_name", "json", 'package_name must not shadow the standard-library module "json"'),
    ("package_name", "torch", 'package_name must not shadow the library module "torch"'),
    ("package_name", "chromadb", 'package_name must not shadow the library module "chromadb"'),
    ("torch_index_url", "ftp://mirror/simple", "torch_index_url must be an http://, https://"),
    ("torch_index_url", "https://host/a b", "torch_index_url must be an http://, https://"),
    ("torch_index_url", 'https://host/"x"', "torch_index_url must not contain quotes"),
    ("torch_index_url", "https://user:token@host/simple", "must not carry credentials"),
    ("lock_platforms", [], "lock_platforms must name at least one platform"),
]


@pytest.mark.parametrize(("question", "value", "message"), REFUSALS)
def test_bad_answer_is_refused_by_name(tmp_path, question, value, message):
    destination = tmp_path / "project"
    with pytest.raises(ValueError, match=f"question '{question}'") as refused:
        render(destination, answers_for("default", **{question: value}))
    assert message in str(refused.value)
    assert not destination.exists()


@pytest.mark.parametrize(("name", "slug", "package"), [
    ("Embedding Service", "embedding-service", "embedding_service"),
    ("  Über  Café!! ", "ber-caf", "ber_caf"),
    ("日本語", "ml-service", "ml_service"),
    ("42 Things", "42-things", "app_42_things"),
    ("Torch", "torch", "torch_app"),
    ("JSON", "json", "json_app"),
    ("Class", "class", "class_app"),
])
def test_derived_defaults_are_valid(tmp_path, name, slug, package):
    project = render(tmp_path / "project", answers_for("default", project_name=name))
    answers = (project / ".copier-answers.yml").read_text()
    assert f"project_slug: {slug}\n" in answers
    assert f"package_name: {package}\n" in answers
    assert (project / "src" / package / "__main__.py").exists()
