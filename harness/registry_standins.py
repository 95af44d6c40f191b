"""Loopback stand-ins for the registries tools/pins.py reads: PyPI's PEP 691 JSON pages, a CPU
index folder (PEP 503), a conda channel folder, a Docker Hub tags API and GitHub's releases API.

One `Standins` server answers them all under different path prefixes; each builder writes or
registers what the real registry would answer, with the versions a test chooses.
"""

from __future__ import annotations

import html
import json
import socket
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import quote

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from harness.loopback import LoopbackServer

PEP691_JSON = "application/vnd.pypi.simple.v1+json"
WHEEL_TAG = "cp311-cp311-manylinux_2_28_x86_64"
TYPES = {".json": "application/json", ".html": "text/html"}


class Standins(LoopbackServer):
    """`with Standins() as s: s.url + "/pypi/simple"`; answers are registered by path."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, str, bytes]] = {}
        self.folders: dict[str, Path] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.requests.append(self.path)
                status, content_type, body = server.lookup(self.path)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)

    @property
    def url(self) -> str:
        return self.origin

    def answer(
        self, path: str, data: object, content_type: str = "application/json", status: int = 200
    ) -> None:
        body = data if isinstance(data, bytes) else json.dumps(data).encode()
        self.answers[path] = (status, content_type, body)

    def serve_folder(self, prefix: str, folder: Path) -> str:
        """Serve `folder` under `/prefix/` (a folder answers with its index.html); its URL."""
        self.folders[prefix.strip("/")] = folder
        return f"{self.url}/{prefix.strip('/')}"

    def lookup(self, path: str) -> tuple[int, str, bytes]:
        if path in self.answers:
            return self.answers[path]
        bare = path.split("?")[0]
        if bare in self.answers:
            return self.answers[bare]
        prefix, _, rest = bare.lstrip("/").partition("/")
        if prefix in self.folders:
            target = self.folders[prefix] / rest
            target = target / "index.html" if target.is_dir() else target
            if target.is_file():
                return (
                    200,
                    TYPES.get(target.suffix, "application/octet-stream"),
                    target.read_bytes(),
                )
        return 404, "text/plain", b"not found"


def closed_port_url() -> str:
    """A loopback URL where nothing listens: a source that cannot be reached."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------------- PyPI (PEP 691 JSON)


def pypi_project(
    standins: Standins, name: str, versions: list[str], *, yanked: Sequence[str] = ()
) -> None:
    """`/pypi/simple/<name>/` as PyPI answers it in JSON: a wheel per version, some yanked."""
    files = [
        {
            "filename": f"{name.replace('-', '_')}-{v}-py3-none-any.whl",
            "url": f"https://files.example/{name}-{v}.whl",
            "hashes": {"sha256": "0" * 64},
            "yanked": v in yanked,
        }
        for v in [*versions, *yanked]
    ]
    page = {
        "meta": {"api-version": "1.1"},
        "name": canonicalize_name(name),
        "versions": [*versions, *yanked],
        "files": files,
    }
    standins.answer(f"/pypi/simple/{canonicalize_name(name)}/", page, PEP691_JSON)


# ---------------------------------------------------------------------- CPU index (PEP 503 folder)


def cpu_index_folder(folder: Path, projects: dict[str, list[str]]) -> Path:
    """`<folder>/<name>/index.html` linking one `+cpu` wheel name per version."""
    for name, versions in projects.items():
        links = "\n".join(
            f'<a href="../../files/{quote(wheel)}#sha256={"0" * 64}">{html.escape(wheel)}</a><br/>'
            for wheel in (f"{name}-{v}-{WHEEL_TAG}.whl" for v in versions)
        )
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "index.html").write_text(
            f"<!DOCTYPE html>\n<html><body>\n{links}\n</body></html>\n", encoding="utf-8"
        )
    return folder


# ---------------------------------------------------------------------- conda channel folder


def conda_channel(
    folder: Path, packages: list[tuple[str, str, str]], subdir: str = "linux-64"
) -> Path:
    """A channel folder whose `<subdir>/repodata.json` lists (name, version, build) records."""
    records = {
        f"{name}-{version}-{build}.conda": {
            "name": name,
            "version": version,
            "build": build,
            "build_number": 0,
            "depends": [],
            "subdir": subdir,
        }
        for name, version, build in packages
    }
    (folder / subdir).mkdir(parents=True, exist_ok=True)
    repodata = {"info": {"subdir": subdir}, "packages": {}, "packages.conda": records}
    (folder / subdir / "repodata.json").write_text(json.dumps(repodata), encoding="utf-8")
    return folder


# ---------------------------------------------------------------------- registry tags, GitHub


def registry_tags(standins: Standins, repository: str, pages: list[list[str]]) -> None:
    """Docker Hub's `/v2/repositories/<repo>/tags`: `pages` of tag names, linked by `next`."""
    base = f"/registry/v2/repositories/{repository}/tags"
    for number, tags in enumerate(pages, start=1):
        following = (
            f"{standins.url}{base}?page_size=100&page={number + 1}" if number < len(pages) else None
        )
        path = f"{base}?page_size=100" + ("" if number == 1 else f"&page={number}")
        standins.answer(
            path,
            {
                "count": sum(map(len, pages)),
                "next": following,
                "results": [{"name": tag} for tag in tags],
            },
        )


def github_release(standins: Standins, repository: str, tag: str, sha: str) -> None:
    """GitHub's latest release of `repository` and the commit its tag points at."""
    standins.answer(
        f"/github/repos/{repository}/releases/latest",
        {"tag_name": tag, "name": tag, "draft": False, "prerelease": False},
    )
    standins.answer(f"/github/repos/{repository}/commits/{tag}", {"sha": sha})


def admitted_ranges(catalogue: dict) -> dict[str, tuple[str, str]]:
    """PyPI name -> (range, the lowest release it admits) for every range in the catalogue."""
    pins = {}
    for group in ("libraries", "stores"):
        for entry in catalogue[group].values():
            clients = entry.get("server", {}).get("libraries", [])
            for pinned in [entry, *entry.get("requires", []), *clients]:
                if "version" in pinned:
                    low = next(
                        s.version for s in SpecifierSet(pinned["version"]) if s.operator == ">="
                    )
                    pins[pinned["pypi"]] = (pinned["version"], f"{low}.0")
    return pins
