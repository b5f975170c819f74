"""The catalog API: offers added, updated and deleted over HTTP, and large imports as jobs.

Behind the admin key or a token with the `catalog` scope (`snapsource token create --scope
catalog`), sent as `Authorization: Bearer ...` or `apiToken`. Every answer is TMAPI's envelope.
A write is answered once it is durable and searchable (ingest/changes.py); images come by http(s)
URL (fetched like a user's URL: public addresses, and the networks of `fetch_allow`), inline as
`data:image/...;base64,...`, or as the `/img/...` path of a photo stored already.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictBool, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from snapsource import jsontext
from snapsource.api.deps import ResourcesDep, bearer, is_admin_key
from snapsource.api.schemas import errors
from snapsource.errors import NotFound, ParameterError, PayloadTooLarge, Unauthorized, envelope
from snapsource.ingest import changes, jobs
from snapsource.ingest.formats import FORMATS, FormatError, for_api
from snapsource.ingest.formats.mapping import read_mapping_text
from snapsource.ingest.formats.source import numeric_id, stable_id
from snapsource.ingest.pipeline import IngestReport
from snapsource.ingest.rows import parse_lines
from snapsource.resources import Resources
from snapsource.store.catalog import StoredImage
from snapsource.vision.fetch import shorten

router = APIRouter(prefix="/catalog", tags=["catalog"], responses=errors(401, 403, 422, 439, 500, 503))


def answered(description: str, data: dict[str, Any], *statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's documented answers: its 200 in TMAPI's envelope with an example (Swagger shows
    it), and its own error statuses."""
    example = {"code": 200, "msg": "success", "data": data}
    ok = {"description": description, "content": {"application/json": {"example": example}}}
    return {200: ok, **errors(*statuses)}


_OFFER = {
    "item_id": 610000000001,
    "title": "Yoga mat 6 mm, TPE",
    "img": "/img/3f5a0c1e9b2d4e6f8a7b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f.jpg",
    "images": ["/img/3f5a0c1e9b2d4e6f8a7b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f.jpg"],
    "price": "27.00",
    "category_path": ["1000", "1001"],
}
_JOB = {
    "id": "imp_c578ddccca01e794",
    "status": "running",
    "source": "products_export.csv",
    "format": "shopify",
    "rows_done": 1200,
    "rows_total": 5000,
    "progress": 0.24,
    "counts": {
        "rows": 1200,
        "added": 1150,
        "updated": 30,
        "unchanged": 0,
        "rejected": 20,
        "skipped": 0,
        "images_embedded": 1410,
        "images_failed": 12,
    },
    "problems": [{"row": 17, "item_id": None, "reason": "price: 'call us' is not a price such as 12.50"}],
    "delete_missing": False,
    "deletion": None,
    "error": None,
    "created_at": "2026-12-04T16:27:01.123456+00:00",
    "updated_at": "2026-12-04T16:29:44.654321+00:00",
}
ITEM_ID = Path(ge=1, le=2**63 - 1, description="The offer's item_id")


def require_catalog(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_admin_key: Annotated[str | None, Header()] = None,
    apiToken: Annotated[str | None, Query(description="A token with the catalog scope")] = None,  # noqa: N803
) -> None:
    """The admin key (unlimited), or a token with the catalog scope, admitted like a search."""
    resources: Resources = request.app.state.resources
    credential = bearer(authorization).strip()
    if is_admin_key(resources, x_admin_key or credential):
        return
    token = apiToken or credential
    if not token:
        raise Unauthorized(
            "the catalog API needs the admin key or a token with the catalog scope, as `Authorization: Bearer <key or token>`"
        )
    # the token's checks and limits as on search: 401, 403 (no catalog scope), 439, 503; the app's
    # middleware releases and meters the call
    if not resources.tokens.valid(token):
        raise resources.tokens.refusal(
            token,
            "this is neither the admin key nor a token (SNAPSOURCE_ADMIN_KEY sets the key): check it, or create a token for "
            "the catalog API with `snapsource token create NAME --scope catalog`",
        )
    request.state.lease = resources.tokens.admit(token, "catalog")


CatalogDep = Annotated[None, Depends(require_catalog)]

