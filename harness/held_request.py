"""A request the server has certainly accepted and not yet answered, held open by the client.

`HeldRequest(port, path, body)` sends a POST's headers with `Expect: 100-continue` and returns
once the server answers `100 Continue`, which uvicorn sends only when the app starts reading the
body: from then on the request is in the server's hands. `finish()` sends the body and returns
the final answer. A test holds requests, stops the server, then finishes them: a server that
drains answers each; one that drops them resets the connection.
"""

from __future__ import annotations

import http.client
import json
import socket

TIMEOUT = 120.0  # a hang guard, not a timing


class HeldRequest:
    def __init__(self, port: int, path: str, body: object) -> None:
        self.body = json.dumps(body).encode()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nExpect: 100-continue\r\n"
            f"Content-Length: {len(self.body)}\r\n\r\n"
        )
        self.sock.sendall(head.encode())
        interim = self._head()
        if not interim.startswith(b"HTTP/1.1 100 "):
            self.sock.close()
            raise AssertionError(f"the server answered before the body: {interim!r}")

    def _head(self) -> bytes:
        """One interim response's bytes, up to its blank line."""
        received = b""
        while not received.endswith(b"\r\n\r\n"):
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError(f"the server closed the connection after {received!r}")
            received += chunk
        return received

    def finish(self) -> tuple[int, str]:
        """Send the body; the final status and text (raises OSError when the server dropped it)."""
        try:
            self.sock.sendall(self.body)
            response = http.client.HTTPResponse(self.sock)
            response.begin()
            return response.status, response.read().decode()
        finally:
            self.sock.close()
