"""The generated Dockerfile, built unmodified by the real Docker engine, and its images run.

Base images are the stand-ins of harness/images/, under tags of the project's own named by the
Dockerfile's UV_IMAGE and MICROMAMBA_IMAGE build args; the conda
layer comes from a local channel served on loopback, the torch index from the local mirror
served on loopback, everything else from PyPI. Builds are shared between tests per module.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from harness import conda_channel, docker
from harness.built_images import PROJECTS, Images
from harness.images import base_images, naming
from harness.render import CATALOGUE, answers_for, render
from harness.service_client import LOCKED_DOWN, Api, free_port, logs

# The micromamba image's user, prefix and home, as the Dockerfile gets them.
IMAGE_FACTS = CATALOGUE["image"]
DEPENDENCY_STEP = "--no-install-project"
PROJECT_STEP = "--no-editable"
GUARD_STEP = '"doctor"]'

# Run inside an image: what a user would look for, as JSON.
INSPECT = r"""
import json, os, shutil, sys
probes = {".env", "probe-git.txt", "probe-data.txt"}
found, sources = [], []
for root, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/dev")]
    found += [os.path.join(root, f) for f in files if f in probes or f in ("uv", "uvx")]
    if root.endswith("/src/" + sys.argv[1]):
        sources.append(root)
print(json.dumps({"uid": os.getuid(), "found": found, "sources": sources,
                  "uv": shutil.which("uv"), "app": os.listdir("/app")}))
"""

# Run inside an image: every distribution in the prefix, with its metadata folders and installers.
OWNERS = r"""
import json, pathlib, re, sys
prefix = pathlib.Path(sys.argv[1])
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
dists = {}
for folder in prefix.glob("lib/python3*/site-packages/*.*-info"):
    installer = folder / "INSTALLER"
    who = installer.read_text().strip() if installer.exists() else None
    dists.setdefault(norm(folder.name.split("-")[0]), []).append([folder.name, who])
conda = {}
for record in prefix.glob("conda-meta/*.json"):
    for file in json.loads(record.read_text())["files"]:
        parts = pathlib.PurePath(file).parts
        if len(parts) > 2 and parts[-2].endswith(".dist-info") and parts[-3] == "site-packages":
            conda[norm(parts[-2].split("-")[0])] = record.name