# an element that is no object is that row's problem (rejected with the reason), not the batch's
OFFER_ITEM: dict[str, Any] = {
    "description": "An offer: a JSON object in the catalog schema (anything else is rejected as its row)"
}
OFFERS_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": 'Offers in the catalog schema (docs/catalog.md): a JSON array, {"offers": [...]}, or JSON Lines',
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"type": "array", "items": OFFER_ITEM, "minItems": 1},
                        {
                            "type": "object",
                            "properties": {"offers": {"type": "array", "items": OFFER_ITEM, "minItems": 1}},
                            "required": ["offers"],
                        },
                    ]
                },
                "example": [
                    {
                        "item_id": 610000000001,
                        "title": "Yoga mat, TPE 6 mm",
                        "img": "https://images.example.com/mat-main.jpg",
                        "images": ["data:image/jpeg;base64,/9j/4AAQSkZJRg..."],
                        "price": "18.50",
                        "category_path": ["1046", "1052"],
                        "shop_info": {"shop_name": "Example Sports Factory", "is_factory": True},
                    }
                ],
            },
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is {int(declared):,} bytes; at most {limit:,} (the catalog_max_bytes setting)")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"the request body is over {limit:,} bytes (the catalog_max_bytes setting)")
        chunks.append(chunk)
    return b"".join(chunks)


def _offers(body: bytes, kind: str) -> tuple[list[Any], dict[int, str]]:
    """The batch's offers: a JSON array, {"offers": [...]}, or JSON Lines (one offer per line);
    and the rows that cannot be offers (a line that is not JSON, an element that is not an object),
    by their number in the batch with the reason: they are rejected, the others go on."""
    text = body.decode("utf-8", errors="replace")
    stripped = text.lstrip()
    if kind in ("application/x-ndjson", "application/jsonl", "application/x-jsonlines", "text/plain") or (
        stripped.startswith("{") and "\n" in stripped.strip() and not stripped.startswith('{"offers"')
    ):
        rows = list(parse_lines(text.splitlines()))
        if rows and all(row.error for row in rows):
            raise ParameterError(f"the body is not JSON Lines: line {rows[0].number}: {rows[0].error}")
        errors: dict[int, str] = {}
        for position, row in enumerate(rows, start=1):
            if row.error:
                errors[position] = f"line {row.number} of the JSON Lines body: {row.error}"
            elif not isinstance(row.data, dict):
                errors[position] = f"line {row.number} of the JSON Lines body is not a JSON object: each offer is one"
        return [row.data for row in rows], errors
    try:
        payload = jsontext.loads(text)
    except ValueError as exc:
        raise ParameterError(
            f"the body is not JSON ({jsontext.reason(exc)}): send a JSON array of offers or JSON Lines"
        ) from None
    if isinstance(payload, dict) and isinstance(payload.get("offers"), list):
        payload = payload["offers"]
    if not isinstance(payload, list):
        raise ParameterError('the body must be a JSON array of offers, {"offers": [...]}, or JSON Lines')
    shapeless = {
        number: f"offer {number} of the batch is not a JSON object: each offer is one, in the catalog schema"
        for number, offer in enumerate(payload, start=1)
        if not isinstance(offer, dict)
    }
    return payload, shapeless


def _results(report: IngestReport) -> list[dict[str, Any]]:
    """Each row's outcome in order, with the problems of its photos that did not stop it."""
    assert report.outcomes is not None
    notes: dict[int, list[str]] = {}
    for problem in report.problems:
        notes.setdefault(problem.row, []).append(problem.reason)
    results = []
    for outcome in sorted(report.outcomes, key=lambda o: o.row):
        entry: dict[str, Any] = {"row": outcome.row, "item_id": outcome.item_id, "result": outcome.result}
        if outcome.reason:
            entry["reason"] = outcome.reason
        warnings = [n for n in notes.get(outcome.row, []) if n not in outcome.reason]
        if warnings:
            entry["warnings"] = warnings
        results.append(entry)
    return results


