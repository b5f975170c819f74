"""The mapping file of a CSV or TSV catalog: which column fills which catalog field, and how the
file writes prices and yes/no. Shop exports (Shopify, WooCommerce) take its `constants` and
`prices` only: their columns are known.

Fields are named by their path in the catalog schema (`offer.OfferRecord`), dotted for nested
ones: `price_info.origin_price`, `shop_info.company_name`. Each field's kind (price, whole
number, yes/no, list...) comes from the schema itself, so a new field needs no change here.
"""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import json
import re
import tomllib
import types
import unicodedata
from collections.abc import Iterator
from collections.abc import Mapping as AnyMapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from snapsource import jsontext
from snapsource.ingest.formats.source import FormatError, numeric_id, stable_id
from snapsource.offer import OfferRecord

Kind = Literal["text", "price", "int", "bool", "list", "date", "json"]
PRICE_FIELDS = {"price", "sale_price", "origin_price"}


def _kinds(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, Kind]]:
    for name, field in model.model_fields.items():
        annotation: Any = field.annotation
        if get_origin(annotation) in (Union, types.UnionType):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        path = prefix + name
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _kinds(annotation, path + ".")
        elif get_origin(annotation) is list:
            (inner,) = get_args(annotation)
            yield path, "json" if isinstance(inner, type) and issubclass(inner, BaseModel) else "list"
        elif annotation is bool:
            yield path, "bool"
        elif annotation is int:
            yield path, "int"
        elif annotation is dt.date:
            yield path, "date"
        else:
            yield path, "price" if name in PRICE_FIELDS else "text"


SET_BY_SNAPSOURCE = {"source", "seen_at"}  # what marks an offer landed from the upstream (docs/upstream.md)
FIELDS: dict[str, Kind] = {path: kind for path, kind in _kinds(OfferRecord) if path not in SET_BY_SNAPSOURCE}
REQUIRED: tuple[tuple[str, ...], ...] = (("item_id",), ("title",), ("price", "price_info.sale_price"), ("img", "images"))
CURRENCY_SIGNS = ["US$", "USD", "EUR", "GBP", "CNY", "RMB", "JPY", "CHF", "元"]


def _known(path: str) -> str:
    if path in SET_BY_SNAPSOURCE:
        raise ValueError(
            f"{path!r} is set by snapsource for offers it landed from the upstream, not by a catalog file: leave it out"
        )
    if path not in FIELDS:
        raise ValueError(f"{path!r} is no catalog field; the fields are: {', '.join(FIELDS)}")
    return path


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Prices(_Strict):
    """How the file writes prices: `12.50`, or `12,50` with a decimal comma; currency signs go."""

    decimal_comma: bool = False  # 1.234,56 (thousands: . or space); else 1,234.56 (thousands: , or space)
    currency_signs: list[str] = Field(default_factory=lambda: list(CURRENCY_SIGNS))  # besides every Unicode currency symbol


class Booleans(_Strict):
    """The words for yes and no (any case); an empty cell leaves the field unset."""

    true: list[str] = Field(default_factory=lambda: ["yes", "y", "true", "t", "1"])
    false: list[str] = Field(default_factory=lambda: ["no", "n", "false", "f", "0"])

    @model_validator(mode="after")
    def _apart(self) -> Booleans:
        self.true = [w.strip().lower() for w in self.true]
        self.false = [w.strip().lower() for w in self.false]
        both = set(self.true) & set(self.false)
        if both:
            raise ValueError(f"{sorted(both)} cannot mean both true and false")
        return self


class Mapping(_Strict):
    """A CSV/TSV catalog's columns, constants and number formats (docs/catalog.md, Formats)."""

    columns: dict[str, str | list[str]] = Field(default_factory=dict)  # column -> field path(s)
    constants: dict[str, Any] = Field(default_factory=dict)  # field path -> value of every offer
    delimiter: str | None = None  # csv only; default: found from the header line
    category_separator: str = Field(default=">", min_length=1)
    list_separator: str = Field(default="|", min_length=1)  # images, locations... in one cell
    prices: Prices = Field(default_factory=Prices)
    booleans: Booleans = Field(default_factory=Booleans)
    include_unpublished: bool = False  # shop exports: import drafts, archived, private and hidden products too

    @field_validator("columns")
    @classmethod
    def _fields(cls, columns: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        for targets in columns.values():
            for path in [targets] if isinstance(targets, str) else targets:
                _known(path)
        return columns

    @field_validator("constants")
    @classmethod
    def _constant_fields(cls, constants: dict[str, Any]) -> dict[str, Any]:
        for path in constants:
            _known(path)
        return constants

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, delimiter: str | None) -> str | None:
        if delimiter is not None and len(delimiter) != 1:
            raise ValueError('one character, such as ";" or "\\t"')
        return delimiter

    def targets(self, column: str) -> list[str]:
        found = self.columns.get(column, [])
        return [found] if isinstance(found, str) else list(found)


