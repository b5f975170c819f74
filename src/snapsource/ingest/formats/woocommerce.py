"""WooCommerce's product CSV export (Products > Export), in its English column names.

One row a product; a variable product's variations are rows of their own (Type `variation`) that
name their parent in `Parent` (`id:44`, or the parent's SKU) and may come anywhere in the file, so
the file is read whole before offers come out. A variation is no offer: its price and photo join
its parent's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from snapsource.ingest.formats import table
from snapsource.ingest.formats.mapping import Mapping, Prices, add_constants, parse_price
from snapsource.ingest.formats.source import FileSource, FormatError, numeric_id, stable_id
from snapsource.ingest.rows import RawRow, clip

MAX_ROWS = 500_000  # products and variations held to link them (each its used cells only)
COLUMNS = {
    "id": "ID",
    "type": "Type",
    "sku": "SKU",
    "name": "Name",
    "sale": "Sale price",
    "regular": "Regular price",
    "sale_from": "Date sale price starts",
    "sale_to": "Date sale price ends",
    "categories": "Categories",
    "images": "Images",
    "parent": "Parent",
    "external_url": "External URL",
    "published": "Published",
    "visibility": "Visibility in catalog",
}
UNPUBLISHED = {"0": "a draft", "-1": "private"}  # Published: 1 published


def split_values(text: str) -> list[str]:
    """WooCommerce's list cell: values joined by commas, a comma inside a value written `\\,`."""
    return [part.replace("\\,", ",").strip() for part in re.split(r"(?<!\\),", text) if part.strip()]


@dataclasses.dataclass
class _Product:
    line: int
    cells: list[str]
    variations: list[tuple[int, list[str]]] = dataclasses.field(default_factory=list)


