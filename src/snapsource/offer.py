"""The offer: TMAPI's item schema, used both to import catalogs and to answer searches.

Field order follows ../shared/spec/tmapi-1688-search-image.md; pydantic serialises fields in
declaration order, which keeps the wire order right. ``OfferRecord`` adds the catalog-only fields
(``images`` and the filter flags) that the API does not return.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The limits of an offer's fields (docs/catalog.md, "Limits"): every search that finds an offer
# sends its text, and the stores hold 64-bit integers, so a value past one rejects its row, named.
TITLE_CHARS = 1_000
NAME_CHARS = 300  # names: of the shop, company, login, categories, places, tags, biz type
URL_CHARS = 2_048  # product_url, shop_url, img and images (a data: URI is bounded by its bytes instead)
SHORT_CHARS = 40  # prices, sales as text, rates, ratings, scores, source
MAX_IMAGES = 50
MAX_LIST = 50  # levels of category_path, places, tags, quantity price tiers
MAX_PRICE = Decimal(1_000_000_000)
MAX_COUNT = 10**15  # sales, orders, moq, quantities: within a 64-bit integer and a double's exact range
MAX_YEARS = 1_000


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _shown(value: Any) -> str:
    """A value quoted in a reason, cut short (it may be megabytes)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _decimal_string(value: Any) -> str:
    """Prices travel as decimal strings ("27.00"); numbers are accepted and normalised."""
    if isinstance(value, bool) or value is None:
        raise ValueError('must be a decimal number such as "27.00"')
    text = str(value).strip()
    if len(text) > SHORT_CHARS:
        raise ValueError(f"a price has at most {SHORT_CHARS} characters, not {len(text):,}")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f'{_shown(value)} is not a decimal number such as "27.00"') from None
    if not number.is_finite() or number < 0:
        raise ValueError(f"{_shown(value)} must be a finite, non-negative price")
    if number > MAX_PRICE:
        raise ValueError(f"{_shown(value)} is over the largest price, {MAX_PRICE:,}")
    return text if isinstance(value, str) else f"{number:.2f}"


def _texts(limit: int) -> Any:
    """A validator of a list of text: each element at most `limit` characters."""

    def check(values: Any) -> Any:
        if isinstance(values, list):
            for at, value in enumerate(values):
                if isinstance(value, str) and len(value) > limit:
                    raise ValueError(f"element {at} has {len(value):,} characters; at most {limit:,}")
        return values

    return check


def _image_ref(value: Any) -> Any:
    """A photo's URL or path, at most URL_CHARS; an inline data: URI is capped by its bytes when read."""
    if isinstance(value, str) and len(value) > URL_CHARS and not value.startswith("data:"):
        raise ValueError(f"a photo's URL or path has at most {URL_CHARS:,} characters, not {len(value):,}")
    return value


class PriceInfo(_Model):
    sale_price: str
    origin_price: str

    _check = field_validator("sale_price", "origin_price", mode="before")(lambda v: _decimal_string(v))


class QuantityPrice(_Model):
    begin_num: int = Field(ge=0, le=MAX_COUNT)
    end_num: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    price: str

    _check = field_validator("price", mode="before")(lambda v: _decimal_string(v))


class SaleInfo(_Model):
    sale_quantity: str = Field(default="0", max_length=SHORT_CHARS)
    sale_quantity_int: int = Field(default=0, ge=0, le=MAX_COUNT)
    orders_count: int = Field(default=0, ge=0, le=MAX_COUNT)

    @model_validator(mode="before")
    @classmethod
    def _fill(cls, data: Any) -> Any:
        """Either sales field may be given; the other is derived so both always agree in type."""
        if isinstance(data, dict):
            data = dict(data)
            if "sale_quantity_int" not in data and "sale_quantity" in data:
                text = str(data["sale_quantity"]).strip()
                if len(text) > SHORT_CHARS or not re.fullmatch(r"\d*", text):
                    raise ValueError(f"sale_quantity {_shown(text)} is not a whole number (or give sale_quantity_int)")
                data["sale_quantity_int"] = int(text or 0)
            if "sale_quantity" not in data and "sale_quantity_int" in data:
                count = data["sale_quantity_int"]
                data["sale_quantity"] = str(int(count) if isinstance(count, float) and count.is_integer() else count)
            data["sale_quantity"] = str(data.get("sale_quantity", "0"))
        return data