def load_mapping(mapping: Path | Mapping | AnyMapping[str, Any]) -> Mapping:
    """A mapping from its file (JSON or TOML, whatever its name), a dict, or as it is."""
    if isinstance(mapping, Mapping):
        return mapping
    where = "mapping"
    try:
        if isinstance(mapping, Path):
            where = f"mapping {mapping.name}"
            raw = read_mapping_text(mapping.read_text(encoding="utf-8-sig"), where)
        else:
            raw = dict(mapping)
        return Mapping.model_validate(raw)
    except OSError as exc:
        raise FormatError(f"{where}: cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise FormatError(f"{where}: not UTF-8 text: save it as UTF-8") from None
    except ValidationError as exc:
        raise FormatError(f"{where}: " + "; ".join(_problems(exc.errors()))) from None


def read_mapping_text(text: str, where: str = "mapping") -> Any:
    """A mapping's text: JSON when it reads as JSON, else TOML (a file of either, or one pasted in
    a form). FormatError says what is wrong in plain words."""
    try:
        return jsontext.loads(text)
    except ValueError as exc:
        if text.lstrip().startswith("{"):
            why = f": {exc.msg} at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            raise FormatError(f"{where} is not valid JSON{why}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        hint = ': put text values in quotes, as "Artikelnummer" = "item_id"' if "Invalid value" in str(exc) else ""
        raise FormatError(f"{where} is neither a JSON object nor valid TOML: {exc}{hint}") from None
    except RecursionError:
        raise FormatError(f"{where} nests too deeply to be a mapping") from None


def _problems(errors: list[Any]) -> list[str]:
    """Pydantic's errors about a mapping, in the mapping's words: the file's columns written at its
    top level (or under another table) said once, and a misspelt setting named with the right one."""
    settings = list(Mapping.model_fields)
    said: list[str] = []
    columns: list[tuple[str, Any]] = []  # (column, the field it names)
    for error in errors:
        loc = [str(p) for p in error["loc"]]
        if error["type"] != "extra_forbidden":
            said.append(f"{'.'.join(loc) or 'mapping'}: {error['msg'].removeprefix('Value error, ')}")
            continue
        known = settings if len(loc) == 1 else _settings_of(loc[0])
        close = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.75)
        under = "" if len(loc) == 1 else f" under [{loc[0]}]"
        if close:
            said.append(f"{'.'.join(loc)!r} is no setting{under}: did you mean {close[0]!r}?")
        elif isinstance(error.get("input"), str):
            columns.append((loc[-1], error["input"]))
        else:
            said.append(f"{'.'.join(loc)!r} is no setting{under} (they are {', '.join(known)})")
    if columns:
        names = ", ".join(repr(column) for column, _ in columns)
        column, field = next(((c, f) for c, f in columns if f in FIELDS), (columns[0][0], "title"))
        said.insert(
            0,
            f"{names} {'is' if len(columns) == 1 else 'are'} no mapping setting: the file's columns go under "
            f'[columns], as "{column}" = "{field}" (the settings are {", ".join(settings)})',
        )
    return said


def _settings_of(table: str) -> list[str]:
    models: dict[str, type[BaseModel]] = {"prices": Prices, "booleans": Booleans}
    return list(models[table].model_fields) if table in models else []


# cells --------------------------------------------------------------------------------------------


