"""Secure defaults of a generated project, each held by a test that fails if it regresses.

- The torch family comes only from the explicit CPU index; everything else only from PyPI, even
  when the CPU index offers a higher version (dependency confusion), proven with a real lock.
- The lock pins every artifact by hash; the image installs only the lock (--locked/--frozen),
  never with pip.
- The runtime runs as a numeric non-root user; base images are pinned by version and can be
  pinned by digest through build args.
- .dockerignore, read with Docker's own rules, keeps secrets, keys, .git, environments and caches
  out of the build context, also under src/.
- No credential is ever rendered: a URL with credentials is refused, and uv takes them from
  UV_INDEX_PYTORCH_CPU_USERNAME / _PASSWORD (checked against a private loopback index).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import dockerfile
import pytest

from harness import mirror
from harness.compat import tomllib
from harness.dockerignore import DockerIgnore
from harness.index_server import IndexFiles, IndexServer
from harness.locks import TORCH_FAMILY, locked_packages, uv_lock
from harness.render import ANSWER_SETS, CATALOGUE, ROOT, answers_for, local_answers, render

pytestmark = pytest.mark.filterwarnings("ignore::copier.errors.DirtyLocalWarning")

PYPI = "https://pypi.org/simple"
PROBE = "torch-uv-bare"  # the answer set the lock probes start from
INDEX_NAME = CATALOGUE["torch_index_name"]
# uv's rule for an index's credential variables: the name in upper case, anything not a letter
# or digit as "_" (docs.astral.sh/uv/configuration/indexes/#providing-credentials-directly).
INDEX_ENV = "UV_INDEX_" + re.sub(r"[^A-Z0-9]", "_", INDEX_NAME.upper())


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, Path]:
    """Every named answer set, rendered once."""
    root = tmp_path_factory.mktemp("secure")
    return {name: render(root / name, answers_for(name)) for name in sorted(ANSWER_SETS)}


def add_dependency(project: Path, requirement: str) -> None:
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    assert text.count("dependencies = [\n") == 1
    added = text.replace("dependencies = [\n", f'dependencies = [\n    "{requirement}",\n')
    pyproject.write_text(added, encoding="utf-8")


def index_location(registry: str) -> str:
    """A registry as uv.lock records it or as pyproject names it: file URLs become paths."""
    return registry.removeprefix("file://").rstrip("/")


# --------------------------------------------------------------------------- index isolation


@pytest.fixture(scope="module")
def confusing_mirror(tmp_path_factory) -> Iterator[str]:
    """A CPU index that also offers `requests` 99.0.0, higher than anything on PyPI.

    Served on loopback: the probe's uv installer refuses a host-folder index.
    """
    root = tmp_path_factory.mktemp("confusing-mirror")
    mirror.build_mirror(root, synthetic=True)
    fake = mirror.build_wheel(
        root / "wheels",
        "requests",
        "99.0.0",
        {"requests/__init__.py": b"raise SystemExit('not PyPI requests')\n"},
        tag="py3-none-any",
    )
    mirror.write_project_page(root / "simple", "requests", [fake])
    with IndexServer(IndexFiles.from_mirror(root / "simple")) as server:
        yield server.url


@pytest.fixture(scope="module")
def locked(tmp_path_factory, confusing_mirror) -> Path:
    """A project that depends on torch and requests, locked against the confusing mirror."""
    root = tmp_path_factory.mktemp("locked")
    project = render(root / "project", answers_for(PROBE, **local_answers(confusing_mirror)))
    add_dependency(project, "requests")
    result = uv_lock(project, UV_CACHE_DIR=str(root / "uv-cache"))
    assert result.returncode == 0, result.stderr
    return project


def test_torch_from_the_cpu_index_and_everything_else_from_pypi(locked, confusing_mirror):
    packages = locked_packages(locked)
    assert packages["requests"]["source"] == {"registry": PYPI}
    assert packages["requests"]["version"] != "99.0.0"
    assert index_location(packages["torch"]["source"]["registry"]) == index_location(
        confusing_mirror
    )
    for name, package in packages.items():
        registry = package["source"].get("registry")
        if registry is None:
            continue  # the project itself
        expected = confusing_mirror if name in TORCH_FAMILY else PYPI
        assert index_location(registry) == index_location(expected), f"{name} from {registry}"


def test_without_explicit_the_mirror_would_win(tmp_path, locked, confusing_mirror):
    """The test above has teeth: drop `explicit = true` and the mirror's requests 99 wins."""
    project = tmp_path / "project"
    shutil.copytree(locked, project)
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    assert text.count("explicit = true\n") == 1
    pyproject.write_text(text.replace("explicit = true\n", ""), encoding="utf-8")
    (project / "uv.lock").unlink()
    result = uv_lock(project, UV_CACHE_DIR=str(tmp_path / "uv-cache"))
    assert result.returncode == 0, result.stderr
    requests = locked_packages(project)["requests"]
    assert requests["version"] == "99.0.0" and requests["source"] != {"registry": PYPI}