class DeliveryInfo(_Model):
    area_from: list[str] = Field(default_factory=list, max_length=MAX_LIST)

    _check = field_validator("area_from")(_texts(NAME_CHARS))


class ScoreInfo(_Model):
    composite_score: str | None = Field(default=None, max_length=SHORT_CHARS)

    _check = field_validator("composite_score", mode="before")(lambda v: None if v is None else str(v))


class ShopInfo(_Model):
    login_id: str | None = Field(default=None, max_length=NAME_CHARS)
    member_id: str | None = Field(default=None, max_length=NAME_CHARS)
    company_name: str | None = Field(default=None, max_length=NAME_CHARS)
    shop_url: str | None = Field(default=None, max_length=URL_CHARS)
    biz_type: str | None = Field(default=None, max_length=NAME_CHARS)
    is_factory: bool | None = None
    is_super_factory: bool | None = None
    location: list[str] = Field(default_factory=list, max_length=MAX_LIST)
    service_tags: list[str] | None = Field(default=None, max_length=MAX_LIST)
    shop_years: int | None = Field(default=None, ge=0, le=MAX_YEARS)
    factory_inspection: bool | None = None
    score_info: ScoreInfo = Field(default_factory=ScoreInfo)

    _check = field_validator("location", "service_tags")(_texts(NAME_CHARS))


class Item(_Model):
    """One offer as the search API returns it."""

    item_id: int = Field(gt=0, lt=2**63)  # the stores hold 64-bit signed integers
    product_url: str = Field(default="", max_length=URL_CHARS)
    title: str = Field(min_length=1, max_length=TITLE_CHARS)
    img: str = Field(min_length=1)
    category_path: list[str] = Field(default_factory=list, max_length=MAX_LIST)
    price: str
    price_info: PriceInfo | None = None
    moq: int = Field(default=1, ge=0, le=MAX_COUNT)
    quantity_prices: list[QuantityPrice] = Field(default_factory=list, max_length=MAX_LIST)
    sale_info: SaleInfo = Field(default_factory=SaleInfo)
    delivery_info: DeliveryInfo = Field(default_factory=DeliveryInfo)
    item_repurchase_rate: str | None = Field(default=None, max_length=SHORT_CHARS)
    rating_star: str | None = Field(default=None, max_length=SHORT_CHARS)
    shop_info: ShopInfo = Field(default_factory=ShopInfo)
    is_ad: bool = False

    _price = field_validator("price", mode="before")(lambda v: _decimal_string(v))
    _cats = field_validator("category_path", mode="before")(lambda v: [str(c) for c in v] if isinstance(v, list) else v)
    _cat_names = field_validator("category_path")(_texts(NAME_CHARS))
    _img = field_validator("img")(_image_ref)
    _rating = field_validator("rating_star", mode="before")(lambda v: None if v is None else str(v))

    @model_validator(mode="after")
    def _default_price_info(self) -> Item:
        if self.price_info is None:
            self.price_info = PriceInfo(sale_price=self.price, origin_price=self.price)
        return self


class OfferRecord(Item):
    """One catalog line: the item schema plus catalog-only fields for images and filters."""

    images: list[str] = Field(default_factory=list, max_length=MAX_IMAGES)
    support_dropshipping: bool | None = None
    free_shipping: bool | None = None
    verified_supplier: bool | None = None
    new_arrival: bool | None = None
    created_at: dt.date | None = None
    source: str | None = Field(
        None, max_length=SHORT_CHARS
    )  # where the offer came from when not the operator's own: "upstream" (docs/upstream.md)
    seen_at: dt.datetime | None = None  # when that source last showed it

    @model_validator(mode="before")
    @classmethod
    def _main_image(cls, data: Any) -> Any:
        """An offer listing only `images` shows the first of them as `img`."""
        if isinstance(data, dict) and not data.get("img") and isinstance(data.get("images"), list) and data["images"]:
            data = {**data, "img": data["images"][0]}
        return data

    @field_validator("images")
    @classmethod
    def _image_refs(cls, refs: list[str]) -> list[str]:
        for ref in refs:
            _image_ref(ref)
        return refs

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
