from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest
from hypothesis import HealthCheck, Phase, settings

from harness import conda_channel, docker
from harness.built_images import Images
from harness.images import base_images, naming
from harness.index_server import IndexFiles, IndexServer
from harness.mirror import build_mirror, describe_torch_wheel

# Hypothesis: deterministic in CI (fixed seed, no example database, 200 examples per property);
# HYPOTHESIS_PROFILE=thorough explores ten times as many, from a random seed.
# No "explain" phase: on a failure it re-runs the example over a hundred times under coverage,
# which takes minutes when each example renders a project; the shrunk example is what matters.
settings.register_profile(
    "ci",
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
settings.register_profile(
    "thorough",
    parent=settings.get_profile("ci"),
    max_examples=2000,
    derandomize=False,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_report_header(config: pytest.Config) -> str:
    return describe_torch_wheel()


@pytest.fixture(scope="session")
def mirror_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A local PEP 503 CPU index: the real torch wheel when on disk, a synthetic one otherwise."""
    return build_mirror(tmp_path_factory.mktemp("mirror"))


@pytest.fixture(scope="session")
def http_mirror_url(mirror_url: str) -> Iterator[str]:
    """The same index over loopback HTTP: an image build cannot read a host folder."""
    files = IndexFiles.from_mirror(Path(url2pathname(urlparse(mirror_url).path)))
    with IndexServer(files) as server:
        yield server.url


@pytest.fixture(scope="session")
def stand_in_audit() -> Iterator[set[str]]:
    """The stand-ins' tags this session ensured; at its end, no stand-in under an upstream name.

    A stand-in under `mambaorg/micromamba:...` would be the base of a real project built on the
    same machine. The ensured tags must show in the label's listing, so the check sees stand-ins.
    """
    ensured: set[str] = set()
    yield ensured
    if not ensured:
        return
    labelled = docker.images_labelled(naming.INPUTS_LABEL)
    unseen = sorted(ensured - set(labelled))
    assert not unseen, f"stand-ins missing from the {naming.INPUTS_LABEL} listing: {unseen}"
    misnamed = naming.misnamed(labelled)
    assert not misnamed, (
        f"stand-ins under upstream images' names: {misnamed}; remove them (docs/testing.md): "
        f"docker rmi {' '.join(misnamed)}"
    )


@pytest.fixture(scope="session")
def stand_ins(stand_in_audit: set[str]) -> base_images.StandIns:
    """The stand-in base images in the engine; fails under CI=true without one, else skips."""
    docker.require_engine()
    ensured = base_images.ensure()
    stand_in_audit.update(ensured.tags)
    return ensured


@pytest.fixture(scope="module")
def images(tmp_path_factory, http_mirror_url, stand_ins) -> Iterator[Images]:
    """Image builds shared by one test module's tests, removed after it."""
    with conda_channel.ChannelServer(conda_channel.build_channel()) as channel:
        built = Images(
            tmp_path_factory.mktemp("images"),
            http_mirror_url,
            channel.url,
            base_args=stand_ins.build_args,
        )
        yield built
    docker.remove_images(*built.tags)