@router.post(
    "/offers",
    summary="Add or update a batch of offers",
    responses=answered(
        "Each row's result, once the batch is durable and searchable",
        {
            "counts": {"added": 1, "updated": 0, "unchanged": 0, "rejected": 1},
            "images_embedded": 2,
            "results": [
                {"row": 1, "item_id": 610000000001, "result": "added"},
                {
                    "row": 2,
                    "item_id": 610000000002,
                    "result": "rejected",
                    "reason": "price: 'cheap' is not a price such as 12.50",
                },
            ],
        },
        413,
        503,
    ),
    openapi_extra=OFFERS_BODY,
)
async def upsert_offers(request: Request, resources: ResourcesDep, _auth: CatalogDep) -> JSONResponse:
    """Upsert by item_id. Answers each row's result (added, updated, unchanged, or rejected with
    the reason) once the batch is durable and searchable; a bad row or photo never fails the rest."""
    settings = resources.settings
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    offers, unreadable = _offers(await _body(request, settings.catalog_max_bytes), kind)
    if not offers:
        raise ParameterError("the batch has no offers")
    if len(offers) > settings.catalog_max_offers:
        raise PayloadTooLarge(
            f"the batch has {len(offers):,} offers; at most {settings.catalog_max_offers:,} (catalog_max_offers): "
            "split it, or send the file to POST /catalog/imports"
        )
    report = await run_in_threadpool(changes.upsert, resources, offers, unreadable)
    counts = {name: getattr(report, name) for name in ("added", "updated", "unchanged", "rejected", "skipped")}
    counts["rejected"] += counts.pop("skipped")
    data = {"counts": counts, "images_embedded": report.images_embedded, "results": _results(report)}
    return JSONResponse(envelope(200, "success", data))


class Deletion(BaseModel):
    item_ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(min_length=1, max_length=100_000)


DELETION_HOW = 'the body must be {"item_ids": [<item_id>, ...]}: 1 to 100,000 item_ids, each from 1 to 2^63-1'
DELETION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": Deletion.model_json_schema(), "example": {"item_ids": [610000000001]}}},
    }
}


DELETION_MAX_BYTES = 10_000_000  # 100,000 ids of 19 digits, with commas and spaces


async def _deletion(request: Request) -> Deletion:
    body = await _body(request, DELETION_MAX_BYTES)
    try:
        payload = jsontext.loads(body)
    except ValueError:
        raise ParameterError(f"the body is not JSON: {DELETION_HOW}") from None
    try:
        return Deletion.model_validate(payload)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        detail = f"{where}: {err['msg']}" if where else "not a JSON object"
        raise ParameterError(f"{DELETION_HOW} ({shorten(detail, 80)})") from None


@router.post(
    "/offers/delete",
    summary="Delete a batch of offers",
    responses=answered("The offers deleted, and those the catalog did not have", {"deleted": [610000000001], "missing": []}, 503),
    openapi_extra=DELETION_BODY,
)
async def delete_offers(request: Request, resources: ResourcesDep, _auth: CatalogDep) -> JSONResponse:
    """Deleted at once from search; `missing` lists ids the catalog did not have."""
    body = await _deletion(request)
    deleted = await run_in_threadpool(changes.delete, resources, body.item_ids)
    missing = sorted(set(body.item_ids) - set(deleted))
    return JSONResponse(envelope(200, "success", {"deleted": deleted, "missing": missing}))


@router.delete(
    "/offers/{item_id:int}",
    summary="Delete one offer",
    responses=answered("Deleted: gone from search at once", {"deleted": [610000000001]}, 404, 503),
)
def delete_offer(item_id: Annotated[int, ITEM_ID], resources: ResourcesDep, _auth: CatalogDep) -> JSONResponse:
    if not changes.delete(resources, [item_id]):
        raise NotFound(f"no offer with item_id {item_id}")
    return JSONResponse(envelope(200, "success", {"deleted": [item_id]}))


