"""The plan is the only door into the template files.

Every file under template/ (its text and its templated name) and every store's code reads only
`plan`, the identity answers and Copier's own `_copier_*` variables: no `catalogue`, no raw
answer the plan carries. Checked on the parsed Jinja, so comments and prose do not count.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2 import Environment, meta, nodes

from harness.render import CATALOGUE, ROOT
from harness.template_plan import plan
from tools import uv_line

IDENTITY = {"plan", "project_name", "project_slug", "package_name", "description"}
TEMPLATE = ROOT / "template"
# Store code is rendered by an include in template/, so it is held to the same rule.
SOURCES = sorted(p for p in TEMPLATE.rglob("*") if p.is_file()) + sorted(
    (ROOT / "includes" / "stores").rglob("*.jinja")
)
# Copier's default delimiters (copier.yml sets no _envops) and the filters it loads.
ENV = Environment(extensions=["jinja2_ansible_filters.AnsibleCoreFiltersExtension"])


def label(path: Path) -> str:
    return str(path.relative_to(ROOT))


def undeclared(source: str) -> set[str]:
    return meta.find_undeclared_variables(ENV.parse(source))


def outside_the_door(names: set[str]) -> set[str]:
    return {name for name in names - IDENTITY if not name.startswith("_copier_")}


def plan_keys_read(source: str) -> set[str]:
    """The `plan.<key>` and `plan['<key>']` a template reads."""
    keys = set()
    tree = ENV.parse(source)
    for attr in tree.find_all(nodes.Getattr):
        if isinstance(attr.node, nodes.Name) and attr.node.name == "plan":
            keys.add(attr.attr)
    for item in tree.find_all(nodes.Getitem):
        is_plan = isinstance(item.node, nodes.Name) and item.node.name == "plan"
        if is_plan and isinstance(item.arg, nodes.Const):
            keys.add(item.arg.value)
    return keys


@pytest.mark.parametrize("path", SOURCES, ids=label)
def test_the_file_reads_only_the_plan_and_identity(path):
    if path.suffix == ".jinja":
        names = outside_the_door(undeclared(path.read_text(encoding="utf-8")))
        assert not names, f"{label(path)} reads {sorted(names)}: read them from the plan"


@pytest.mark.parametrize("path", SOURCES, ids=label)
def test_the_file_name_reads_only_the_plan_and_identity(path):
    names = outside_the_door(undeclared(str(path.relative_to(ROOT))))
    assert not names, f"the name {label(path)} reads {sorted(names)}: read them from the plan"


def test_every_plan_key_a_template_reads_is_in_the_plan():
    carried = set(plan()) | set(plan(vector_store="none", ml_libraries=[]))
    read = set()
    for path in SOURCES:
        read |= plan_keys_read(str(path.relative_to(ROOT)))
        if path.suffix == ".jinja":
            read |= plan_keys_read(path.read_text(encoding="utf-8"))
    assert read - carried == set()


def test_a_store_is_named_by_its_catalogue_key_alone():
    """One name per store: the key names its code, the plan derives its module and class, and
    the code takes the class from the plan."""
    stores = {key: store for key, store in CATALOGUE["stores"].items() if key != "none"}
    for mode, folder in (
        ("embedded", ROOT / "includes" / "stores"),
        ("server", ROOT / "includes" / "stores" / "server"),
    ):
        code = {p.name.removesuffix(".py.jinja"): p for p in folder.glob("*.py.jinja")}
        # Embedded code in includes/stores/, server code in includes/stores/server/.
        assert code.keys() == {key for key, store in stores.items() if mode in store["modes"]}
        for key, path in code.items():
            assert not {"module", "class"} & stores[key].keys(), f"{key} has a second name"
            derived = plan(vector_store=key, store_mode=mode)["store"]
            assert derived["source"] == str(path.relative_to(ROOT))
            text = path.read_text(encoding="utf-8")
            assert "class {{ plan.store.class }}(VectorStore):" in text, path
            assert derived["class"] not in text and derived["module"] not in text, path


def test_uv_line_is_read_once_and_ci_run_agrees_with_the_plan():
    """.ci/run's stdlib reader and the plan derive the same line from the one uv image tag."""
    text = (ROOT / "catalogue.yml").read_text(encoding="utf-8")
    version, next_minor = uv_line.uv_version(text)
    assert plan()["uv_requirement"] == f"uv>={version},<{next_minor}"
    assert plan()["uv_version"] == version
    # A bump, as tools.pins --write makes it, moves the line with it.
    bumped = text.replace(f"astral-sh/uv:{version}", "astral-sh/uv:0.14.2")
    assert uv_line.uv_version(bumped) == ("0.14.2", "0.15")
    assert "python3 tools/uv_line.py" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
