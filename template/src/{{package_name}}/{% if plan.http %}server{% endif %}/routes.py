"""The endpoints: health, metrics, and the service's embed, add, query and delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi import Path as PathParameter
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..service import MAX_ID_CHARS, UnknownDocument
from ..store import Document
from .dependencies import ServiceDep, require_json
from .middleware import Metrics
from .schemas import (
    BODY_ERRORS,
    UNKNOWN_ID,
    AddRequest,
    AddResponse,
    DeleteResponse,
    EmbedRequest,
    EmbedResponse,
    HitOut,
    QueryRequest,
    QueryResponse,
)

router = APIRouter()
# The POST routes: a body that is not sent as JSON is refused before it is read as one.
with_body = APIRouter(dependencies=[Depends(require_json)], responses=BODY_ERRORS)


def metrics_of(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


# Health checks are async and touch nothing slow, so a busy or loading model never stalls them.
@router.get("/livez")
async def livez() -> dict[str, str]:
    """The process answers, from its first second."""
    return {"status": "alive"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """The model is loaded, the store is open, and it answered its last call or check."""
    if not request.app.state.lifecycle.ready:
        return JSONResponse({"status": "not ready"}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    registry = metrics_of(request).registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@with_body.post("/embed")
async def embed(body: EmbedRequest, service: ServiceDep) -> EmbedResponse:
    """One unit-length vector per text."""
    return EmbedResponse(vectors=await service.embed(body.texts))


@with_body.post("/documents")
async def add_documents(body: AddRequest, service: ServiceDep, request: Request) -> AddResponse:
    """Store the documents; one added again under the same id replaces the earlier one."""
    documents = [Document(doc.id, doc.text) for doc in body.documents]
    count = await service.add(documents)
    metrics_of(request).documents.set(count)
    return AddResponse(added=len(documents), count=count)


@with_body.post("/query")
async def query(body: QueryRequest, service: ServiceDep) -> QueryResponse:
    """The `k` stored documents most similar to the text, most similar first."""
    hits = await service.query(body.text, body.k)
    return QueryResponse(
        hits=[HitOut(id=hit.document.id, text=hit.document.text, score=hit.score) for hit in hits]
    )


@router.delete("/documents/{doc_id}", responses=UNKNOWN_ID)
async def delete_document(
    doc_id: Annotated[str, PathParameter(max_length=MAX_ID_CHARS)],
    service: ServiceDep,
    request: Request,
) -> DeleteResponse:
    """Remove the document with this id; 404 if none has it."""
    try:
        count = await service.delete(doc_id)
    except UnknownDocument:
        raise HTTPException(404, f"no stored document has the id {doc_id!r}") from None
    metrics_of(request).documents.set(count)
    return DeleteResponse(deleted=doc_id, count=count)


router.include_router(with_body)
