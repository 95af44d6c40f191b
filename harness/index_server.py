"""A loopback HTTP server serving a PEP 503 index, healthy or with one chosen fault.

The fault tests point a project's `torch_index_url` at it to see what the lock hook does
when the CPU index answers 503, lacks torch (404), stalls, or cuts its answer short.
"""

from __future__ import annotations

import html
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from harness.loopback import LoopbackServer
from harness.mirror import project_page

FAULTS = ("none", "503", "404", "slow", "truncated")


@dataclass
class IndexFiles:
    """Distributions by normalised project name: {"torch": [wheel paths]}."""

    projects: dict[str, list[Path]] = field(default_factory=dict)

    @classmethod
    def from_mirror(cls, index_root: Path) -> IndexFiles:
        """The same projects and wheels as a `file://` index built by harness/mirror.py."""
        projects = {}
        for page in sorted(index_root.glob("*/index.html")):
            hrefs = re.findall(r'href="([^"#]+)', page.read_text(encoding="utf-8"))
            projects[page.parent.name] = [
                Path(url2pathname(urlparse(html.unescape(h)).path)) for h in hrefs
            ]
        return cls(projects)

    def page(self, project: str) -> bytes | None:
        wheels = self.projects.get(project)
        if wheels is None:
            return None
        return project_page(wheels, lambda wheel: f"../../files/{wheel.name}").encode()

    def file(self, name: str) -> Path | None:
        for wheels in self.projects.values():
            for wheel in wheels:
                if wheel.name == name:
                    return wheel
        return None


class IndexServer(LoopbackServer):
    """`with IndexServer(files, fault="503") as server: server.url` -> http://127.0.0.1:<port>/simple."""

    def __init__(
        self,
        files: IndexFiles,
        fault: str = "none",
        *,
        delay: float = 60.0,
        auth: tuple[str, str] | None = None,
    ) -> None:
        assert fault in FAULTS, fault
        self.files, self.fault, self.delay, self.auth = files, fault, delay, auth
        self.requests: list[tuple[str, str, int]] = []  # (path, Authorization header, status)
        self.stalled = threading.Event()  # set when a slow request starts waiting
        self._release = threading.Event()  # set at shutdown so stalled handlers end
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.handle(self)

            def do_HEAD(self) -> None:  # noqa: N802
                server.handle(self, head=True)

        super().__init__(Handler)

    @property
    def url(self) -> str:
        return f"{self.origin}/simple"

    def stop(self) -> None:
        self._release.set()  # stalled handlers end first, or shutdown would wait for them
        super().stop()

    # ----------------------------------------------------------------------- responses

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        content_type: str = "text/html",
        *,
        head: bool = False,
        length: int | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.requests.append((handler.path, handler.headers.get("Authorization", ""), status))
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body) if length is None else length))
        handler.send_header("Cache-Control", "no-store")
        for key, value in (extra or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        if not head:
            handler.wfile.write(body)
            handler.wfile.flush()

    def handle(self, handler: BaseHTTPRequestHandler, *, head: bool = False) -> None:
        if self.auth is not None:
            import base64

            expected = "Basic " + base64.b64encode(":".join(self.auth).encode()).decode()
            if handler.headers.get("Authorization") != expected:
                self._send(
                    handler,
                    401,
                    b"unauthorized",
                    "text/plain",
                    head=head,
                    extra={"WWW-Authenticate": 'Basic realm="mirror"'},
                )
                return
        if self.fault == "503":
            self._send(handler, 503, b"index down for maintenance", "text/plain", head=head)
            return
        if self.fault == "slow":
            self.stalled.set()
            self._release.wait(self.delay)
            if self._release.is_set():
                handler.close_connection = True
                return
        parts = [part for part in handler.path.split("?")[0].split("/") if part]
        if len(parts) == 2 and parts[0] == "simple":
            missing = self.fault == "404" and parts[1] == "torch"
            page = None if missing else self.files.page(parts[1])
            if page is None:
                self._send(handler, 404, b"not found", "text/plain", head=head)
            elif self.fault == "truncated":
                # Promise the whole page, send a third of it, hang up.
                self._send(handler, 200, page[: len(page) // 3], head=head, length=len(page))
                handler.close_connection = True
            else:
                self._send(handler, 200, page, head=head)
            return
        if len(parts) == 2 and parts[0] == "files" and (wheel := self.files.file(parts[1])):
            data = wheel.read_bytes()
            if self.fault == "truncated":
                self._send(
                    handler,
                    200,
                    data[: len(data) // 3],
                    "application/octet-stream",
                    head=head,
                    length=len(data),
                )
                handler.close_connection = True
            else:
                self._send(handler, 200, data, "application/octet-stream", head=head)
            return
        self._send(handler, 404, b"not found", "text/plain", head=head)
