"""The registries the template's pins come from, read with urllib.

Each reader returns what a registry publishes or raises `Unreachable`; nothing here compares
versions with pins (tools/pins.py does).
"""

from __future__ import annotations

import gzip
import html
import http.client
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urljoin, urlparse
from urllib.request import Request, url2pathname, urlopen

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

PEP691_JSON = "application/vnd.pypi.simple.v1+json"
# PEP 691 content negotiation: JSON preferred, the PEP 503 HTML page accepted.
INDEX_ACCEPT = f"{PEP691_JSON}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
USER_AGENT = "ml-container-template-pins"
# Docker Hub pages newest first; this many pages (100 tags each) reach well past a year of tags.
MAX_TAG_PAGES = 10
ANCHOR = re.compile(r"<a\s[^>]*>", re.IGNORECASE)
HREF = re.compile(r"""href\s*=\s*["']([^"']+)["']""", re.IGNORECASE)


class Unreachable(Exception):
    """A source did not answer, or answered something other than what was asked for."""


class NotFound(Unreachable):
    """The source answered: there is no such page (HTTP 404 or 410, or no such file)."""


@dataclass
class Sources:
    """Where each registry lives; every URL can point at a stand-in."""

    pypi_url: str
    cpu_index_url: str
    conda_channel_url: str
    conda_subdir: str
    registry_url: str
    github_api_url: str
    github_token: str | None = None
    timeout: float = 20.0
    _cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ transport

    def fetch(
        self, url: str, accept: str = "*/*", *, token: str | None = None
    ) -> tuple[bytes, str]:
        """(body, content type) of `url`; a `file://` folder answers with its index.html."""
        if url in self._cache:
            return self._cache[url]
        if urlparse(url).scheme == "file":
            path = Path(url2pathname(urlparse(url).path))
            path = path / "index.html" if path.is_dir() else path
            try:
                answer = (
                    path.read_bytes(),
                    "application/json" if path.suffix == ".json" else "text/html",
                )
            except FileNotFoundError as error:
                raise NotFound(f"{path}: {error.strerror}") from error
            except OSError as error:
                raise Unreachable(f"{path}: {error.strerror}") from error
        else:
            headers = {"Accept": accept, "User-Agent": USER_AGENT, "Accept-Encoding": "gzip"}
            if token:
                headers["Authorization"] = f"Bearer {token}"
            try:
                with urlopen(Request(url, headers=headers), timeout=self.timeout) as response:
                    body = response.read()
                    if response.headers.get("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                    answer = (body, response.headers.get_content_type())
            except HTTPError as error:
                if error.code in (404, 410):
                    raise NotFound(f"HTTP {error.code} from {url}") from error
                raise Unreachable(f"HTTP {error.code} from {url}") from error
            except (URLError, OSError, http.client.HTTPException, EOFError) as error:
                reason = getattr(error, "reason", error)
                raise Unreachable(f"{url}: {reason}") from error
        self._cache[url] = answer
        return answer

    def fetch_json(self, url: str, accept: str = "application/json", **kwargs) -> dict:
        body, _ = self.fetch(url, accept, **kwargs)
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise Unreachable(f"{url} did not answer JSON") from error

    # ------------------------------------------------------------------ package indexes

    def index_versions(self, index_url: str, project: str) -> list[Version]:
        """Final releases with at least one file that is not yanked, from a PEP 691/503 index."""
        url = f"{index_url.rstrip('/')}/{canonicalize_name(project)}/"
        try:
            body, content_type = self.fetch(url, INDEX_ACCEPT)
        except NotFound:
            return []  # the index answers, and has no such project
        if content_type == PEP691_JSON or content_type.endswith("json"):
            try:
                files = json.loads(body)["files"]
                names = [f["filename"] for f in files if not f.get("yanked")]
            except (ValueError, KeyError, TypeError) as error:
                raise Unreachable(f"{url} is not a PEP 691 project page") from error
        else:
            names = html_filenames(body.decode("utf-8", "replace"))
        versions = {version for name in names if (version := file_version(name)) is not None}
        return sorted(v for v in versions if not v.is_prerelease and not v.is_devrelease)

    def pypi_versions(self, project: str) -> list[Version]:
        return self.index_versions(self.pypi_url, project)

    def cpu_index_versions(self, project: str) -> list[Version]:
        return self.index_versions(self.cpu_index_url, project)

    # ------------------------------------------------------------------ conda channel

    def conda_records(self, name: str) -> list[tuple[Version, str]]:
        """(version, build string) of every `name` package in the channel's subdir."""
        records = []
        for version, build in self.conda_index().get(name, []):
            try:
                records.append((Version(version), build))
            except (InvalidVersion, TypeError):
                continue
        return records

    def conda_index(self) -> dict[str, list[tuple[str, str]]]:
        """Package name -> (version, build string) of the channel's subdir, read once."""
        url = f"{self.conda_channel_url.rstrip('/')}/{self.conda_subdir}/repodata.json"
        key = ("conda index", url)
        if key not in self._cache:
            repodata = self.fetch_json(url)
            # conda-forge's repodata is hundreds of MB: keep the small index, not the text.
            self._cache.pop(url, None)
            if not isinstance(repodata, dict):
                raise Unreachable(f"{url} is not a repodata.json")
            index: dict[str, list[tuple[str, str]]] = {}
            for group in ("packages", "packages.conda"):
                records = repodata.get(group)
                for record in records.values() if isinstance(records, dict) else []:
                    if isinstance(record, dict) and "name" in record and "version" in record:
                        index.setdefault(record["name"], []).append(
                            (record["version"], record.get("build", ""))
                        )
            self._cache[key] = index
        return self._cache[key]

    # ------------------------------------------------------------------ image registry

    def image_tags(self, repository: str) -> list[str]:
        """Tags of `namespace/name` from a Docker Hub style tags API, newest pages first."""
        url = f"{self.registry_url.rstrip('/')}/v2/repositories/{repository}/tags?page_size=100"
        tags: list[str] = []
        for _ in range(MAX_TAG_PAGES):
            page = self.fetch_json(url)
            try:
                tags += [result["name"] for result in page["results"]]
            except (KeyError, TypeError) as error:
                raise Unreachable(f"{url} is not a tags listing") from error
            following = page.get("next")
            # Follow the registry's own pagination only, never a link to another host.
            if not following or urlparse(urljoin(url, following)).netloc != urlparse(url).netloc:
                break
            url = urljoin(url, following)
        return tags

    # ------------------------------------------------------------------ GitHub releases

    def latest_release(self, repository: str) -> str:
        url = f"{self.github_api_url.rstrip('/')}/repos/{repository}/releases/latest"
        data = self.fetch_json(url, "application/vnd.github+json", token=self.github_token)
        if not isinstance(data.get("tag_name"), str):
            raise Unreachable(f"{url} names no release tag")
        return data["tag_name"]

    def commit_of(self, repository: str, ref: str) -> str:
        url = f"{self.github_api_url.rstrip('/')}/repos/{repository}/commits/{ref}"
        data = self.fetch_json(url, "application/vnd.github+json", token=self.github_token)
        if not isinstance(data.get("sha"), str):
            raise Unreachable(f"{url} names no commit")
        return data["sha"]


def html_filenames(page: str) -> list[str]:
    """File names a PEP 503 page links to, leaving out yanked files."""
    names = []
    for anchor in ANCHOR.findall(page):
        href = HREF.search(anchor)
        if href and "data-yanked" not in anchor:
            names.append(unquote(urlparse(html.unescape(href[1])).path.rsplit("/", 1)[-1]))
    return names


def file_version(filename: str) -> Version | None:
    """The version a wheel or sdist file name carries, or None for anything else."""
    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1]
        return parse_sdist_filename(filename)[1]
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
