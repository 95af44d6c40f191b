"""What routes ask FastAPI for: the ready service, and a body sent as JSON; and the answer to a
store that went down during a request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.responses import JSONResponse

from ..runtime import Lifecycle
from ..service import Service
from .schemas import RETRY_AFTER_SECONDS

# The one answer while the store's server does not answer: its address stays out of replies.
STORE_DOWN = "the store is unavailable: try again shortly"
JSON_ONLY = "the body must be JSON, sent with the header Content-Type: application/json"


def get_service(request: Request) -> Service:
    """The app's service, or 503 with Retry-After while the model loads or the store closes."""
    lifecycle: Lifecycle = request.app.state.lifecycle
    if lifecycle.waiting_for_store:
        raise HTTPException(503, STORE_DOWN, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    if lifecycle.service is None:
        raise HTTPException(
            503,
            "not ready: the model is loading or the store is closing",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if not lifecycle.service.store_up:
        # Refused at once while the store is down: no request waits out its timeout meanwhile.
        raise HTTPException(503, STORE_DOWN, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    return lifecycle.service


async def store_unavailable(_request: Request, _error: Exception) -> JSONResponse:
    """503 with Retry-After for a request whose store call found the store's server down."""
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return JSONResponse({"detail": STORE_DOWN}, status_code=503, headers=headers)


def require_json(request: Request) -> None:
    """415 for a body sent as a form or as text (curl -d), which would fail validation obscurely."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise HTTPException(415, JSON_ONLY)


ServiceDep = Annotated[Service, Depends(get_service)]
