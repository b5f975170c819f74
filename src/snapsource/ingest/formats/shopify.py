"""Shopify's product CSV export: one product over several rows that share its handle.

The product's first row carries Title, Vendor, category and Type; every row may add a variant
(its price) and a product image (with its position). Shopify renamed the columns in its newer
export (`Handle` -> `URL handle`, `Variant Price` -> `Price`, `Image Src` -> `Product image URL`...);
each column is looked up under both names, so either export reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from snapsource.ingest.formats import table
from snapsource.ingest.formats.mapping import Mapping, Prices, add_constants, parse_price
from snapsource.ingest.formats.source import FileSource, FormatError, numeric_id, stable_id
from snapsource.ingest.rows import RawRow, clip

# each column under its name in the classic export, then in the newer one
MAX_GROUP_ROWS = 5_000  # rows of one product kept (Shopify allows 2,048 variants and 250 images)
COLUMNS: dict[str, tuple[str, ...]] = {
    "handle": ("Handle", "URL handle"),
    "title": ("Title",),
    "vendor": ("Vendor",),
    "category": ("Product Category", "Product category"),
    "type": ("Type",),
    "price": ("Variant Price", "Price"),
    "compare_at": ("Variant Compare At Price", "Compare-at price"),
    "image": ("Image Src", "Product image URL"),
    "position": ("Image Position", "Image position"),
    "variant_image": ("Variant Image", "Variant image URL"),
    "id": ("ID", "Product ID"),  # not in Shopify's own export; apps that export it give a numeric id
    "published": ("Published", "Published on online store"),
    "status": ("Status",),
}
HIDDEN_STATUSES = ("draft", "archived", "unlisted")  # active is shown
HANDLES = COLUMNS["handle"]


class ShopifyProducts(FileSource):
    """Offers from a Shopify product export, one per handle, numbered by the product's first line."""

    def __init__(self, path: Path, *, mapping: Mapping | None = None, base_dir: Path | None = None, trusted: bool = True):
        super().__init__(path, base_dir=base_dir, trusted=trusted)
        self.constants = mapping.constants if mapping else {}
        self.prices = mapping.prices if mapping else Prices()
        self.unpublished = mapping.include_unpublished if mapping else False
        self.delimiter = table.delimiter_of(table.header_line(self.path))  # Shopify writes commas; a spreadsheet may not
        header = table.read_header(self.path, self.delimiter)
        self.at = self.header_at = {key: header.find(*names) for key, names in COLUMNS.items()}
        self.names = {key: next((n for n in names if n in header), names[0]) for key, names in COLUMNS.items()}
        lacking = [" or ".join(COLUMNS[key]) for key in ("handle", "title", "price") if self.at[key] is None]
        if self.at["image"] is None and self.at["variant_image"] is None:
            lacking.append("Image Src or Product image URL")
        if lacking:
            raise FormatError(f"{self.name}: not a Shopify product export: no {', '.join(lacking)} column")

    def rows(self) -> Iterator[RawRow]:
        first_line: dict[str, int] = {}  # handle -> the line its product started on
        group: list[tuple[int, list[str]]] = []
        keep, self.at = table.compact(self.header_at)
        reading = table.records(self.path, self.delimiter, keep)
        try:
            next(reading, None)  # the header
            for number, cells in reading:
                handle = table.cell(cells, self.at["handle"])
                if len(group) >= MAX_GROUP_ROWS and handle == table.cell(group[0][1], self.at["handle"]):
                    continue  # past what one product can have; its offer is made of the rows kept
                if not handle:
                    yield RawRow(number, None, f"no {self.names['handle']}: every row of a product repeats its handle")
                    continue
                if group and handle != table.cell(group[0][1], self.at["handle"]):
                    yield self._offer(group, first_line)
                    group = []
                group.append((number, cells))
            if group:
                yield self._offer(group, first_line)
        except table.TableError as exc:
            yield RawRow(exc.line, None, table.broken(exc))

    def _offer(self, group: list[tuple[int, list[str]]], first_line: dict[str, int]) -> RawRow:
        number = group[0][0]
        at, names = self.at, self.names
        handle = table.cell(group[0][1], at["handle"])
        if handle in first_line:
            return RawRow(
                number,
                None,
                f"more rows of product {handle!r} (it starts on line {first_line[handle]}) after other products: "
                "keep a product's rows together, as Shopify exports them",
            )
        first_line[handle] = number

        def first(key: str) -> str:
            return next((text for _, cells in group if (text := table.cell(cells, at[key]))), "")

        hidden = self._hidden(first("status"), first("published"))
        if hidden and not self.unpublished:
            return RawRow(number, None, f"left out: {hidden}", numeric_id(first("id")) or stable_id(handle), left_out=True)
        problems: list[str] = []
        title = first("title")
        if not title:
            problems.append(f"product {handle!r} has no {names['title']} (its first row carries it)")
        variants: list[tuple[str, str]] = []  # (price, origin price) of each variant
        photos: list[tuple[int | None, str]] = []
        variant_photos: list[str] = []
        for line, cells in group:
            read: dict[str, str] = {}
            for key in ("price", "compare_at"):
                if text := table.cell(cells, at[key]):
                    try:
                        read[key] = parse_price(text, self.prices)
                    except ValueError as exc:
                        problems.append(f"line {line}: {names[key]} {clip(text)!r}: {exc}")
            if "price" in read:
                sale, origin = read["price"], read.get("compare_at", read["price"])
                variants.append((sale, origin if Decimal(origin) >= Decimal(sale) else sale))
            if url := table.cell(cells, at["image"]):
                position = table.cell(cells, at["position"])
                photos.append((int(position) if position.isdecimal() else None, url))
            if url := table.cell(cells, at["variant_image"]):
                variant_photos.append(url)
        if not variants and not problems:
            problems.append(f"product {handle!r}: no variant has a {names['price']}")
        ordered = [url for _, (_, url) in sorted(enumerate(photos), key=lambda p: (p[1][0] is None, p[1][0] or 0, p[0]))]
        images = list(dict.fromkeys([*ordered, *variant_photos]))
        if not images:
            problems.append(f"product {handle!r}: no {names['image']} or {names['variant_image']}: an offer needs a photo")
        if problems:
            return RawRow(number, None, "; ".join(problems), numeric_id(first("id")) or stable_id(handle))

        price, origin = min(variants, key=lambda v: Decimal(v[0]))
        data: dict[str, Any] = {
            "item_id": numeric_id(first("id")) or stable_id(handle),
            "title": title,
            "img": images[0],
            "images": images,
            "price": price,
            "price_info": {"sale_price": price, "origin_price": origin},
        }
        category = first("category") or first("type")
        if category:
            data["category_path"] = [part.strip() for part in category.split(">") if part.strip()]
        if vendor := first("vendor"):
            data["shop_info"] = {"company_name": vendor}
        return RawRow(number, add_constants(data, self.constants))

    def _hidden(self, status: str, published: str) -> str:
        """Why the shop does not show a product ('' when it does): its Status, or Published false."""
        if status.lower() in HIDDEN_STATUSES:
            return f"{self.names['status']} {status} (include_unpublished = true in a mapping imports it)"
        if published.lower() in ("false", "no", "0"):
            return f"{self.names['published']} {published} (include_unpublished = true in a mapping imports it)"
        return ""
