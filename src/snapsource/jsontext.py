"""JSON written by people and other servers: one way to fail, json.JSONDecodeError in plain words.

`json.loads` raises RecursionError (not ValueError) on `[[[[...` nested past Python's stack, and
accepts nesting deep enough that storing or printing the value later hits the same limit. No
catalog row or request of ours nests more than a few levels: deeper is refused here, as bad JSON.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64
TOO_DEEP = f"it nests arrays or objects more than {MAX_DEPTH} levels deep"


def loads(text: str | bytes) -> Any:
    """The value of `text`; json.JSONDecodeError (a ValueError) for bad syntax or deep nesting."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise _too_deep(text) from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # int() past sys.get_int_max_str_digits, or bytes that are not UTF-8
        raise json.JSONDecodeError(_unreadable(text), text if isinstance(text, str) else "", 0) from None
    if isinstance(value, dict | list) and _nested(text):
        _check_depth(value, text)
    return value


def raw_decode(decoder: json.JSONDecoder, text: str, at: int) -> tuple[Any, int]:
    """`decoder.raw_decode` (one value of a document of several), with the same checks as loads."""
    try:
        value, end = decoder.raw_decode(text, at)
    except RecursionError:
        raise _too_deep(text) from None
    if isinstance(value, dict | list) and _nested(text[at:end]):
        _check_depth(value, text)
    return value, end


def _unreadable(text: str | bytes) -> str:
    if isinstance(text, bytes):
        try:
            text.decode()
        except UnicodeDecodeError:
            return "it is not UTF-8 text"
    return "it has a number of more than 4,300 digits"


def _too_deep(text: str | bytes) -> json.JSONDecodeError:
    return json.JSONDecodeError(TOO_DEEP, text if isinstance(text, str) else "", 0)


def _nested(text: str | bytes) -> bool:
    """Whether `text` has brackets enough to be too deep: counting them is cheap, walking is not."""
    if isinstance(text, str):
        return text.count("[") + text.count("{") > MAX_DEPTH
    return text.count(b"[") + text.count(b"{") > MAX_DEPTH


def _check_depth(value: list[Any] | dict[str, Any], text: str | bytes) -> None:
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise _too_deep(text)
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                pending.append((child, depth + 1))


def reason(exc: ValueError) -> str:
    """Why loads refused, in words for the person who sent it."""
    if isinstance(exc, json.JSONDecodeError):
        return exc.msg if exc.msg.startswith("it ") else f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    return "it is not UTF-8 text"
