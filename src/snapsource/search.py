"""Search by image, without any HTTP: query vector -> candidates -> filters -> sort -> page.

Candidates are the offers whose best image reaches `similarity_threshold`, at most
`candidate_cap` of them, most similar first. Filters and sorts then apply to that set, so
`total_count` is the number of candidates left after filters, and every sort pages over the
same set. Ties are broken by similarity, then item_id, so pages never overlap or skip.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal, InvalidOperation
from enum import StrEnum

import numpy as np

from .catalog import OfferFacts, StoredImage
from .errors import ParameterError
from .offer import Item
from .resources import Resources

MAX_PAGE_SIZE = 20


class Sort(StrEnum):
    default = "default"
    sales = "sales"
    price_up = "price_up"
    price_down = "price_down"


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

    def __post_init__(self) -> None:
        for name in ("price_start", "price_end"):
            value = getattr(self, name)
            if value is not None and (not value.is_finite() or value < 0):
                raise ParameterError(f"{name} must be a non-negative decimal number such as \"19.90\"")
        if self.price_start is not None and self.price_end is not None and self.price_start > self.price_end:
            raise ParameterError(f"price_start ({self.price_start}) is greater than price_end ({self.price_end})")

    @classmethod
    def from_params(cls, price_start: str | None = None, price_end: str | None = None, **flags: bool) -> Filters:
        """Filters from request parameters: prices as decimal strings, empty meaning absent."""
        return cls(price_start=_decimal("price_start", price_start), price_end=_decimal("price_end", price_end), **flags)

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
        raise ParameterError(f"{name} must be a decimal number such as \"19.90\"; got {value!r}") from None


@dataclasses.dataclass(frozen=True)
class Hit:
    item: Item
    score: float
    image: StoredImage

    def wire(self, base_url: str) -> dict[str, object]:
        """The item as the API returns it, `img` made absolute with `base_url`."""
        item = self.item.model_dump(mode="json")
        item["img"] = base_url + item["img"]
        return item


@dataclasses.dataclass(frozen=True)
class Page:
    page: int
    page_size: int
    sort: Sort
    filters: Filters
    total_count: int
    hits: list[Hit]

    @property
    def has_next_page(self) -> bool:
        return self.page * self.page_size < self.total_count


def candidates(resources: Resources, vector: np.ndarray) -> list[tuple[int, float]]:
    """(item_id, best image similarity) of offers over the threshold, best first, capped."""
    settings, index = resources.settings, resources.index
    cap, threshold = settings.candidate_cap, settings.similarity_threshold
    total = len(index)
    k = min(total, max(4 * cap, 256))
    while True:
        scores, ids = index.search(vector, k)
        keep = scores >= threshold
        scores, ids = scores[keep], ids[keep]
        best: dict[int, float] = {}
        score_of = dict(zip(ids.tolist(), scores.tolist()))
        for image_id, item_id in resources.catalog.offers_for_images(ids.tolist()):
            score = score_of[image_id]
            if score > best.get(item_id, -2.0):
                best[item_id] = score
        exhausted = k >= total or len(ids) < k
        if len(best) >= cap or exhausted:
            break
        k = min(total, k * 4)
    ranked = sorted(best.items(), key=lambda pair: (-pair[1], pair[0]))
    return ranked[:cap]


def _sort_key(sort: Sort):
    if sort is Sort.sales:
        return lambda c: (-c[1].sales, -c[2], c[0])
    if sort is Sort.price_up:
        return lambda c: (c[1].price, -c[2], c[0])
    if sort is Sort.price_down:
        return lambda c: (-c[1].price, -c[2], c[0])
    return lambda c: (-c[2], c[0])


def run(
    resources: Resources,
    vector: np.ndarray,
    *,
    page: int = 1,
    page_size: int = MAX_PAGE_SIZE,
    sort: Sort = Sort.default,
    filters: Filters = Filters(),
    today: dt.date | None = None,
) -> Page:
    if page < 1:
        raise ParameterError("page must be 1 or greater")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ParameterError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
    today = today or dt.date.today()
    found = candidates(resources, vector)
    facts = resources.catalog.facts([item_id for item_id, _ in found])
    kept = [
        (item_id, facts[item_id], score)
        for item_id, score in found
        if item_id in facts and filters.matches(facts[item_id], today, resources.settings.new_arrival_days)
    ]
    kept.sort(key=_sort_key(sort))
    window = kept[(page - 1) * page_size : page * page_size]
    docs = resources.catalog.documents([item_id for item_id, _, _ in window])
    hits = []
    for item_id, _, score in window:
        if item_id not in docs:  # deleted by a concurrent import
            continue
        doc, image = docs[item_id]
        item = Item.model_validate_json(doc)
        item.img = f"/img/{image.name}"
        hits.append(Hit(item, score, image))
    return Page(page, page_size, sort, filters, len(kept), hits)
