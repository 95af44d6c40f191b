"""Generated projects rendered, locked and built once per test module, shared by its tests.

Base images are the stand-ins of harness/images/, named by `base_args`: the generated
Dockerfile's own UV_IMAGE and MICROMAMBA_IMAGE build args, which every build gets. The conda
layer comes from a local channel served on loopback, the torch index from the local mirror
served on loopback, everything else from PyPI. `Images(..., platform="linux/arm64")` builds and
runs for another platform.
"""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from harness import docker
from harness.render import answers_for, local_answers, render

# The projects image tests build, by name: answers over the defaults.
PROJECTS: dict[str, dict] = {
    "defaults": {},
    "uv-qdrant": {"torch_installer": "uv", "vector_store": "qdrant"},
    "no-torch": {"ml_libraries": [], "vector_store": "none"},
    # conda installs faiss; torchaudio's 2.11 line has no conda-forge build, so uv installs torch.
    "faiss-audio-conda": {"ml_libraries": ["torchaudio"], "vector_store": "faiss"},
}
# Files that .dockerignore must keep out of the build context, and so out of the image.
PROBES = (".env", ".git/probe-git.txt", "data/probe-data.txt", "src/{pkg}/.env")
# The conda lock the hook writes for each platform.
CONDA_LOCKS = {"linux/amd64": "conda-linux-64.lock", "linux/arm64": "conda-linux-aarch64.lock"}


@dataclass
class Built:
    project: Path
    package: str
    tag: str
    build: docker.Build
    platform: str | None = None

    def run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return docker.run(self.tag, *args, platform=self.platform, **kwargs)


class Images:
    """Projects rendered, locked and built once per module, on first use.

    `base_args` are build args every build gets: the stand-ins' tags (required, so no build falls
    back to the Dockerfile's upstream names); `platform` builds and runs for that platform
    (linux/arm64); `lock_platforms` answers the question of that name (the local answers'
    linux/amd64 otherwise).
    """

    def __init__(
        self,
        root: Path,
        index_url: str,
        channel_url: str,
        *,
        base_args: dict[str, str],
        platform: str | None = None,
        lock_platforms: list[str] | None = None,
    ) -> None:
        self.root, self.index_url, self.channel_url = root, index_url, channel_url
        self.platform, self.base_args = platform, dict(base_args)
        self.lock_platforms = lock_platforms
        self.built: dict[str, Built] = {}
        self.tags: list[str] = []

    def project(self, name: str, answers: dict | None = None) -> Path:
        """Render `name` (PROJECTS' answers unless given), locked by its hook; plant the probes."""
        chosen = PROJECTS[name] if answers is None else answers
        overrides = {"conda_channel": self.channel_url, **chosen}
        if self.lock_platforms:
            overrides.setdefault("lock_platforms", self.lock_platforms)
        answers = answers_for("default", **local_answers(self.index_url, **overrides))
        project = render(self.root / name / "project", answers, tasks=True)
        locks = [CONDA_LOCKS[platform] for platform in answers["lock_platforms"]]
        for lock in ("uv.lock", *locks):
            assert (project / lock).exists(), f"{name}: the hook wrote no {lock}"
        package = next((project / "src").iterdir()).name
        for probe in PROBES:
            path = project / probe.format(pkg=package)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("PROBE=must-not-reach-the-image\n")
        return project

    def build(self, project: Path, tag: str, **build_args: str) -> docker.Build:
        self.tags.append(tag)
        arguments = {**self.base_args, **build_args}
        return docker.build(project, tag, build_args=arguments, platform=self.platform)

    def get(self, name: str, answers: dict | None = None) -> Built:
        """The image of project `name`, built on first use (PROJECTS' answers unless given)."""
        if name not in self.built:
            project = self.project(name, answers)
            tag = f"ml-container-template-test/{name}:{uuid.uuid4().hex[:8]}"
            result = self.build(project, tag)
            assert result.returncode == 0, f"{name}: build failed\n{result.log[-6000:]}"
            package = next((project / "src").iterdir()).name
            self.built[name] = Built(project, package, tag, result, self.platform)
        return self.built[name]