def _wire_offer(resources: Resources, item_id: int) -> dict[str, Any]:
    stored = resources.catalog.stored_offer(item_id)
    if stored is None:
        raise NotFound(f"no offer with item_id {item_id}")
    embedded = resources.index.embedded([image.id for _, image in stored.images])
    offer = json.loads(stored.doc)
    by_ref: dict[str, StoredImage] = {}
    for source, image in stored.images:
        by_ref.setdefault(source, image)
        by_ref.setdefault(f"/img/{image.name}", image)
    refs = [offer.get("img"), *(offer.get("images") or [])]
    photos: list[dict[str, Any]] = []
    for ref in dict.fromkeys(r for r in refs if isinstance(r, str) and r):
        found = by_ref.get(ref)
        photos.append(
            {
                "source": ref if not ref.startswith("data:") else "data:...",
                "img": f"/img/{found.name}" if found is not None else None,
                "embedded": found is not None and found.id in embedded,
            }
        )
    return {"item_id": item_id, "updated_at": stored.updated_at, "offer": offer, "images": photos}


@router.get(
    "/offers/{item_id:int}",
    summary="One offer as stored, with its photos",
    responses=answered(
        "The offer, when it last changed, and each photo (null img, not embedded: it could not be fetched or read)",
        {
            "item_id": 610000000001,
            "updated_at": "2026-12-04T16:27:03.402114+00:00",
            "offer": _OFFER,
            "images": [{"source": _OFFER["img"], "img": _OFFER["img"], "embedded": True}],
        },
        404,
    ),
)
def get_offer(item_id: Annotated[int, ITEM_ID], resources: ResourcesDep, _auth: CatalogDep) -> JSONResponse:
    """The offer in the catalog schema, when it last changed, and each photo: the reference it was
    imported with, its stored path, and whether it has a vector (is searchable)."""
    return JSONResponse(envelope(200, "success", _wire_offer(resources, item_id)))


@router.get(
    "/offers/by-key/{key:path}",
    summary="One offer by the text key it was imported with (a SKU, a Shopify handle)",
    responses=answered("The offer, as GET /catalog/offers/{item_id} answers it", {"item_id": 1984440627761256}, 404),
)
def get_offer_by_key(
    key: Annotated[str, Path(min_length=1, max_length=200, description="The SKU or handle of the file's row")],
    resources: ResourcesDep,
    _auth: CatalogDep,
) -> JSONResponse:
    """A row keyed by text (`JA-200`) is stored under the number an import makes from it (docs/catalog.md:
    text keys); this finds it by the text."""
    item_id = numeric_id(key.strip()) or stable_id(key.strip())
    if resources.catalog.stored_offer(item_id) is None:
        raise NotFound(f"no offer with the key {key!r}: an import stores it as item_id {item_id}, and none is in the catalog")
    return JSONResponse(envelope(200, "success", _wire_offer(resources, item_id)))


@router.get(
    "/offers",
    summary="Offers, oldest change first",
    responses=answered(
        "A page of offers",
        {
            "page": 1,
            "page_size": 100,
            "total_count": 1,
            "has_next_page": False,
            "items": [{"item_id": 610000000001, "updated_at": "2026-12-04T16:27:03.402114+00:00", "offer": _OFFER}],
        },
    ),
)
def list_offers(
    resources: ResourcesDep,
    _auth: CatalogDep,
    updated_since: Annotated[
        str | None,
        Query(description="Only offers changed at or after this time (an updated_at of an earlier answer, ISO 8601)"),
    ] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JSONResponse:
    """For mirroring: keep the last `updated_at` you saw and ask again with it (offers changed in
    that same instant come again). Deleted offers are not listed."""
    if updated_since is not None:
        # a "+00:00" pasted into a URL unencoded arrives as " 00:00": read it as meant
        updated_since = re.sub(r" (\d\d:?\d\d)$", r"+\1", updated_since)
        _check_time(updated_since)
    total, rows = resources.catalog.changed_offers(updated_since, (page - 1) * page_size, page_size)
    items = [{"item_id": item_id, "updated_at": at, "offer": json.loads(doc)} for item_id, doc, at in rows]
    data = {
        "page": page,
        "page_size": page_size,
        "total_count": total,
        "has_next_page": page * page_size < total,
        "items": items,
    }
    return JSONResponse(envelope(200, "success", data))


def _check_time(text: str) -> None:
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        raise ParameterError(f"updated_since {text!r} is not an ISO 8601 time such as 2026-12-03T10:00:00+00:00") from None


DELETE_MISSING_HOW = "Delete the offers the file does not list, once it is imported: refused while any row is rejected or skipped"
CONFIRM_DELETE_HOW = "With delete_missing: allow it to delete more than delete_missing_max_share (10%) of the catalog"


class UrlImport(BaseModel):
    url: str = Field(min_length=8, pattern="^https?://", description="An http(s) URL of the catalog file")
    format: str | None = Field(None, description="auto (detected), jsonl, csv, tsv, shopify, woocommerce or tmapi")
    mapping: dict[str, Any] | str | None = Field(
        None, description="For csv/tsv and shop exports: the mapping (docs/catalog.md), an object or its TOML text"
    )
    # strict: a flag that deletes offers is true or false, never 1, 0 or "yes"
    delete_missing: StrictBool = Field(False, description=DELETE_MISSING_HOW)
    confirm_delete: StrictBool = Field(False, description=CONFIRM_DELETE_HOW)


IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The catalog file (multipart `file`, with optional `format` and `mapping` fields) or a URL to fetch",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "format": {"type": "string"},
                        "mapping": {"type": "string", "description": "JSON"},
                        "delete_missing": {"type": "boolean", "description": DELETE_MISSING_HOW},
                        "confirm_delete": {"type": "boolean", "description": CONFIRM_DELETE_HOW},
                    },
                    "required": ["file"],
                }
            },
            "application/json": {
                "schema": UrlImport.model_json_schema(),
                "example": {"url": "https://files.example.com/export/products.csv", "format": "shopify"},
            },
        },
    }
}