def test_no_unsafe_index_settings_are_rendered(rendered):
    for name, project in rendered.items():
        pyproject_text = (project / "pyproject.toml").read_text(encoding="utf-8")
        uv = tomllib.loads(pyproject_text)["tool"]["uv"]
        assert [index["name"] for index in uv["index"]] == [INDEX_NAME], name
        assert uv["index"][0]["explicit"] is True and "default" not in uv["index"][0], name
        for key in (
            "index-url",
            "extra-index-url",
            "find-links",
            "index-strategy",
            "no-index",
            "allow-insecure-host",
        ):
            assert key not in uv, f"{name}: [tool.uv] {key}"
        assert {n for n, s in uv["sources"].items() if s == {"index": INDEX_NAME}} == TORCH_FAMILY
        for path in sorted(project.rglob("*")):
            if path.is_file():
                text = path.read_text(encoding="utf-8", errors="replace")
                for word in (
                    "unsafe-best-match",
                    "unsafe-first-match",
                    "--extra-index-url",
                    "--index-strategy",
                    "--allow-insecure-host",
                    "--trusted-host",
                ):
                    assert word not in text, f"{name}: {path.relative_to(project)} has {word}"


# --------------------------------------------------------------------------- lock and image


def test_lock_pins_every_artifact_by_hash(locked):
    artifacts = 0
    for name, package in locked_packages(locked).items():
        if "registry" not in package["source"]:
            continue  # the project itself, built from source
        files = package.get("wheels", []) + ([package["sdist"]] if "sdist" in package else [])
        assert files, f"{name} has no artifact"
        for file in files:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", file.get("hash", "")), f"{name}: {file}"
            artifacts += 1
    assert artifacts >= 4


def run_instructions(project: Path) -> list:
    return [i for i in dockerfile.parse_file(str(project / "Dockerfile")) if i.cmd == "RUN"]


def test_image_installs_only_the_lock(rendered):
    for name, project in rendered.items():
        instructions = dockerfile.parse_file(str(project / "Dockerfile"))
        assert not [i for i in instructions if i.cmd == "ADD"], f"{name}: ADD fetches unpinned"
        commands = " ".join(
            " ".join(i.value)
            for i in instructions
            if i.cmd in {"RUN", "CMD", "ENTRYPOINT", "SHELL"}
        )
        assert not re.search(
            r"\bpip3? install\b|\buv pip\b|\buv add\b|\buv lock\b|\bcurl\b|"
            r"\bwget\b",
            commands,
        ), f"{name}: an install outside the lock"
        syncs = 0
        for run in run_instructions(project):
            command = " ".join(run.value)
            for uv_call in re.findall(r"\buv (\w+)([^&;|]*)", command):
                subcommand, arguments = uv_call
                assert subcommand == "sync", f"{name}: uv {subcommand} in the image"
                assert re.search(r"--locked\b|--frozen\b", arguments), f"{name}: {command}"
                syncs += 1
            if "micromamba install" in command:
                assert re.search(r'--file "\$lock"$', command), f"{name}: {command}"
                assert 'lock="/tmp/conda-${platform:-$TARGETARCH}.lock"' in command, name
        assert syncs >= 2, name


