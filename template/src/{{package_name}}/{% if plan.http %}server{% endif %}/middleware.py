"""Metrics, the access log and the body size limit, around every request."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..runtime import log_line

# Refused before parsing: the most a request within the limits can take, JSON-escaped.
MAX_BODY_BYTES = 8 * 1024 * 1024


class Metrics:
    """Prometheus metrics in a registry of the app's own, so each app starts from zero."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["method", "route", "status"]
        self.requests = Counter(
            "http_requests", "HTTP requests handled", labels, registry=self.registry
        )
        self.latency = Histogram(
            "http_request_duration_seconds", "Time to answer", labels, registry=self.registry
        )
        self.documents = Gauge(
            "documents_stored", "Documents in the vector store", registry=self.registry
        )
        self.route_paths: list[tuple[re.Pattern[str], str]] = []

    def know_routes(self, paths: Iterable[str]) -> None:
        """The API's path templates, to label a request refused before it reached the router."""
        self.route_paths = [(compile_path(path)[0], path) for path in paths]


def refused_body(path: str, detail: str) -> dict[str, object]:
    """The API's error body, or OpenAI's shape under /v1/, where OpenAI's clients read it."""
    if path.startswith("/v1/"):
        error = {"message": detail, "type": "invalid_request_error", "param": None, "code": None}
        return {"error": error}
    return {"detail": detail}


def route_label(scope: Scope, metrics: Metrics) -> str:
    """The route's template, such as /documents/{doc_id}, which keeps the label set small.

    A request refused before routing (no key, a body over the limit) is matched against the
    API's templates, so that refusals count under the route they were aimed at.
    """
    route = scope.get("route")
    if route is not None:
        return str(getattr(route, "path", "unmatched"))
    path = scope["path"]
    aimed_at = (template for pattern, template in metrics.route_paths if pattern.match(path))
    return next(aimed_at, "unmatched")


class Observe:
    """Refuse oversized bodies; count, time and log every request by route and status.

    Plain ASGI rather than FastAPI's middleware decorator, which costs every request an extra
    task and a stream: under load that is CPU the event loop needs.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            length = Headers(scope=scope).get("content-length", "0")
            if length.isdigit() and int(length) > MAX_BODY_BYTES:
                detail = f"the request body is over the limit of {MAX_BODY_BYTES} bytes"
                refusal = JSONResponse(refused_body(scope["path"], detail), status_code=413)
                await refusal(scope, receive, send_noting_status)
            else:
                await self.app(scope, receive, send_noting_status)
        finally:
            seconds = time.perf_counter() - start
            metrics: Metrics = scope["app"].state.metrics
            labels = (scope["method"], route_label(scope, metrics), str(status))
            metrics.requests.labels(*labels).inc()
            metrics.latency.labels(*labels).observe(seconds)
            log_line(
                method=scope["method"],
                path=scope["path"],
                status=status,
                latency_ms=round(seconds * 1000, 2),
            )
