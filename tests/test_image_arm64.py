"""The generated Dockerfile built for linux/arm64 under emulation, and its images run.

Every project locks for linux/arm64 by default, and a Mac with Apple Silicon builds arm64 unless
told otherwise. Here the engine builds `--platform linux/arm64` through qemu-user-static
(`.ci/arm64-emulation`), FROM arm64 stand-ins of the two base images (harness/images/),
with the conda layer from the local channel's linux-aarch64 packages and torch from the local
mirror's aarch64 wheel. Emulation is slow, so each image is built once and each test proves one
layer: the conda installer's image, and the uv installer's image.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest

from harness import conda_channel, docker
from harness.built_images import Built, Images
from harness.images import base_images
from harness.index_server import IndexFiles, IndexServer
from harness.mirror import TORCH_VERSION, build_mirror
from harness.render import CATALOGUE

PLATFORM = "linux/arm64"
IMAGE_FACTS = CATALOGUE["image"]
# The two installers of the torch layer. torch alone: PyPI's 2.13 aarch64 wheel is a CUDA build, so
# the mirror's aarch64 torch is a synthetic one, which sentence-transformers cannot import, and the
# image imports what its start imports at build time (ADR 0018).
PROJECTS = {
    "conda-installer": {"ml_libraries": ["torch"]},
    "uv-installer": {"torch_installer": "uv", "ml_libraries": ["torch"]},
}
# Which torch the image holds, on which machine, and the conda subdirs its prefix came from.
PROBE = r"""
import json, pathlib, platform, sys, torch
records = pathlib.Path(sys.prefix, "conda-meta").glob("*.json")
subdirs = sorted({json.loads(record.read_text())["subdir"] for record in records})
print(json.dumps([torch.__version__, torch.version.cuda, platform.machine(), subdirs]))
"""


@pytest.fixture(scope="module")
def arm64_images(tmp_path_factory, stand_in_audit) -> Iterator[Images]:
    """arm64 builds of this module, FROM the arm64 stand-ins, locked for both platforms."""
    docker.require_arm64()
    stand_ins = base_images.ensure_platform(PLATFORM)
    stand_in_audit.update(stand_ins.tags)
    mirror = build_mirror(tmp_path_factory.mktemp("mirror"), machines=("x86_64", "aarch64"))
    files = IndexFiles.from_mirror(Path(url2pathname(urlparse(mirror).path)))
    with (
        IndexServer(files) as index,
        conda_channel.ChannelServer(conda_channel.build_channel()) as channel,
    ):
        built = Images(
            tmp_path_factory.mktemp("arm64-images"),
            index.url,
            channel.url,
            platform=PLATFORM,
            base_args=stand_ins.build_args,
            lock_platforms=["linux/amd64", PLATFORM],
        )
        yield built
    docker.remove_images(*built.tags)


def ingest_then_query(built: Built, docs: Path) -> tuple[str, str]:
    """Ingest two documents into a named volume, then query it from a second container."""
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
        return ingest.stdout, query.stdout
    finally:
        subprocess.run(["docker", "volume", "rm", "--force", volume], capture_output=True)


def test_without_emulation_arm64_tests_fail_under_ci_and_skip_elsewhere(monkeypatch, tmp_path):
    if os.uname().machine == "aarch64":
        pytest.skip("an arm64 machine builds arm64 natively: there is nothing to miss")
    monkeypatch.setattr(docker, "BINFMT_AARCH64", tmp_path / "qemu-aarch64")
    monkeypatch.setattr(docker, "require_engine", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true requires the arm64 image tests"):
        docker.require_arm64()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=r"no aarch64 entry in binfmt_misc.*arm64-emul"):
        docker.require_arm64()
    # Registered without F, qemu is not reachable from inside a container.
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /usr/bin/qemu-aarch64\nflags: P\n")
    with pytest.raises(pytest.skip.Exception, match="without the F"):
        docker.require_arm64()


@pytest.mark.parametrize("name", sorted(PROJECTS))
@pytest.mark.slow
@pytest.mark.image
def test_the_arm64_image_runs_a_cpu_torch_on_aarch64_passes_the_doctor_and_answers(
    arm64_images, name, tmp_path
):
    built = arm64_images.get(name, PROJECTS[name])
    assert docker.image_config(built.tag, "Architecture", "") == "arm64"

    probe = built.run("python", "-c", PROBE)
    assert probe.returncode == 0, probe.stderr
    version, cuda, machine, subdirs = json.loads(probe.stdout)
    assert machine == "aarch64"
    assert cuda is None and version.startswith(TORCH_VERSION.split("+")[0]), probe.stdout
    # The conda layer installed the aarch64 lock, not the linux-64 one.
    assert set(subdirs) == {"linux-aarch64", "noarch"}, subdirs

    doctor = built.run("python", "-m", built.package, "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "CPU-only: yes" in doctor.stdout

    ingested, answer = ingest_then_query(built, tmp_path / "docs")
    assert "ingested 2 files" in ingested
    assert "cats.txt" in answer and "dogs.md" not in answer