print(json.dumps({"dists": dists, "conda": conda}))
"""


# --------------------------------------------------------------------------- without an engine


def test_the_dockerfile_needs_no_frontend_image_from_a_registry(tmp_path):
    """A `# syntax=` directive makes BuildKit pull a frontend before any step runs."""
    project = render(tmp_path / "project", answers_for("default"))
    for line in (project / "Dockerfile").read_text().splitlines():
        if not line.startswith("#"):
            break
        assert not re.match(r"#\s*syntax\s*=", line, re.I), line


def test_without_an_engine_image_tests_fail_under_ci_and_skip_elsewhere(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true requires the image tests"):
        docker.require_engine()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=r"`bash \.ci/docker-engine start`"):
        docker.require_engine()


def test_no_stand_in_takes_an_upstream_images_name():
    """A stand-in under an upstream name would become the base of a real project built here."""
    upstream = list(CATALOGUE["images"].values())
    # The check bites: each upstream image, and its Docker Hub spelling, is under an upstream name.
    assert upstream and all(naming.under_upstream_name(image) for image in upstream)
    assert naming.under_upstream_name(f"docker.io/{CATALOGUE['images']['micromamba']}")
    tags = [
        *naming.names().tags,
        *naming.platform_names("linux/arm64").tags,
        *naming.platform_names("linux/amd64").tags,
        base_images.rootfs_tag(),
        base_images.rootfs_tag("arm64"),
    ]
    for tag in tags:
        assert not naming.under_upstream_name(tag), tag
        assert tag.startswith(f"{naming.NAMESPACE}/"), tag
    assert len(set(tags)) == len(tags), tags


def test_the_stand_ins_build_args_are_the_dockerfiles_base_image_args(tmp_path):
    """Every image build names the stand-ins through these args: the Dockerfile must read them."""
    dockerfile = (render(tmp_path / "project", answers_for("default")) / "Dockerfile").read_text()
    for bases in (naming.names(), naming.platform_names("linux/arm64")):
        for arg in bases.build_args:
            assert re.search(rf"^ARG {arg}=", dockerfile, re.M), arg
            assert re.search(rf"^FROM \${{{arg}}} ", dockerfile, re.M), arg


@pytest.mark.parametrize("installer", ["uv", "conda"])
def test_a_host_folder_index_is_refused_where_the_image_build_needs_it(tmp_path, installer):
    url = "file:///srv/mirror/simple"
    destination = tmp_path / "project"
    answers = answers_for("default", torch_installer=installer, torch_index_url=url)
    if installer == "conda":  # uv skips conda's torch in the image: only the lock reads the URL
        render(destination, answers)
        return
    with pytest.raises(ValueError) as refusal:
        render(destination, answers)
    message = str(refusal.value).split(": ", 1)[1]
    assert message.startswith("must be http(s):// for uv")
    assert "python -m http.server" in message and "torch_installer=conda" in message
    assert all(len(line) < 80 for line in message.splitlines()), message
    assert not destination.exists()


# --------------------------------------------------------------------------- every project


@pytest.mark.parametrize("name", sorted(PROJECTS))
@pytest.mark.slow
@pytest.mark.image
def test_the_image_runs_its_report_and_passes_the_doctor(images, name):
    built = images.get(name)
    # Explicitly: a project with a store serves its HTTP API by default.
    report = built.run("python", "-m", built.package, "report")
    assert report.returncode == 0, report.stderr
    assert "python" in report.stdout and "GPU packages  none" in report.stdout, report.stdout
    doctor = built.run("python", "-m", built.package, "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "CPU-only: yes" in doctor.stdout
    uid = IMAGE_FACTS["uid"]
    assert docker.image_config(built.tag, "User") == f'"{uid}:{uid}"'


@pytest.mark.parametrize("name", sorted(PROJECTS))
@pytest.mark.slow
@pytest.mark.image
def test_the_image_holds_no_uv_no_source_and_no_probe(images, name):
    built = images.get(name)
    result = built.run("python", "-c", INSPECT, built.package)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["uid"] == IMAGE_FACTS["uid"]
    assert seen["uv"] is None and not [f for f in seen["found"] if f.endswith(("/uv", "/uvx"))]
    assert seen["sources"] == [] and seen["app"] == [], seen
    assert not [f for f in seen["found"] if not f.endswith(("/uv", "/uvx"))], seen["found"]


@pytest.mark.parametrize("name", sorted(PROJECTS))
@pytest.mark.slow
@pytest.mark.image
def test_every_distribution_in_the_prefix_has_one_installer(images, name):
    built = images.get(name)
    result = built.run("python", "-c", OWNERS, IMAGE_FACTS["prefix"])
    assert result.returncode == 0, result.stderr
    owners = json.loads(result.stdout)
    twice = {n: folders for n, folders in owners["dists"].items() if len(folders) != 1}
    assert not twice, f"more than one metadata folder: {twice}"
    for dist, [[folder, installer]] in owners["dists"].items():
        expected = "conda" if dist in owners["conda"] else "uv"
        assert installer == expected, f"{folder} was installed by {installer}, not {expected}"
    assert set(owners["conda"]) <= set(owners["dists"]), "conda-meta lists missing packages"


# --------------------------------------------------------------------------- the defaults


def edited_copy(images: Images, source: Path, name: str) -> Path:
    copy = images.root / name
    shutil.copytree(source, copy, symlinks=True)
    return copy


@pytest.mark.slow
@pytest.mark.image
def test_a_source_edit_reuses_the_dependency_layer_and_a_dependency_change_does_not(images):
    built = images.get("defaults")
    edited = edited_copy(images, built.project, "source-edit")
    cli = edited / "src" / built.package / "cli.py"
    cli.write_text(cli.read_text() + "# A source-only edit.\n")
    rebuild = images.build(edited, f"{built.tag}-source-edit")
    assert rebuild.returncode == 0, rebuild.log[-4000:]
    assert rebuild.cached(DEPENDENCY_STEP), rebuild.log
    assert not rebuild.cached(PROJECT_STEP), rebuild.log

    changed = edited_copy(images, built.project, "dependency-change")
    pyproject = changed / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            "dependencies = [\n", 'dependencies = [\n    "six>=1.16",\n', 1
        )
    )
    lock = subprocess.run(
        ["uv", "lock"],
        cwd=changed,
        capture_output=True,
        text=True,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
        check=False,
    )
    assert lock.returncode == 0, lock.stderr
    rebuild = images.build(changed, f"{built.tag}-dependency-change")
    assert rebuild.returncode == 0, rebuild.log[-4000:]
    assert not rebuild.cached(DEPENDENCY_STEP), rebuild.log


@pytest.mark.slow
@pytest.mark.image
def test_ingest_then_query_on_a_named_volume_survive_into_a_new_container(images, tmp_path):
    built = images.get("defaults")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "cats.txt").write_text("Cats purr when they are content.\n")
    (docs / "dogs.md").write_text("Dogs wag their tails when happy.\n")
    for path in (docs, *docs.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    volume = f"ml-container-template-test-{uuid.uuid4().hex[:8]}"
    env = {f"{built.package.upper()}_EMBEDDER": "hashing"}
    data = f"{volume}:{IMAGE_FACTS['home']}/{IMAGE_FACTS['data_folder']}"
    try:
        ingest = built.run(
            "python",
            "-m",
            built.package,
            "ingest",
            "/docs",
            env=env,
            volumes=(data, f"{docs}:/docs:ro"),
        )
        assert ingest.returncode == 0, ingest.stdout + ingest.stderr
        assert "ingested 2 files" in ingest.stdout
        query = built.run(
            "python",
            "-m",
            built.package,
            "query",
            "why do cats purr",
            "-k",
            "1",
            env=env,
            volumes=(data,),
        )
        assert query.returncode == 0, query.stdout + query.stderr
        assert "cats.txt" in query.stdout and "dogs.md" not in query.stdout
    finally:
        subprocess.run(["docker", "volume", "rm", "--force", volume], capture_output=True)


@pytest.mark.slow
@pytest.mark.image
def test_the_default_image_serves_locked_down_drains_on_sigterm_and_keeps_its_data(images):
    built = images.get("defaults")
    port = free_port()
    prefix = built.package.upper()
    env = {
        f"{prefix}_EMBEDDER": "hashing",
        f"{prefix}_HOST": "127.0.0.1",
        f"{prefix}_PORT": str(port),
    }
    volume = f"ml-container-template-test-{uuid.uuid4().hex[:8]}"
    data = f"{volume}:{IMAGE_FACTS['home']}/{IMAGE_FACTS['data_folder']}"

    def serve() -> tuple[str, Api]:
        container = docker.start(
            built.tag, network="host", volumes=(data,), env=env, options=LOCKED_DOWN
        )
        containers.append(container)
        return container, Api(port, container)

    containers: list[str] = []
    try:
        container, api = serve()
        api.wait_ready()
        documents = [
            {"id": "cats", "text": "Cats purr, nap in the sun and chase mice around the garden."},
            {"id": "rivers", "text": "Rain runs down from the mountains to the sea in rivers."},
            {"id": "gone", "text": "A compiler translates source code into machine code."},
        ]
        assert api.call("POST", "/documents", {"documents": documents}) == (
            200,
            {"added": 3, "count": 3},
        )
        assert api.nearest("which animal chases mice?")[0] == "cats"
        assert api.call("DELETE", "/documents/gone")[1] == {"deleted": "gone", "count": 2}
        status, refused = api.call("POST", "/query", {"text": "cats", "k": 0})
        assert status == 422 and "greater than or equal to 1" in json.dumps(refused)
        metrics = api.call("GET", "/metrics")[1]["text"]
        assert 'route="/documents",status="200"' in metrics and "documents_stored 2.0" in metrics
        # The image's HEALTHCHECK (Python's urllib, no curl) sees it ready too.
        deadline = time.monotonic() + 60
        while docker.container_state(container, "{{ .State.Health.Status }}") != "healthy":
            assert time.monotonic() < deadline, logs(container)
            time.sleep(1)

        # SIGTERM while a slow request is in flight: it completes, then the process exits 0.
        slow: dict[str, tuple[int, dict]] = {}
        texts = ["purr " * 1600] * 64
        worker = threading.Thread(
            target=lambda: slow.update(answer=api.call("POST", "/embed", {"texts": texts}))
        )
        worker.start()
        time.sleep(0.3)
        subprocess.run(["docker", "kill", "--signal", "TERM", container], check=True)
        worker.join(timeout=120)
        status, body = slow["answer"]
        assert status == 200 and len(body["vectors"]) == 64
        assert docker.wait(container, 120) == 0, logs(container)
        lines = [json.loads(line) for line in logs(container).splitlines() if line.startswith("{")]
        assert {"method": "POST", "path": "/embed", "status": 200} in [
            {key: line.get(key) for key in ("method", "path", "status")} for line in lines
        ]

        # A new container on the same volume finds the documents as they were.
        container, api = serve()
        api.wait_ready()
        assert api.nearest("which animal chases mice?") == ["cats", "rivers"]
    finally:
        subprocess.run(["docker", "rm", "--force", *containers], capture_output=True)
        subprocess.run(["docker", "volume", "rm", "--force", volume], capture_output=True)


def failed_at_the_guard(build: docker.Build) -> bool:
    [guard] = build.step_ids(GUARD_STEP)
    return build.returncode != 0 and f"\n{guard} ERROR" in build.log


@pytest.mark.slow
@pytest.mark.image
def test_a_cuda_package_in_the_conda_layer_fails_the_build_at_the_guard(images, stand_ins):
    built = images.get("defaults")
    result = images.build(built.project, f"{built.tag}-cuda", MICROMAMBA_IMAGE=stand_ins.cuda)
    assert failed_at_the_guard(result), result.log[-4000:]
    assert "GPU-only distribution installed: nvidia-cublas-cu12" in result.log


@pytest.mark.slow
@pytest.mark.image
def test_a_conda_layer_lagging_uv_lock_fails_the_build_at_the_guard(images, stand_ins):
    built = images.get("defaults")
    result = images.build(built.project, f"{built.tag}-lagging", MICROMAMBA_IMAGE=stand_ins.lagging)
    assert failed_at_the_guard(result), result.log[-4000:]
    for name in conda_channel.LAGGING:
        assert f"problem: {name} has two owners: conda installed {name}" in result.log, name
    assert "make lock" in result.log


@pytest.mark.slow
@pytest.mark.image
def test_an_old_micromamba_fails_the_build_with_one_line_naming_the_minimum(images, stand_ins):
    built = images.get("no-torch")
    result = images.build(built.project, f"{built.tag}-old", MICROMAMBA_IMAGE=stand_ins.old)
    assert result.returncode != 0
    minimum = CATALOGUE["conda"]["micromamba_min"]
    line = "micromamba 2.0.5 is too old for the conda locks: use MICROMAMBA_IMAGE with micromamba"
    assert f"{line} >= {minimum}\n" in result.log, result.log[-3000:]
