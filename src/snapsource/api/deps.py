"""Request-scoped helpers shared by the routes."""

from __future__ import annotations

import hmac
import math
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from fastapi import Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, BeforeValidator, ValidationError
from pydantic_core import PydanticCustomError

from snapsource import jsontext
from snapsource.errors import ParameterError
from snapsource.resources import Resources

Model = TypeVar("Model", bound=BaseModel)


async def get_resources(request: Request) -> Resources:  # async: no thread hop for a lookup
    return request.app.state.resources


def check_token(request: Request, token: str | None) -> None:
    """TMAPI's first check: a known, unrevoked `apiToken` (limits aside), else 401."""
    tokens = request.app.state.resources.tokens
    if not tokens.valid(token):
        raise tokens.refusal(token)


def require_token(request: Request, apiToken: Annotated[str | None, Query()] = None) -> str:  # noqa: N803
    """TMAPI's auth and limits: the call is admitted (counted against the token's quota, rate and
    concurrency) or refused with 401, 439 or 503; the app's middleware releases and meters it."""
    request.state.lease = request.app.state.resources.tokens.admit(apiToken)
    return apiToken or ""


def bearer(authorization: str | None) -> str:
    """What follows `Bearer ` in an Authorization header, else ''."""
    return authorization[7:] if authorization and authorization.lower().startswith("bearer ") else ""


def is_admin_key(resources: Resources, given: str) -> bool:
    """Whether `given` is the admin key (never when the server has none), in constant time."""
    key = resources.settings.admin_key
    return bool(key and given) and hmac.compare_digest(given.encode(), key.encode())


def public_base(request: Request) -> str:
    """Base for absolute image URLs: the configured public URL, else the request's own."""
    configured = request.app.state.resources.settings.public_url
    return (configured or str(request.base_url)).rstrip("/")


def own_hosts(request: Request) -> set[str]:
    hosts = {request.url.netloc.lower()}
    configured = request.app.state.resources.settings.public_url
    if configured:
        hosts.add(urlsplit(configured).netloc.lower())
    return hosts


async def json_body(request: Request, model: type[Model]) -> Model:
    """A route's JSON body as `model`, read once its credentials passed: a FastAPI body parameter
    would be read and parsed before any dependency ran. Its size is capped by the app's BodyLimit."""
    try:
        payload = jsontext.loads(await request.body())
    except ValueError as exc:
        raise ParameterError(f"the request body is not JSON ({jsontext.reason(exc)}): send a JSON object") from None
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None


def json_body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI requestBody of a route that reads `model` with json_body."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


ResourcesDep = Annotated[Resources, Depends(get_resources)]
TokenDep = Annotated[str, Depends(require_token)]


class BlankIsAbsent(APIRoute):
    """One rule for every query parameter of a route: an empty value (`explain=`, `page=`, as a
    form sends an unfilled field) is the same as leaving the parameter out, so it takes its default.
    Without it a typed parameter refuses the empty string while a text one takes it as absent."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def without_blanks(request: Request) -> Response:
            raw: bytes = request.scope.get("query_string", b"")
            if raw:  # before anything reads query_params, which Request keeps once parsed
                request.scope["query_string"] = b"&".join(p for p in raw.split(b"&") if p.partition(b"=")[2])
            return await handler(request)

        return without_blanks


FLAG_VALUES = "true or false in any case, or 1 or 0"


def _flag(value: object) -> object:
    """TMAPI's booleans as clients send them (JavaScript `true`, Python `True`, PHP `1`); nothing
    looser, so that a typo (`ture`, `yes`) is an error rather than a silent false or true."""
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise PydanticCustomError("flag", f"must be {FLAG_VALUES}")


def one_of(*allowed: str) -> BeforeValidator:
    """A check that names the allowed values, where a pattern's error would show the regex."""
    listed = " or ".join(allowed) if len(allowed) > 1 else f"{allowed[0]}, or left out"

    def check(value: object) -> object:
        text = value.lower() if isinstance(value, str) else value  # in any case, as the flags are
        if text not in allowed:
            raise PydanticCustomError("one_of", f"must be {listed}")
        return text

    return BeforeValidator(check)


def fraction() -> BeforeValidator:
    """A number from 0 to 1: `nan` and `inf` parse as floats, and would otherwise meet only a
    bound's error ("less than or equal to 1") that does not say what is wrong."""

    def check(value: object) -> object:
        try:
            number = float(value) if isinstance(value, str | int | float) else math.nan
        except ValueError:
            number = math.nan
        if not 0 <= number <= 1:  # false for nan as well
            raise PydanticCustomError("fraction", "must be a number between 0 and 1, such as 0.5")
        return number

    return BeforeValidator(check)


Flag = Annotated[bool, BeforeValidator(_flag)]