def parse_price(text: str, prices: Prices | None = None) -> str:
    """A price cell as the catalog's decimal string ("1234.50"); ValueError says how to fix it."""
    prices = prices or Prices()
    cell = text
    for sign in sorted(prices.currency_signs, key=len, reverse=True):
        cell = cell.replace(sign, "")
    cell = "".join(ch for ch in cell if unicodedata.category(ch) != "Sc" and not ch.isspace() and ch != "'")
    if cell.startswith("-"):
        raise ValueError("a price cannot be negative")
    point, group = (",", ".") if prices.decimal_comma else (".", ",")
    g, p = re.escape(group), re.escape(point)
    if not re.fullmatch(rf"(\d{{1,3}}({g}\d{{3}})+|\d+)({p}\d+)?|{p}\d+", cell):
        if not prices.decimal_comma and re.fullmatch(r"(\d{1,3}(\.\d{3})+|\d+),\d{1,2}", cell):
            raise ValueError("looks like a decimal comma: set decimal_comma = true under [prices] in the mapping")
        if prices.decimal_comma and re.fullmatch(r"\d+\.\d{1,2}", cell):
            raise ValueError("looks like a decimal point: set decimal_comma = false under [prices] in the mapping")
        raise ValueError("not a price such as 12.50 (currency signs are fine)")
    try:
        number = Decimal(cell.replace(group, "").replace(point, "."))
    except InvalidOperation:  # pragma: no cover - the pattern admits only digits and one point
        raise ValueError("not a price such as 12.50") from None
    return f"{number:.2f}" if number == number.quantize(Decimal("0.01")) else format(number.normalize(), "f")


def parse_int(text: str) -> int:
    """A whole number; thousands may be grouped with , . space or '."""
    cell = text.strip()
    if re.fullmatch(r"\d{1,3}([,.\s']\d{3})+", cell):
        cell = re.sub(r"[,.\s']", "", cell)
    if not re.fullmatch(r"[+-]?\d+", cell):
        raise ValueError("not a whole number")
    if len(cell.lstrip("+-0")) > 18:  # past every range of the schema (and Python's 4,300-digit limit)
        raise ValueError("too large: a whole number of at most 18 digits")
    return int(cell)


def parse_item_id(text: str) -> int:
    """A number (under 2^63) as it is; any other key (a SKU) as its stable 63-bit hash."""
    cell = text.strip()
    return numeric_id(cell) or stable_id(cell)


def parse_bool(text: str, words: Booleans) -> bool:
    cell = text.strip().lower()
    if cell in words.true:
        return True
    if cell in words.false:
        return False
    raise ValueError(
        f"not one of {'/'.join(words.true)} (true) or {'/'.join(words.false)} (false): set them under [booleans] in the mapping"
    )


def cell_value(path: str, text: str, rules: Mapping) -> Any:
    """One non-empty cell as the value of field `path`; ValueError says why not."""
    kind = FIELDS[path]
    if path == "item_id":
        return parse_item_id(text)
    if kind == "price":
        return parse_price(text, rules.prices)
    if kind == "int":
        return parse_int(text)
    if kind == "bool":
        return parse_bool(text, rules.booleans)
    if kind == "list":
        separator = rules.category_separator if path == "category_path" else rules.list_separator
        return [part.strip() for part in text.split(separator) if part.strip()]
    if kind == "json":
        try:
            return jsontext.loads(text)
        except ValueError as exc:  # a syntax error, or a number past 4,300 digits
            why = exc.msg if isinstance(exc, json.JSONDecodeError) else "a number of more than 4,300 digits"
            raise ValueError(f"not JSON ({why}); {path} is a list of objects") from None
    return text.strip()


def put(data: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted field; a list field given by several columns gathers them in column order."""
    *parents, last = path.split(".")
    for name in parents:
        data = data.setdefault(name, {})
    if FIELDS.get(path) == "list" and isinstance(data.get(last), list) and isinstance(value, list):
        data[last] = [*data[last], *value]
    else:
        data[last] = value


def has(data: dict[str, Any], path: str) -> bool:
    for name in path.split("."):
        if not isinstance(data, dict) or name not in data:
            return False
        data = data[name]
    return True


def add_constants(data: dict[str, Any], constants: dict[str, Any]) -> dict[str, Any]:
    """A column's value wins; a constant fills the field where the row left it unset."""
    for path, value in constants.items():
        if not has(data, path):
            put(data, path, copy.deepcopy(value))
    return data


def complete_prices(data: dict[str, Any]) -> dict[str, Any]:
    """`price` and `price_info` from whichever of them the file gave: TMAPI's price is the sale
    price, and an origin price alone is no offer's price."""
    info = data.get("price_info")
    if isinstance(info, dict):
        if "price" not in data and "sale_price" in info:
            data["price"] = info["sale_price"]
        if "price" in data:
            info.setdefault("sale_price", data["price"])
            info.setdefault("origin_price", info["sale_price"])
    return data
