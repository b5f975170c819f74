"""The console's API: tokens and their usage, behind an admin key that is not an apiToken.

The key comes from the `admin_key` setting (SNAPSOURCE_ADMIN_KEY); without it the admin API is
off. It travels as `Authorization: Bearer <key>` (or `X-Admin-Key`), never in the URL, so it
stays out of access logs.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictInt, field_validator

from snapsource.accounts.tokens import SCOPES
from snapsource.api.deps import ResourcesDep, bearer, is_admin_key, json_body, json_body_doc
from snapsource.api.schemas import errors
from snapsource.errors import NotFound, Unauthorized, envelope

router = APIRouter(prefix="/admin", tags=["admin"], responses=errors(401, 422, 500))
MAX_CALLS = 10**12


def require_admin(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_admin_key: Annotated[str | None, Header()] = None,
) -> None:
    key = request.app.state.resources.settings.admin_key
    if not key:
        raise Unauthorized("the admin API is off: start the server with SNAPSOURCE_ADMIN_KEY set")
    if not is_admin_key(request.app.state.resources, x_admin_key or bearer(authorization)):
        raise Unauthorized("admin key missing or wrong: send it as `Authorization: Bearer <key>`")


AdminDep = Annotated[None, Depends(require_admin)]


class NewToken(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    quota: StrictInt | None = Field(None, gt=0, le=MAX_CALLS, description="Calls allowed in all; none: unlimited")
    qps: float | None = Field(None, gt=0, le=1e6, description="Requests per second; none: unlimited")
    concurrency: StrictInt | None = Field(None, gt=0, le=10_000, description="Requests at the same time; none: unlimited")
    expires: dt.date | None = Field(None, description="Last day the token works")
    scopes: list[str] = Field(
        default_factory=lambda: ["search"],
        min_length=1,
        max_length=10,
        description="What the token may do: search (the TMAPI API), catalog (the catalog API), upstream (choose "
        "source= per search, docs/upstream.md)",
        json_schema_extra={"items": {"enum": list(SCOPES)}},
    )

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: list[str]) -> list[str]:
        unknown = [scope for scope in value if scope not in SCOPES]
        if unknown:
            raise ValueError(f"unknown scope {', '.join(map(repr, unknown))}: the scopes are {', '.join(SCOPES)}")
        if "upstream" in value and "search" not in value:
            raise ValueError("the upstream scope chooses the source of searches: give it with the search scope")
        return list(dict.fromkeys(value))

    @field_validator("expires", mode="before")
    @classmethod
    def _iso_date(cls, value: object) -> object:
        if value is not None and not isinstance(value, str):
            raise ValueError("must be a date as YYYY-MM-DD")  # not a number of seconds since 1970
        return value

    @field_validator("expires")
    @classmethod
    def _not_past(cls, value: dt.date | None) -> dt.date | None:
        if value is not None and value < dt.date.today():
            raise ValueError(f"{value.isoformat()} is past: give today or a later day (the token works through that day)")
        return value


@router.get("/tokens", summary="Every token, with its limits and calls used")
def list_tokens(resources: ResourcesDep, _admin: AdminDep) -> JSONResponse:
    return JSONResponse(envelope(200, "success", {"tokens": [t.wire() for t in resources.tokens.list()]}))


@router.post("/tokens", summary="Create a token; the secret is in this answer only", openapi_extra=json_body_doc(NewToken))
async def create_token(request: Request, resources: ResourcesDep, _admin: AdminDep) -> JSONResponse:
    body = await json_body(request, NewToken)  # the key first, then the body

    def create() -> dict[str, object]:
        secret = resources.tokens.create(
            body.name, quota=body.quota, qps=body.qps, concurrency=body.concurrency, expires=body.expires, scopes=body.scopes
        )
        return {"token": secret, **resources.tokens.info(secret).wire()}

    return JSONResponse(envelope(200, "success", await run_in_threadpool(create)))


@router.delete("/tokens/{token_id}", summary="Revoke a token", responses=errors(404))
def revoke_token(token_id: Annotated[int, Path(ge=1, le=2**63 - 1)], resources: ResourcesDep, _admin: AdminDep) -> JSONResponse:
    if not resources.tokens.revoke_id(token_id):
        raise NotFound(f"no active token with id {token_id}")
    return JSONResponse(envelope(200, "success", {"revoked": token_id}))


@router.get("/usage", summary="Calls, errors and p50 latency per token, endpoint and day")
def usage(
    resources: ResourcesDep,
    _admin: AdminDep,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
    name: Annotated[str | None, Query(description="Only tokens with this name")] = None,
) -> JSONResponse:
    return JSONResponse(envelope(200, "success", {"usage": resources.tokens.usage(days, name)}))


UPSTREAM_COUNTS = {  # token usage rows (endpoint) -> the upstream report's names
    "upstream:call": "calls",
    "upstream:convert": "conversions",
    "upstream:cached": "cached",
    "upstream:local": "local",
    "upstream:fallback": "failed_over",
}


@router.get("/upstream", summary="The upstream (TMAPI behind this server): calls made and saved, per token and day")
def upstream(
    request: Request,
    resources: ResourcesDep,
    _admin: AdminDep,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> JSONResponse:
    """Per token and day: upstream searches and conversions sent, searches answered from a stored
    upstream page (cached), locally where the upstream was an option (local), and locally because
    the upstream failed (failed_over, no saving); the saving is the calls not made (cached + local)
    at `upstream_price_per_call`. The upstream's token is never shown."""
    upstream = request.app.state.upstream
    days_rows: dict[tuple[str, str], dict[str, object]] = {}
    for row in resources.tokens.usage(days, counts=True):
        name = UPSTREAM_COUNTS.get(str(row["endpoint"]))
        if name is None:
            continue
        entry = days_rows.setdefault(
            (str(row["day"]), str(row["token"])),
            {"day": row["day"], "token": row["token"], "token_id": row["token_id"], **dict.fromkeys(UPSTREAM_COUNTS.values(), 0)},
        )
        entry[name] = int(row["calls"])  # type: ignore[call-overload]
    rows = sorted(days_rows.values(), key=lambda r: (str(r["day"]), str(r["token"])), reverse=True)
    totals = {name: sum(int(r[name]) for r in rows) for name in UPSTREAM_COUNTS.values()}  # type: ignore[call-overload]
    price = resources.settings.upstream_price_per_call
    saved = totals["cached"] + totals["local"]
    answered = saved + totals["calls"]
    summary = {
        **totals,
        "saved_calls": saved,
        "local_share": round(totals["local"] / answered, 4) if answered else None,
        "estimated_cost": round((totals["calls"] + totals["conversions"]) * price, 2),
        "estimated_saving": round(saved * price, 2),
    }
    state = {"configured": True, **upstream.state(), "token": "***"} if upstream is not None else {"configured": False}
    data = {**state, "days": days, "totals": summary, "usage": rows}
    return JSONResponse(envelope(200, "success", data))
