"""The offer: TMAPI's item schema, used both to import catalogs and to answer searches.

Field order follows ../shared/spec/tmapi-1688-search-image.md; pydantic serialises fields in
declaration order, which keeps the wire order right. ``OfferRecord`` adds the catalog-only fields
(``images`` and the filter flags) that the API does not return.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _decimal_string(value: Any) -> str:
    """Prices travel as decimal strings ("27.00"); numbers are accepted and normalised."""
    if isinstance(value, bool) or value is None:
        raise ValueError('must be a decimal number such as "27.00"')
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f'{value!r} is not a decimal number such as "27.00"') from None
    if not number.is_finite() or number < 0:
        raise ValueError(f"{value!r} must be a finite, non-negative price")
    return str(value).strip() if isinstance(value, str) else f"{number:.2f}"


class PriceInfo(_Model):
    sale_price: str
    origin_price: str

    _check = field_validator("sale_price", "origin_price", mode="before")(lambda v: _decimal_string(v))


class QuantityPrice(_Model):
    begin_num: int
    end_num: int | None = None
    price: str

    _check = field_validator("price", mode="before")(lambda v: _decimal_string(v))


class SaleInfo(_Model):
    sale_quantity: str = "0"
    sale_quantity_int: int = 0
    orders_count: int = 0

    @model_validator(mode="before")
    @classmethod
    def _fill(cls, data: Any) -> Any:
        """Either sales field may be given; the other is derived so both always agree in type."""
        if isinstance(data, dict):
            data = dict(data)
            if "sale_quantity_int" not in data and "sale_quantity" in data:
                data["sale_quantity_int"] = int(str(data["sale_quantity"]).strip() or 0)
            if "sale_quantity" not in data and "sale_quantity_int" in data:
                data["sale_quantity"] = str(data["sale_quantity_int"])
            data["sale_quantity"] = str(data.get("sale_quantity", "0"))
        return data


class DeliveryInfo(_Model):
    area_from: list[str] = Field(default_factory=list)


class ScoreInfo(_Model):
    composite_score: str | None = None

    _check = field_validator("composite_score", mode="before")(lambda v: None if v is None else str(v))


class ShopInfo(_Model):
    login_id: str | None = None
    member_id: str | None = None
    company_name: str | None = None
    shop_url: str | None = None
    biz_type: str | None = None
    is_factory: bool | None = None
    is_super_factory: bool | None = None
    location: list[str] = Field(default_factory=list)
    service_tags: list[str] | None = None
    shop_years: int | None = None
    factory_inspection: bool | None = None
    score_info: ScoreInfo = Field(default_factory=ScoreInfo)


class Item(_Model):
    """One offer as the search API returns it."""

    item_id: int = Field(gt=0, lt=2**63)  # the stores hold 64-bit signed integers
    product_url: str = ""
    title: str = Field(min_length=1)
    img: str = Field(min_length=1)
    category_path: list[str] = Field(default_factory=list)
    price: str
    price_info: PriceInfo | None = None
    moq: int = 1
    quantity_prices: list[QuantityPrice] = Field(default_factory=list)
    sale_info: SaleInfo = Field(default_factory=SaleInfo)
    delivery_info: DeliveryInfo = Field(default_factory=DeliveryInfo)
    item_repurchase_rate: str | None = None
    rating_star: str | None = None
    shop_info: ShopInfo = Field(default_factory=ShopInfo)
    is_ad: bool = False

    _price = field_validator("price", mode="before")(lambda v: _decimal_string(v))
    _cats = field_validator("category_path", mode="before")(lambda v: [str(c) for c in v] if isinstance(v, list) else v)
    _rating = field_validator("rating_star", mode="before")(lambda v: None if v is None else str(v))

    @model_validator(mode="after")
    def _default_price_info(self) -> Item:
        if self.price_info is None:
            self.price_info = PriceInfo(sale_price=self.price, origin_price=self.price)
        return self


class OfferRecord(Item):
    """One catalog line: the item schema plus catalog-only fields for images and filters."""

    images: list[str] = Field(default_factory=list)
    support_dropshipping: bool | None = None
    free_shipping: bool | None = None
    verified_supplier: bool | None = None
    new_arrival: bool | None = None
    created_at: dt.date | None = None
    source: str | None = None  # where the offer came from when not the operator's own: "upstream" (docs/upstream.md)
    seen_at: dt.datetime | None = None  # when that source last showed it

    @model_validator(mode="before")
    @classmethod
    def _main_image(cls, data: Any) -> Any:
        """An offer listing only `images` shows the first of them as `img`."""
        if isinstance(data, dict) and not data.get("img") and isinstance(data.get("images"), list) and data["images"]:
            data = {**data, "img": data["images"][0]}
        return data

    @field_validator("created_at", mode="before")
    @classmethod
    def _date(cls, value: Any) -> Any:
        """Accept a date or a full timestamp; only the day matters for `new_arrival`."""
        if isinstance(value, str) and len(value) > 10:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).date()
        return value

    def image_refs(self) -> list[str]:
        """`img` first, then the other images, without repeats."""
        refs = [self.img, *self.images]
        return list(dict.fromkeys(ref for ref in refs if ref))

    def item(self) -> Item:
        return Item.model_validate(self.model_dump(include=set(Item.model_fields)))


ITEM_FIELDS: tuple[str, ...] = tuple(Item.model_fields)


def wire_item(doc: str) -> dict[str, Any]:
    """A stored offer document as the API's item: Item's fields, in its order. Documents are
    written by import from a validated OfferRecord, so they are not validated again on every
    answer (pydantic's round trip cost 1.4 ms per page of 20); one that lacks a field is."""
    data = json.loads(doc)
    try:
        return {name: data[name] for name in ITEM_FIELDS}
    except KeyError:
        return Item.model_validate(data).model_dump(mode="json")
