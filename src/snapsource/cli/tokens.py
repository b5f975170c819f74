"""`snapsource token`: create, revoke, list and count the API tokens of a catalog."""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from snapsource.cli.common import DEFAULT_DATA, DataOpt, _Typer, console, err, missing_catalog, refuse_missing_catalog
from snapsource.cli.text import counted, json_line, safe
from snapsource.config import Settings

token_app = _Typer(no_args_is_help=True, help="Create and revoke API tokens.")


class Scope(StrEnum):
    """accounts.tokens.SCOPES, named here so that `--help` lists them without importing the store."""

    search = "search"
    catalog = "catalog"
    upstream = "upstream"


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="A name to recognise the token by.")],
    data: DataOpt = DEFAULT_DATA,
    replace: Annotated[bool, typer.Option(help="Revoke earlier tokens of this name once this one is made.")] = False,
    quota: Annotated[int | None, typer.Option(min=1, help="Calls allowed in all (then 439).")] = None,
    qps: Annotated[float | None, typer.Option(min=0.001, help="Requests per second (over: 503).")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="Requests at the same time (over: 503).")] = None,
    expires: Annotated[str | None, typer.Option(help="Last day the token works, YYYY-MM-DD, today or later (then 439).")] = None,
    scope: Annotated[
        list[Scope] | None,
        typer.Option(
            help="What it may do: search (the TMAPI API, the default), catalog (the catalog API), upstream (choose "
            "source= per search, with search; docs/upstream.md); repeat for several."
        ),
    ] = None,
) -> None:
    """Create an API token; it is shown once and stored only as a digest. A data dir without a
    catalog gets a new, empty one (a server in front of TMAPI starts so, docs/upstream.md)."""
    try:
        until = dt.date.fromisoformat(expires) if expires else None
    except ValueError:
        raise typer.BadParameter(f"--expires {expires!r}: use YYYY-MM-DD") from None
    if until is not None and until < dt.date.today():
        raise typer.BadParameter(
            f"{until.isoformat()} is past: give today or a later day (the token works through that day)", param_hint="--expires"
        )
    from snapsource.accounts.tokens import scopes_of

    try:  # before the data dir is opened: a refused token makes nothing there
        scopes = scopes_of([s.value for s in scope] if scope else ["search"])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scope") from None
    with _tokens(data, existing=False) as tokens:
        earlier = [t.id for t in tokens.list() if t.name == name and t.revoked_at is None] if replace else []
        secret = tokens.create(name, quota=quota, qps=qps, concurrency=concurrency, expires=until, scopes=scopes)
        for token_id in earlier:  # only now: a refused token leaves the earlier ones working
            tokens.revoke_id(token_id)
        typer.echo(secret)


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="Name of the token(s) to revoke.")], data: DataOpt = DEFAULT_DATA
) -> None:
    """Revoke every active token with this name."""
    with _tokens(data) as tokens:
        count = tokens.revoke(name)
    err.print(f"revoked {counted(count, 'token')} named {safe(repr(name))}")
    if count == 0:
        raise typer.Exit(1)


@token_app.command("list")
def token_list(
    data: DataOpt = DEFAULT_DATA,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per token.")] = False,
) -> None:
    """Every token with its limits and the calls it used (never the secret)."""
    with _tokens(data) as tokens:
        _await_metering()
        infos = tokens.list()
    if as_json:
        for info in infos:
            sys.stdout.write(json_line(info.wire()) + "\n")
        return
    table = Table("id", "name", "created", "state", "scopes", "calls used", "quota", "qps", "concurrency", "expires")
    for t in infos:
        table.add_row(
            str(t.id),
            safe(t.name),
            safe(t.created_at[:10]),
            t.state(dt.date.today()),
            safe(",".join(t.scopes.split())),
            str(t.calls_used),
            _or_dash(t.quota),
            _or_dash(t.qps),
            _or_dash(t.concurrency),
            safe(t.expires_at or "-"),
        )
    console.print(table)


@token_app.command("usage")
def token_usage(
    data: DataOpt = DEFAULT_DATA,
    name: Annotated[str | None, typer.Option(help="Only tokens with this name.")] = None,
    days: Annotated[int, typer.Option(min=1, help="Days back, today included.")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per row.")] = False,
) -> None:
    """Calls, errors and p50 latency per token, endpoint and day, every call answered before the
    command ran included (it waits the second a server takes to write them)."""
    with _tokens(data) as tokens:
        _await_metering()
        rows = tokens.usage(days, name)
    if as_json:
        for row in rows:
            sys.stdout.write(json_line(row) + "\n")
        return
    table = Table("day", "token", "endpoint", "calls", "errors", "p50 ms", title=f"usage, last {counted(days, 'day')}")
    for r in rows:
        table.add_row(
            safe(r["day"]), safe(r["token"]), safe(r["endpoint"]), str(r["calls"]), str(r["errors"]), _or_dash(r["p50_ms"])
        )
    console.print(table)


def _await_metering() -> None:
    """Let every server write what it metered before now: a server keeps a call's metering (its
    usage row, and calls used by a token without limits) in memory for up to FLUSH_SECONDS, then
    writes it in one transaction (accounts/tokens.py). /admin/usage adds its own process's at
    once; this process has none, so it waits that long, and a little for the write."""
    from snapsource.accounts.tokens import FLUSH_SECONDS

    time.sleep(FLUSH_SECONDS + 0.5)


@contextlib.contextmanager
def _tokens(data: Path, *, existing: bool = True):
    """The tokens of the catalog the server reads: the `catalog` setting (SNAPSOURCE_CATALOG)
    names it, as for `serve`, and the data dir holds the pepper. Closed after the command. With
    `existing`, a data dir that holds no catalog is refused; without, one is made, and said so."""
    from snapsource.accounts.tokens import Tokens
    from snapsource.store.catalog import Catalog

    try:
        settings = Settings.load(data_dir=data)
        if existing:
            refuse_missing_catalog(settings)
        made = missing_catalog(settings)
        catalog = Catalog(settings.data_dir, settings.catalog)
    except (ValueError, ConnectionError) as exc:  # bad settings or URLs, unreachable databases
        err.print(f"[red]error:[/] {safe(exc)}")
        raise typer.Exit(2) from None
    if made is not None:
        err.print(f"note: {safe(made)}; a new, empty catalog was made there")
    try:
        yield Tokens(catalog)
    finally:
        catalog.close()


def _or_dash(value: object) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