class WooCommerceProducts(FileSource):
    """Offers from a WooCommerce export: simple, variable and external products, variations folded."""

    def __init__(self, path: Path, *, mapping: Mapping | None = None, base_dir: Path | None = None, trusted: bool = True):
        super().__init__(path, base_dir=base_dir, trusted=trusted)
        self.constants = mapping.constants if mapping else {}
        self.prices = mapping.prices if mapping else Prices()
        self.unpublished = mapping.include_unpublished if mapping else False
        self.delimiter = table.delimiter_of(table.header_line(self.path))
        header = table.read_header(self.path, self.delimiter)
        self.at = self.header_at = {key: header.find(name) for key, name in COLUMNS.items()}
        lacking = [COLUMNS[key] for key in ("type", "name", "images") if self.at[key] is None]
        if self.at["id"] is None and self.at["sku"] is None:
            lacking.append("ID or SKU")
        if lacking:
            raise FormatError(f"{self.name}: not a WooCommerce product export: no {', '.join(lacking)} column")
        self.today = dt.date.today()

    def _cell(self, cells: list[str], key: str) -> str:
        return table.cell(cells, self.at[key])

    def rows(self) -> Iterator[RawRow]:
        products: list[_Product] = []
        variations: list[tuple[int, list[str]]] = []
        out: list[RawRow] = []
        keep, self.at = table.compact(self.header_at)
        reading = table.records(self.path, self.delimiter, keep)
        try:
            next(reading, None)  # the header
            for number, cells in reading:
                if len(products) + len(variations) >= MAX_ROWS:
                    out.append(
                        RawRow(
                            number, None, f"more than {MAX_ROWS:,} rows: split the export; nothing after this line was imported"
                        )
                    )
                    break
                kinds = {kind.strip().lower() for kind in self._cell(cells, "type").split(",")}
                if "variation" in kinds:
                    variations.append((number, cells))
                else:
                    products.append(_Product(number, cells))
        except table.TableError as exc:
            out.append(RawRow(exc.line, None, table.broken(exc)))
        by_key: dict[str, _Product] = {}
        for product in products:
            if ident := self._cell(product.cells, "id"):
                by_key.setdefault(f"id:{ident}", product)
            if sku := self._cell(product.cells, "sku"):
                by_key.setdefault(sku, product)
        for number, cells in variations:
            parent = self._cell(cells, "parent")
            owner = (by_key.get(parent) or by_key.get(f"id:{parent}")) if parent else None
            if owner is None:
                out.append(
                    RawRow(
                        number,
                        None,
                        f"variation of {parent!r}, which is no product of this file: Parent names it as id:NN or by its SKU"
                        if parent
                        else "a variation without a Parent: name its product as id:NN or by its SKU",
                        self._own_id(cells),
                    )
                )
                continue
            owner.variations.append((number, cells))
        out.extend(self._offer(product) for product in products)
        yield from sorted(out, key=lambda row: row.number)

    def _price(self, line: int, cells: list[str], problems: list[str]) -> tuple[str, str] | None:
        """(price, origin price) of one row: the sale price while the sale runs, else the regular."""
        read: dict[str, str] = {}
        for key, column in (("regular", "Regular price"), ("sale", "Sale price")):
            if text := self._cell(cells, key):
                try:
                    read[key] = parse_price(text, self.prices)
                except ValueError as exc:
                    problems.append(f"line {line}: {column} {clip(text)!r}: {exc}")
        origin = read.get("regular")
        price = read["sale"] if "sale" in read and self._on_sale(cells) else origin
        if price is None:
            return None
        return price, origin if origin is not None and Decimal(origin) >= Decimal(price) else price

    def _on_sale(self, cells: list[str]) -> bool:
        def day(key: str) -> dt.date | None:
            try:
                return dt.date.fromisoformat(self._cell(cells, key)[:10])
            except ValueError:
                return None

        starts, ends = day("sale_from"), day("sale_to")
        return (starts is None or starts <= self.today) and (ends is None or self.today <= ends)

    def _own_id(self, cells: list[str]) -> int | None:
        """A row's item_id: its numeric ID, else its SKU's hash (None with neither)."""
        sku = self._cell(cells, "sku")
        return numeric_id(self._cell(cells, "id")) or (stable_id(sku) if sku else None)

    def _hidden(self, cells: list[str]) -> str:
        """Why the shop does not show a product ('' when it does): Published 0 or -1, or hidden."""
        published, visibility = self._cell(cells, "published"), self._cell(cells, "visibility").lower()
        how = "(include_unpublished = true in a mapping imports it)"
        if published in UNPUBLISHED:
            return f"Published {published}: {UNPUBLISHED[published]} {how}"
        if visibility == "hidden":
            return f"Visibility in catalog hidden {how}"
        return ""

    def _offer(self, product: _Product) -> RawRow:
        cells, number = product.cells, product.line
        kinds = {kind.strip().lower() for kind in self._cell(cells, "type").split(",")}
        if "grouped" in kinds:  # no offer, and no problem: its products are offers on their own rows
            reason = "left out: a grouped product has no price of its own; its products are offers on their own rows"
            return RawRow(number, None, reason, self._own_id(cells), left_out=True)
        hidden = self._hidden(cells)
        if hidden and not self.unpublished:
            return RawRow(number, None, f"left out: {hidden}", self._own_id(cells), left_out=True)
        problems: list[str] = []
        name = self._cell(cells, "name")
        if not name:
            problems.append("no Name")
        ident, sku = self._cell(cells, "id"), self._cell(cells, "sku")
        if numeric_id(ident) is None and not sku:
            problems.append("no numeric ID and no SKU to make its item_id from")
        own = self._price(number, cells, problems)
        prices = [own] if own else [p for line, row in product.variations if (p := self._price(line, row, problems))]
        if not prices and not problems:
            problems.append("no Regular price or Sale price on the product or its variations")
        images = split_values(self._cell(cells, "images"))
        for _, row in product.variations:
            images.extend(split_values(self._cell(row, "images")))
        images = list(dict.fromkeys(images))
        if not images:
            problems.append("no Images: an offer needs a photo")
        if problems:
            return RawRow(number, None, "; ".join(problems), self._own_id(cells))

        price, origin = min(prices, key=lambda p: Decimal(p[0]))
        data: dict[str, Any] = {
            "item_id": numeric_id(ident) or stable_id(sku),
            "title": name,
            "img": images[0],
            "images": images,
            "price": price,
            "price_info": {"sale_price": price, "origin_price": origin},
        }
        categories = split_values(self._cell(cells, "categories"))
        if categories:
            data["category_path"] = [part.strip() for part in categories[0].split(">") if part.strip()]
        if url := self._cell(cells, "external_url"):
            data["product_url"] = url
        return RawRow(number, add_constants(data, self.constants))