URL_IMPORT_HOW = 'send the file as multipart/form-data (field `file`) or JSON {"url": "https://..."}'


def _url_import(body: bytes) -> UrlImport:
    """The JSON body of an import from a URL; ParameterError names each field that is wrong."""
    try:
        payload = jsontext.loads(body or b"{}")
    except ValueError:
        raise ParameterError(f"the body is not JSON: {URL_IMPORT_HOW}") from None
    if not isinstance(payload, dict):
        raise ParameterError(f"the body must be a JSON object: {URL_IMPORT_HOW}")
    try:
        return UrlImport.model_validate(payload)
    except ValidationError as exc:
        parts = []
        for err in exc.errors()[:3]:
            field = ".".join(str(p) for p in err["loc"]) or "body"
            if err["type"] == "missing":
                parts.append(f"`{field}` is required")
            elif field == "url":
                parts.append(f"`url` must be an http(s) URL of the catalog file, not {shorten(str(err.get('input')))!r}")
            else:
                parts.append(f"`{field}`: {err['msg']}")
        raise ParameterError(f"{'; '.join(parts)}: {URL_IMPORT_HOW}") from None


def _format(value: str | None) -> str | None:
    if value in (None, "", "auto"):
        return None
    if value not in FORMATS:
        raise ParameterError(f"format {value!r} is not one of auto, {', '.join(FORMATS)}")
    return value


def _mapping(value: Any) -> dict[str, Any] | None:
    if value in (None, ""):
        return None
    if isinstance(value, str):
        value = _mapping_text(value)
    try:
        return jobs.check_mapping(value)
    except FormatError as exc:
        raise ParameterError(str(exc)) from None


def _mapping_text(text: str) -> Any:
    """A mapping form field: JSON when it reads as JSON, else TOML (a mapping file pasted as it is)."""
    try:
        return read_mapping_text(text)
    except FormatError as exc:
        raise ParameterError(str(exc)) from None


