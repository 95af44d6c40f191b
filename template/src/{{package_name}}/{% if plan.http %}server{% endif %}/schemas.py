"""The bodies the API takes and answers, and the errors its OpenAPI document lists."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..service import MAX_ID_CHARS, MAX_K, MAX_TEXT_CHARS, MAX_TEXTS

Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]
DocumentId = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]
# Seconds a client waits before asking again while the model loads.
RETRY_AFTER_SECONDS = 5


class Strict(BaseModel):
    """A request body that refuses unknown fields, so a misspelt one is an error."""

    model_config = ConfigDict(extra="forbid")


class EmbedRequest(Strict):
    texts: list[Text] = Field(min_length=1, max_length=MAX_TEXTS)


class EmbedResponse(BaseModel):
    vectors: list[list[float]]


class DocumentIn(Strict):
    id: DocumentId
    text: Text


class AddRequest(Strict):
    documents: list[DocumentIn] = Field(min_length=1, max_length=MAX_TEXTS)

    @model_validator(mode="after")
    def ids_are_unique(self) -> Self:
        ids = [doc.id for doc in self.documents]
        if len(set(ids)) != len(ids):
            raise ValueError("each document id may appear only once per request")
        return self


class AddResponse(BaseModel):
    added: int
    count: int


class QueryRequest(Strict):
    text: Text
    k: int = Field(default=5, ge=1, le=MAX_K)


class HitOut(BaseModel):
    id: str
    text: str
    score: float


class QueryResponse(BaseModel):
    hits: list[HitOut]


class DeleteResponse(BaseModel):
    deleted: str
    count: int


class ErrorOut(BaseModel):
    detail: str


# What a route that needs the model can answer besides its own, so the OpenAPI document says so.
NOT_READY: dict[int | str, dict[str, object]] = {
    503: {
        "model": ErrorOut,
        "description": "Not ready: the model is loading, or the store is closing or unavailable",
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before asking again",
                "schema": {"type": "integer"},
            }
        },
    },
}
BODY_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorOut, "description": "The body is not valid JSON"},
    413: {"model": ErrorOut, "description": "The body is over the size limit"},
    415: {"model": ErrorOut, "description": "The body is not sent as application/json"},
    **NOT_READY,
}
UNKNOWN_ID: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorOut, "description": "No stored document has this id"},
    **NOT_READY,
}
