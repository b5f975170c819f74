"""Text that came from someone else (offer titles and shop names from a catalog token or a server,
token names, a server's messages), made safe to print: a title holding ESC sequences could
otherwise set the terminal's window title, clear its screen or rewrite what it shows."""

from __future__ import annotations

import json
import re

from rich.markup import escape

# C0 (tab and newline too: one cell, one line), DEL and C1 (0x9b is a CSI of its own)
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_JSON_CONTROL = re.compile("[\x7f-\x9f]")  # json.dumps escapes C0 itself


def safe(value: object) -> str:
    """`value` as a rich console or table cell shows it as it is: each control character as its
    escape (ESC as `\\x1b`), markup such as `[red]` as typed."""
    return escape(CONTROL.sub(lambda c: c.group().encode("unicode_escape").decode("ascii"), str(value)))


def json_line(row: object) -> str:
    """One JSON line of a dict, or of a pydantic model as it dumps itself, with DEL and C1
    characters as \\u escapes too (the same JSON once parsed)."""
    dump = getattr(row, "model_dump_json", None)
    text = dump() if dump is not None else json.dumps(row, ensure_ascii=False)
    return _JSON_CONTROL.sub(lambda c: f"\\u{ord(c.group()):04x}", text)


def link_target(url: str | None) -> str | None:
    """`url` where a terminal may link a title to it: http(s) without control characters (a
    link is written inside an escape sequence that an ESC in it would end)."""
    if not url or CONTROL.search(url) or not url.startswith(("http://", "https://")):
        return None
    return url


def counted(n: int, noun: str) -> str:
    """ "1 offer", "2 offers", "1,000 offers"."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