@router.post(
    "/imports",
    summary="Start an import job",
    responses=answered(
        "The job, accepted: follow it with GET /catalog/imports/{job_id}",
        {**_JOB, "status": "queued", "rows_done": 0, "progress": 0.0},
        413,
    ),
    openapi_extra=IMPORT_BODY,
)
async def start_import(request: Request, resources: ResourcesDep, _auth: CatalogDep) -> JSONResponse:
    """Answers the job at once; GET /catalog/imports/{id} follows it. The job outlives a restart."""
    settings = resources.settings
    lease = getattr(request.state, "lease", None)
    by = jobs.ADMIN if lease is None else f"token:{lease.token_id}"
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        # the job's place in the queue is taken before its body is read: a token at its limit is
        # refused without a byte of its upload held, however many it sends at once
        job_id = await run_in_threadpool(jobs.reserve, resources, by)
        try:
            name, data, fmt, mapping, flags = await _upload(request, settings.catalog_max_bytes)
            if not data.strip():
                raise ParameterError(f"the uploaded file {name!r} is empty: send a catalog file with offers")
            options = jobs.Options(_flag(flags, "delete_missing"), _flag(flags, "confirm_delete"), by)
            submitted = (job_id, name, data, _format(fmt), _mapping(mapping), options)
        except BaseException:  # also a client gone mid-body, or the request cancelled: no await here
            jobs.cancel(resources, job_id)
            raise
        try:  # submit_file cancels the reservation itself when it fails
            job = await run_in_threadpool(jobs.submit_file, resources, *submitted)
        except FormatError as exc:
            raise ParameterError(for_api(str(exc))) from None
    else:
        spec = _url_import(await _body(request, 1_000_000))
        options = jobs.Options(spec.delete_missing, spec.confirm_delete, by)
        job = await run_in_threadpool(jobs.submit_url, resources, spec.url, _format(spec.format), _mapping(spec.mapping), options)
    runner = getattr(request.app.state, "import_runner", None)
    if runner is not None:
        runner.wake()
    return JSONResponse(envelope(200, "success", job.wire()))


def _flag(fields: dict[str, str], name: str) -> bool:
    """A yes/no form field: true/false (1/0, yes/no); absent is false."""
    value = fields.get(name, "").strip().lower()
    if value in ("", "false", "0", "no", "off"):
        return False
    if value in ("true", "1", "yes", "on"):
        return True
    raise ParameterError(f"{name} is true or false, not {shorten(value, 40)!r}")


MAPPING_BYTES = 1_000_000  # a mapping, as a form field or a file


async def _mapping_file(upload: UploadFile) -> str:
    data = await upload.read(MAPPING_BYTES + 1)
    if len(data) > MAPPING_BYTES:
        raise ParameterError(f"the mapping file is over {MAPPING_BYTES:,} bytes: a mapping is a short JSON or TOML text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ParameterError("the mapping file is not UTF-8 text: save it as UTF-8") from None


async def _upload(request: Request, limit: int) -> tuple[str, bytes, str | None, str | None, dict[str, str]]:
    async def capped() -> Any:
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise PayloadTooLarge(f"the upload is over {limit:,} bytes (catalog_max_bytes): give a URL instead")
            yield chunk

    # two files at most: the catalog, and its mapping as a file (curl -F mapping=@shop.toml)
    parser = MultiPartParser(request.headers, capped(), max_files=2, max_fields=8, max_part_size=MAPPING_BYTES)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ParameterError(f"the multipart body could not be read: {exc.message}") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ParameterError("the multipart body has no file field named `file`")
        fmt, mapping = form.get("format"), form.get("mapping")
        if isinstance(mapping, UploadFile):
            mapping = await _mapping_file(mapping)
        flags = {name: value for name in ("delete_missing", "confirm_delete") if isinstance(value := form.get(name), str)}
        return (
            upload.filename or "catalog",
            await upload.read(),
            fmt if isinstance(fmt, str) else None,
            mapping if isinstance(mapping, str) else None,
            flags,
        )
    finally:
        await form.close()


@router.get(
    "/imports/{job_id}",
    summary="An import job's progress",
    responses=answered("The job's status, progress, counts and first problem rows", _JOB, 404),
)
def get_import(job_id: Annotated[str, Path(max_length=64)], resources: ResourcesDep, _auth: CatalogDep) -> JSONResponse:
    """Status (queued, running, done, failed), rows done of the total, counts, the first rejected rows."""
    job = jobs.get(resources, job_id)
    if job is None:
        raise NotFound(f"no import job {job_id}")
    return JSONResponse(envelope(200, "success", job.wire()))


@router.get("/imports", summary="Recent import jobs", responses=answered("The most recent jobs, newest first", {"jobs": [_JOB]}))
def list_imports(resources: ResourcesDep, _auth: CatalogDep) -> JSONResponse:
    return JSONResponse(envelope(200, "success", {"jobs": [job.wire() for job in jobs.recent(resources)]}))
