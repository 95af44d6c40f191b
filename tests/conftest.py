from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.mirror import build_mirror


@pytest.fixture(scope="session")
def mirror_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A local PEP 503 CPU index: the real torch wheel when on disk, a synthetic one otherwise."""
    return build_mirror(tmp_path_factory.mktemp("mirror"))


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    return tmp_path / "project"