def test_runtime_runs_as_a_numeric_non_root_user(rendered):
    for name, project in rendered.items():
        instructions = dockerfile.parse_file(str(project / "Dockerfile"))
        last_from = max(n for n, i in enumerate(instructions) if i.cmd == "FROM")
        users = [(n, i.value[0]) for n, i in enumerate(instructions) if i.cmd == "USER"]
        assert users, f"{name}: no USER"
        position, user = users[-1]
        assert position > last_from, f"{name}: the runtime stage sets no USER"
        uid, _, gid = user.partition(":")
        assert uid.isdigit() and int(uid) != 0, f"{name}: USER {user}"
        assert not gid or (gid.isdigit() and int(gid) != 0), f"{name}: USER {user}"


def test_base_images_pinned_by_version_and_by_digest_on_demand(rendered):
    expected = {
        "MICROMAMBA_IMAGE": CATALOGUE["images"]["micromamba"],
        "UV_IMAGE": CATALOGUE["images"]["uv"],
    }
    for name, project in rendered.items():
        text = (project / "Dockerfile").read_text(encoding="utf-8")
        instructions = dockerfile.parse_file(str(project / "Dockerfile"))
        first_from = next(n for n, i in enumerate(instructions) if i.cmd == "FROM")
        args = dict(
            i.value[0].split("=", 1)
            for i in instructions[:first_from]
            if i.cmd == "ARG" and "=" in i.value[0]
        )
        assert expected.items() <= args.items(), name
        stages: set[str] = set()
        for instruction in instructions[first_from:]:
            if instruction.cmd != "FROM":
                continue
            base = instruction.value[0]
            if base not in stages:
                arg = re.fullmatch(r"\$\{(\w+)\}", base)
                assert arg and arg[1] in args, f"{name}: FROM {base} is no build arg or stage"
                repository, _, tag = args[arg[1]].rpartition(":")
                assert "/" in repository and re.match(r"\d", tag), f"{name}: {args[arg[1]]}"
            stages.add(instruction.value[2])
        # The documented way to pin by digest.
        assert "--build-arg MICROMAMBA_IMAGE=" in text and "@sha256:" in text, name


# --------------------------------------------------------------------------- build context

