"""Filters act inside the vector search: columns say which images a filter keeps, the same
answer the per-offer check gives, and a filter that keeps few offers still fills the candidates."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from decimal import Decimal

import numpy as np
import pytest

from conftest import luma_offers, main_image_url, with_settings
from snapsource import search
from snapsource.search import FLAGS, Filters, queries
from snapsource.store.columns import Where


def test_columns_agree_with_the_per_offer_check(resources):
    columns = resources.columns.current()
    facts = resources.catalog.facts(columns.item_id.tolist())
    today = dt.date(2026, 11, 27)
    prices = [None, Decimal("19.9"), Decimal("60.20"), Decimal("100")]
    cases = [Filters(price_start=lo, price_end=hi) for lo, hi in itertools.product(prices, prices) if not (lo and hi and lo > hi)]
    cases += [Filters(**{flag: True}) for flag in FLAGS]
    cases += [Filters(price_end=Decimal("80"), **{flag: True for flag in FLAGS})]
    for filters in cases:
        vectorised = columns.offers_matching(filters.where(today, 30) or Where())
        one_by_one = [filters.matches(facts[item_id], today, 30) for item_id in columns.item_id.tolist()]
        assert vectorised.tolist() == one_by_one, filters
    kept = columns.select(Filters(is_factory=True).where(today, 30))
    shown = {image for image, item in zip(columns.pair_image, columns.pair_offer) if facts[int(columns.item_id[item])].is_factory}
    assert set(np.flatnonzero(kept.images).tolist()) == shown
    assert set(kept.offers.tolist()) == {i for i, f in facts.items() if f.is_factory}


def test_the_store_condition_is_what_the_filters_say():
    today = dt.date(2026, 11, 27)
    assert Filters().where(today, 30) is None  # nothing to select: the whole catalog
    where = Filters(price_start=Decimal("10.5"), is_factory=True, new_arrival=True).where(today, 30)
    assert where == Where(price_min=10.5, flags=("is_factory",), new_since=(today - dt.date(1970, 1, 1)).days - 30)


def test_a_selective_filter_still_fills_the_candidates(resources):
    """With room for 8 candidates, a filter applied after the search kept only those of the 8
    most similar that pass; inside the search it finds 8 that pass."""
    small = with_settings(resources, candidate_cap=8, rerank_k=0, similarity_margin=0)  # every offer over the threshold
    offer = luma_offers()[0]
    query = queries.known(small, main_image_url(resources, offer).split("/")[-1].split(".")[0])
    expensive = Filters(price_start=Decimal("150"))
    columns = resources.columns.current()
    matching = int(columns.offers_matching(expensive.where(dt.date.today(), 30)).sum())
    assert 8 < matching < len(columns.item_id) / 4  # selective, and more than the cap
    page = search.run(small, query.analysis.vectors, filters=expensive, page_size=20)
    assert page.total_count == 8 and all(Decimal(hit.item.price) >= 150 for hit in page.hits)
    unfiltered = search.run(small, query.analysis.vectors, page_size=20)
    assert sum(Decimal(hit.item.price) >= 150 for hit in unfiltered.hits) < 8  # what filtering afterwards gave


def test_columns_follow_the_catalog(resources, tmp_path):
    before = resources.catalog.version()
    resources.catalog.db.execute("UPDATE offers SET sales = sales WHERE item_id = ?", (luma_offers()[0]["item_id"],))
    assert resources.catalog.version() > before  # the trigger counted it: columns reload on next use
    assert resources.columns.current() is resources.columns.current()


def test_a_large_catalog_reloads_its_columns_in_the_background(resources, monkeypatch):
    from snapsource.store import columns as columns_mod
    from snapsource.store.columns import OfferColumns

    monkeypatch.setattr(columns_mod, "BACKGROUND_FROM", 1)  # the luma catalog counts as large
    offers = OfferColumns(resources.catalog)
    first = offers.current()  # the first load is always done at once
    item_id = int(first.item_id[0])
    old_sales = int(first.sales[0])
    try:
        resources.catalog.db.execute("UPDATE offers SET sales = sales + 1000 WHERE item_id = ?", (item_id,))
        assert offers.current() is first  # a search meanwhile uses the columns it has
        deadline = time.monotonic() + 10
        while offers.current() is first and time.monotonic() < deadline:
            time.sleep(0.02)
        assert int(offers.current().sales[0]) == old_sales + 1000
    finally:
        resources.catalog.db.execute("UPDATE offers SET sales = sales - 1000 WHERE item_id = ?", (item_id,))


@pytest.mark.profiles
def test_columns_read_one_state_of_the_catalog(resources):
    """The columns' reads share a snapshot: a change committed between two of them (an import's
    chunk) shows in neither, else images pair with offers the first read did not see (HTTP 500s
    in `bench catalog` during a 100,000-offer job, before)."""
    catalog = resources.catalog
    item_id = luma_offers()[0]["item_id"]

    def change() -> None:
        catalog.db.execute("UPDATE offers SET sales = sales WHERE item_id = ?", (item_id,))

    with catalog.snapshot() as db:
        seen = int(db.execute("SELECT n FROM catalog_version").fetchone()[0])
        writer = threading.Thread(target=change)  # its own connection, as another request's
        writer.start()
        writer.join(30)
        assert not writer.is_alive()
        assert int(db.execute("SELECT n FROM catalog_version").fetchone()[0]) == seen
    assert catalog.version() > seen
    columns = resources.columns.current()
    stored = {tuple(pair) for pair in catalog.db.execute("SELECT item_id, image_id FROM offer_images").fetchall()}
    assert set(zip(columns.item_id[columns.pair_offer].tolist(), columns.pair_image.tolist())) == stored
