"""OpenAI's embeddings API, `POST /v1/embeddings`, so OpenAI clients and LangChain use the service.

Requests go through the same batched model as /embed. Errors take OpenAI's shape,
`{"error": {"message", "type", "param", "code"}}`, which OpenAI's clients turn into exceptions.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, field_validator
from starlette.exceptions import HTTPException

from ..service import MAX_TEXT_CHARS, MAX_TEXTS
from ..settings import SERVED_MODEL_NAME, Settings
from .dependencies import ServiceDep, require_json
from .schemas import Strict

TOKEN_IDS = (
    "input as token ids is not supported: they would be another tokenizer's ids; send the "
    "texts (with LangChain's OpenAIEmbeddings, set check_embedding_ctx_length=False)"
)


def error_body(
    message: str, kind: str, param: str | None = None, code: str | None = None
) -> dict[str, dict[str, str | None]]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def openai_error(
    status: int,
    message: str,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = json.dumps(error_body(message, kind, param, code))
    return Response(body, status, headers, media_type="application/json")


def validation_error(err: RequestValidationError) -> Response:
    """The first problem of a body that did not validate, as OpenAI words it: 400."""
    problem = err.errors()[0]
    location = [str(part) for part in problem.get("loc", ()) if part != "body"]
    if problem.get("type") == "json_invalid":
        return openai_error(400, "the body is not valid JSON")
    message = str(problem.get("msg", "invalid request")).removeprefix("Value error, ")
    param = location[0] if location else None
    if problem.get("type") == "extra_forbidden":
        message = f"unrecognized request argument supplied: {param}"
    return openai_error(400, message, param)


class OpenAIRoute(APIRoute):
    """A route whose refusals, its validation's and its dependencies', take OpenAI's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as err:
                return validation_error(err)
            # Starlette's, which FastAPI raises for a body it cannot read, and FastAPI's.
            except HTTPException as err:
                return openai_error(err.status_code, str(err.detail), headers=err.headers)

        return handle


router = APIRouter(route_class=OpenAIRoute, prefix="/v1", tags=["OpenAI"])


class EmbeddingsRequest(Strict):
    input: str | list[str] | list[int] | list[list[int]]
    model: str = Field(max_length=256)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    # Accepted as OpenAI accepts it, and not used.
    user: str | None = Field(default=None, max_length=256)

    @field_validator("input")
    @classmethod
    def texts_within_limits(
        cls, value: str | list[str] | list[int] | list[list[int]]
    ) -> str | list[str] | list[int] | list[list[int]]:
        texts = [value] if isinstance(value, str) else value
        if not texts:
            raise ValueError("input must hold at least 1 text")
        if not all(isinstance(text, str) for text in texts):
            raise ValueError(TOKEN_IDS)
        if len(texts) > MAX_TEXTS:
            raise ValueError(f"input holds {len(texts)} texts, over the limit of {MAX_TEXTS}")
        for index, text in enumerate(texts):
            if not isinstance(text, str) or not 1 <= len(text) <= MAX_TEXT_CHARS:
                raise ValueError(
                    f"input[{index}] must be a text of 1 to {MAX_TEXT_CHARS} characters"
                )
        return value

    @property
    def texts(self) -> list[str]:
        # Token ids were refused above: what is left is text.
        return [self.input] if isinstance(self.input, str) else [str(t) for t in self.input]


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    # Floats, or base64 of the little-endian float32 values.
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "local"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (400, "The body is not valid, or is over a limit"),
        (404, "No model of that name is served"),
        (413, "The body is over the size limit"),
        (415, "The body is not sent as application/json"),
        (503, "Not ready: the model is loading or the store is closing"),
    )
}


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.lifecycle.settings
    return settings


def encoded(vector: Sequence[float]) -> str:
    """base64 of the vector as little-endian float32, as OpenAI sends it."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


@router.get("/models", response_model=ModelList)
async def models(request: Request) -> Response:
    """The one model served, under the name /v1/embeddings reports."""
    name = settings_of(request).model_names()[0]
    return Response(
        ModelList(data=[Model(id=name)]).model_dump_json(), media_type="application/json"
    )


@router.post(
    "/embeddings",
    response_model=EmbeddingsResponse,
    responses=ERRORS,
    dependencies=[Depends(require_json)],
)
async def embeddings(body: EmbeddingsRequest, service: ServiceDep, request: Request) -> Response:
    """One vector per input text, in order, from the batched model; usage counts its tokens."""
    names = settings_of(request).model_names()
    if body.model not in names:
        message = (
            f"the model {body.model!r} is not served here: ask for {names[0]!r} "
            f"(or set {SERVED_MODEL_NAME})"
        )
        return openai_error(404, message, "model", "model_not_found")
    if body.dimensions is not None and body.dimensions != service.dimension:
        message = (
            f"dimensions must be {service.dimension}: this model's vectors cannot be shortened"
        )
        return openai_error(400, message, "dimensions")
    vectors, tokens = await service.embed_counted(body.texts)
    as_base64 = body.encoding_format == "base64"
    data = [
        {"object": "embedding", "index": index, "embedding": encoded(v) if as_base64 else v}
        for index, v in enumerate(vectors)
    ]
    usage = {"prompt_tokens": sum(tokens), "total_tokens": sum(tokens)}
    answer = {"object": "list", "data": data, "model": names[0], "usage": usage}
    # Written directly: validating thousands of floats again on the way out costs the event loop.
    return Response(json.dumps(answer, separators=(",", ":")), media_type="application/json")