# Docker's own matcher tests (moby/patternmatcher TestMatches, MatchesOrParentMatches): the port
# in harness/dockerignore.py must agree with each before it is trusted with the template.
DOCKER_CASES = [
    (["**"], "dir/file", True),
    (["**/"], "dir/file", True),
    (["dir/**"], "dir/dir2/file", True),
    (["**/dir"], "dir/file", True),
    (["**/dir2/*"], "dir/dir2/file", True),
    (["**file"], "dir/dir/file", True),
    (["**/file*.txt"], "dir/dir/file.txt", True),
    (["**/**/*.txt2"], "dir/dir/file.txt", False),
    (["**/*.txt"], "file.txt", True),
    (["a**/*.txt"], "a/dir/dir/file.txt", True),
    (["a/*.txt"], "a/dir/file.txt", False),
    (["a[b-d]e"], "ace", True),
    (["a[b-d]e"], "aae", False),
    (["a[^b-d]e"], "aze", True),
    ([".*"], ".foo", True),
    ([".*"], "foo", False),
    (["abc.def"], "abcZdef", False),
    (["abc?def"], "abcZdef", True),
    (["**/foo/bar"], "dir/dir2/foo/bar", True),
    (["abc/**"], "abc", False),
    (["**/.foo"], ".foo", True),
    (["**/.foo"], "bar.foo", False),
    (["a(b)c/def"], "a(b)c/def", True),
    (["a.|)$(}+{bc"], "a.|)$(}+{bc", True),
    (["dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    (["a*/b"], "a/c/b", False),
    (["a*b"], "a/b", False),
    (["a\\*b"], "a*b", True),
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
    (["*.go", "!fileutils.go"], "fileutils.go", False),
    (["!fileutils.go", "*.go"], "fileutils.go", True),
    # The .dockerignore reader: comments, trimming, "./" and leading "/" are cleaned away.
    (["# *", "/secret", "  ./keys/  "], "secret", True),
    (["# *"], "x", False),
    (["  ./keys/  "], "keys/id", True),
]


@pytest.mark.parametrize(("patterns", "path", "excluded"), DOCKER_CASES)
def test_the_matcher_agrees_with_docker(patterns, path, excluded):
    assert DockerIgnore("\n".join(patterns)).excluded(path) is excluded


SECRETS = [
    ".git/config",
    ".git/HEAD",
    ".env",
    ".env.local",
    ".env.production",
    "secrets.pem",
    "server.key",
    "client.p12",
    "id_rsa",
    "id_rsa.pub",
    "id_ed25519",
    ".netrc",
    ".pypirc",
    ".venv/bin/python",
    ".venv/lib/python3.11/site-packages/x.py",
    "venv/pyvenv.cfg",
    "__pycache__/x.cpython-311.pyc",
    ".pytest_cache/v/cache",
    ".ruff_cache/0.8/x",
    "data/store.sqlite3",
    "notes/todo.txt",
    # The same under src/, which the allow-list re-includes as a whole.
    "src/{pkg}/.env",
    "src/{pkg}/.env.local",
    "src/.env",
    "src/{pkg}/sub/.env",
    "src/{pkg}/key.pem",
    "src/{pkg}/tls.key",
    "src/{pkg}/id_rsa",
    "src/{pkg}/id_ecdsa",
    "src/{pkg}/.netrc",
    "src/.git/config",
    "src/{pkg}/.git/HEAD",
    "src/.venv/pyvenv.cfg",
    "src/{pkg}/__pycache__/cli.cpython-311.pyc",
    "src/{pkg}/stale.pyc",
    "src/{pkg}/.pytest_cache/README.md",
    "src/{pkg}.egg-info/PKG-INFO",
]
NEEDED = [
    "pyproject.toml",
    "uv.lock",
    "environment.yml",
    "README.md",
    "conda-linux-64.lock",
    "conda-linux-aarch64.lock",
    "src/{pkg}/__init__.py",
    "src/{pkg}/__main__.py",
    "src/{pkg}/cli.py",
    "src/{pkg}/doctor.py",
    "src/{pkg}/sub/module.py",
    "src/{pkg}/data/vocab.json",
]


def test_build_context_keeps_secrets_and_junk_out(tmp_path):
    project = render(tmp_path / "project", answers_for("default"))
    package = next((project / "src").iterdir()).name
    for relative in SECRETS + NEEDED:
        path = project / relative.format(pkg=package)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("TOKEN=do-not-ship\n", encoding="utf-8")
    ignore = DockerIgnore((project / ".dockerignore").read_text(encoding="utf-8"))
    sent = set(ignore.context(project))
    leaked = sorted(sent & {s.format(pkg=package) for s in SECRETS})
    assert not leaked, f"sent to the Docker daemon: {leaked}"
    missing = sorted({n.format(pkg=package) for n in NEEDED} - sent)
    assert not missing, f"left out of the build context: {missing}"
    # Everything sent is one of the allow-listed files or lives under src/.
    extra = sorted(
        f
        for f in sent
        if not f.startswith("src/")
        and f
        not in {
            "pyproject.toml",
            "uv.lock",
            "environment.yml",
            "README.md",
            "conda-linux-64.lock",
            "conda-linux-aarch64.lock",
        }
    )
    assert not extra, extra
    # Whatever the Dockerfile copies or bind-mounts from the context is in it.
    for instruction in dockerfile.parse_file(str(project / "Dockerfile")):
        sources = []
        if instruction.cmd == "COPY" and not any(f.startswith("--from") for f in instruction.flags):
            sources = list(instruction.value[:-1])
        for flag in instruction.flags:
            if "type=bind" in flag and "from=" not in flag:
                source = dict(
                    p.split("=", 1) for p in flag.split("=", 1)[1].split(",") if "=" in p
                ).get("source", ".")
                sources.append(source)
        for source in sources:
            present = source == "." or any(
                fnmatch(f, source) or f.startswith(source + "/") for f in sent
            )
            assert present, f"{instruction.original}: {source} is not in the build context"


# --------------------------------------------------------------------------- credentials


@pytest.mark.parametrize(
    "url",
    [
        "https://user:secret-pass@mirror.example/simple",
        "https://secret-token@mirror.example/simple",
        "http://user:secret-pass@127.0.0.1:8080/simple/",
        "https://mirror.example/simple?user=x@secret-pass",
    ],
)
def test_a_url_with_credentials_is_refused_without_echoing_them(tmp_path, url):
    destination = tmp_path / "project"
    with pytest.raises(ValueError, match="torch_index_url': must not hold credentials") as refusal:
        render(destination, answers_for("default", torch_index_url=url))
    assert "secret" not in str(refusal.value)
    assert f"{INDEX_ENV}_USERNAME" in str(refusal.value)
    assert not destination.exists()


def test_no_rendered_file_carries_credentials(rendered):
    userinfo = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s\"'`@]*@", re.I)
    for name, project in rendered.items():
        for path in sorted(project.rglob("*")):
            if path.is_file():
                text = path.read_text(encoding="utf-8", errors="replace")
                assert not userinfo.search(text), f"{name}: {path.relative_to(project)}"
                # A pydantic SecretStr annotation is where a secret is kept out of sight, not one;
                # a YAML key whose value starts on the next line (a Kubernetes `secret:` volume)
                # holds none on its own line.
                holds = r"(?i)(password|token|secret)[ \t]*[=:][ \t]*['\"]?(?!SecretStr\b)\w{8,}"
                assert not re.search(holds, text), (
                    f"{name}: {path.relative_to(project)} looks like it holds a secret"
                )


def test_private_index_credentials_through_uv_variables(tmp_path):
    """uv finds the credentials of the index `pytorch-cpu` in UV_INDEX_PYTORCH_CPU_*, and
    never writes them to uv.lock; without them the private index refuses the lock."""
    wheels = tmp_path / "wheels"
    files = IndexFiles({"torch": [mirror.build_synthetic_torch(wheels)]})
    user, password = "ci-reader", "s3cr3t-index-token"
    with IndexServer(files, auth=(user, password)) as server:
        project = render(tmp_path / "project", answers_for(PROBE, **local_answers(server.url)))
        refused = uv_lock(project, UV_CACHE_DIR=str(tmp_path / "cache-1"))
        assert refused.returncode != 0 and "401" in refused.stderr
        credentials = {f"{INDEX_ENV}_USERNAME": user, f"{INDEX_ENV}_PASSWORD": password}
        result = uv_lock(project, UV_CACHE_DIR=str(tmp_path / "cache-2"), **credentials)
        assert result.returncode == 0, result.stderr
        assert any(status == 200 and auth for _, auth, status in server.requests)
    lock = (project / "uv.lock").read_text(encoding="utf-8")
    assert password not in lock and user not in lock
    assert locked_packages(project)["torch"]["source"] == {"registry": server.url}


def test_readmes_explain_private_mirror_credentials(rendered):
    root_readme = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    for project_readme in [root_readme] + [
        (p / "README.md").read_text(encoding="utf-8") for p in rendered.values()
    ]:
        assert f"{INDEX_ENV}_USERNAME" in project_readme
        assert f"{INDEX_ENV}_PASSWORD" in project_readme
        assert "--mount=type=secret" in project_readme


def test_readme_security_section_names_tests_that_exist():
    """Every test docs/security.md's guarantees cite is defined where it says."""
    readme = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    section = readme.split("## Guarantees", 1)[1].split("\n## ", 1)[0]
    cited = re.findall(r"(tests/test_\w+\.py)::(test_\w+)", section)
    bare = set(re.findall(r"`(test_\w+)`", section))
    assert len(cited) >= 15
    defined: dict[str, set[str]] = {}
    for path, name in cited:
        if path not in defined:
            source = (ROOT / path).read_text(encoding="utf-8")
            defined[path] = set(re.findall(r"^def (test_\w+)", source, re.M))
        assert name in defined[path], f"{path}::{name} is not a test"
    faults = set(
        re.findall(
            r"^def (test_\w+)",
            (ROOT / "tests/test_hook_faults.py").read_text(encoding="utf-8"),
            re.M,
        )
    )
    # A bare name is a hook-fault test here, or a test every generated project of that kind runs.
    generated = {
        name
        for template in (ROOT / "template" / "tests").glob("*.jinja")
        for name in re.findall(r"^def (test_\w+)", template.read_text(encoding="utf-8"), re.M)
    }
    assert bare <= faults | generated, bare - faults - generated
