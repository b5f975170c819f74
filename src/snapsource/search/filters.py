"""The spec's filters and sorts, parsed and checked: what a request may narrow a search by."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Collection
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from snapsource.errors import ParameterError
from snapsource.store.catalog import OfferFacts
from snapsource.store.columns import FLAG_COLUMNS, Where


class Sort(StrEnum):
    default = "default"
    sales = "sales"
    price_up = "price_up"
    price_down = "price_down"


MAX_KEYWORD = 200
CATEGORY_ID = re.compile(r"[1-9][0-9]*")  # 1688's category ids: whole numbers
FLAGS = ("support_dropshipping", "is_factory", "verified_supplier", "free_shipping", "new_arrival")


@dataclasses.dataclass(frozen=True)
class Filters:
    """The spec's filters. A flag filters only when true: false or absent means "any"."""

    price_start: Decimal | None = None
    price_end: Decimal | None = None
    support_dropshipping: bool = False
    is_factory: bool = False
    verified_supplier: bool = False
    free_shipping: bool = False
    new_arrival: bool = False
    keyword: str = ""  # every word in the title: 1688's search within the image results (data.keyword)
    cat_id: str = ""  # in this category or below it (an id of category_path)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keyword", " ".join(self.keyword.split()))
        if len(self.keyword) > MAX_KEYWORD:
            raise ParameterError(f"keyword must be at most {MAX_KEYWORD} characters")
        for name in ("price_start", "price_end"):
            value = getattr(self, name)
            if value is not None and (not value.is_finite() or value < 0):
                raise ParameterError(f'{name} must be a non-negative decimal number such as "19.90"')
        if self.price_start is not None and self.price_end is not None and self.price_start > self.price_end:
            raise ParameterError(f"price_start ({self.price_start}) is greater than price_end ({self.price_end})")

    @classmethod
    def from_params(
        cls,
        price_start: str | None = None,
        price_end: str | None = None,
        keyword: str | None = None,
        cat_id: str | None = None,
        **flags: bool,
    ) -> Filters:
        """Filters from request parameters: prices as decimal strings, empty meaning absent."""
        return cls(
            price_start=_decimal("price_start", price_start),
            price_end=_decimal("price_end", price_end),
            keyword=keyword or "",
            cat_id=(cat_id or "").strip(),
            **flags,
        )

    def echo(self) -> dict[str, object]:
        """The filters applied, in the spec's parameter order, for the response's `filters`."""
        out: dict[str, object] = {}
        if self.price_start is not None:
            out["price_start"] = str(self.price_start)
        if self.price_end is not None:
            out["price_end"] = str(self.price_end)
        for name in FLAGS:
            if getattr(self, name):
                out[name] = True
        return out

    def tmapi(self) -> dict[str, str]:
        """TMAPI's filter parameters as a TMAPI server is sent them: prices as given, flags as true."""
        return {name: "true" if value is True else str(value) for name, value in self.echo().items()}

    def where(self, today: dt.date, new_days: int) -> Where | None:
        """The store's condition for these filters (None: no filter), `new_arrival` as of `today`."""
        since = (today - dt.date(1970, 1, 1)).days - new_days if self.new_arrival else None
        where = Where(
            price_min=None if self.price_start is None else float(self.price_start),
            price_max=None if self.price_end is None else float(self.price_end),
            flags=tuple(name for name in FLAG_COLUMNS if getattr(self, name)),
            new_since=since,
            keyword=self.keyword or None,
            category=self.cat_id or None,
        )
        return where or None

    def matches(self, offer: OfferFacts, today: dt.date, new_days: int) -> bool:
        if self.price_start is not None and offer.price < self.price_start:
            return False
        if self.price_end is not None and offer.price > self.price_end:
            return False
        for name in ("support_dropshipping", "is_factory", "verified_supplier", "free_shipping"):
            if getattr(self, name) and getattr(offer, name) is not True:
                return False
        if self.new_arrival:
            if offer.new_arrival is not None:
                return offer.new_arrival
            return offer.created_at is not None and (today - offer.created_at).days <= new_days
        return True


def _decimal(name: str, value: str | None) -> Decimal | None:
    if value is None or value.strip() == "":
        return None
    try:
        return Decimal(value.strip())
    except InvalidOperation:
        raise ParameterError(f'{name} must be a decimal number such as "19.90"; got {value!r}') from None


def check_category(cat_id: str, known: Collection[str]) -> None:
    """`cat_id` is a category id (a whole number, 1688's form, whether or not this catalog has it
    yet: then no offer matches) or one of the catalog's own category names (`known`, for paths
    imported as names). Anything else (`abc`, `-5`, `1.5`) is a mistake, answered as one rather
    than as an empty page."""
    if not cat_id or CATEGORY_ID.fullmatch(cat_id) or cat_id in known:
        return
    numbers = [c for c in known if CATEGORY_ID.fullmatch(c)]
    example = min(numbers, key=lambda c: (len(c), c)) if numbers else "1031887"
    names = " or one of this catalog's category names," if len(numbers) < len(known) else ""
    raise ParameterError(
        f"cat_id must be a category id, a whole number such as {example},{names} as data.cat_id and items' "
        f"category_path show them; got {cat_id!r}"
    )
