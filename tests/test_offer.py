"""The item schema accepts what catalogs hold and answers in the spec's types."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from conftest import luma_offers
from snapsource.offer import ITEM_FIELDS, Item, OfferRecord, wire_item


def test_minimal_offer_gets_every_field_with_spec_types():
    record = OfferRecord.model_validate({"item_id": 5, "title": "Mug", "images": ["a.jpg", "b.jpg"], "price": 3.5})
    item = record.item().model_dump(mode="json")
    assert tuple(item) == ITEM_FIELDS
    assert item["img"] == "a.jpg" and record.image_refs() == ["a.jpg", "b.jpg"]
    assert item["price"] == "3.50" and item["price_info"] == {"sale_price": "3.50", "origin_price": "3.50"}
    assert item["sale_info"] == {"sale_quantity": "0", "sale_quantity_int": 0, "orders_count": 0}


def test_sales_fields_agree():
    record = OfferRecord.model_validate(
        {"item_id": 5, "title": "t", "img": "a.jpg", "price": "1", "sale_info": {"sale_quantity": "42"}}
    )
    assert record.sale_info.sale_quantity_int == 42


@pytest.mark.parametrize("bad", [{"price": "cheap"}, {"price": "-1"}, {"item_id": 0}, {"title": ""}, {"img": None, "images": []}])
def test_invalid_offers(bad):
    with pytest.raises(ValidationError):
        OfferRecord.model_validate({"item_id": 5, "title": "t", "img": "a.jpg", "price": "1", **bad})


def test_stored_documents_answer_as_the_validated_item():
    """Answers read stored documents without validating them again: the same item, field for field."""
    for raw in luma_offers():
        doc = OfferRecord.model_validate(raw).model_dump_json()
        assert wire_item(doc) == Item.model_validate_json(doc).model_dump(mode="json")
        assert tuple(wire_item(doc)) == ITEM_FIELDS
    legacy = {"item_id": 5, "title": "Mug", "img": "a.jpg", "price": "3.5"}  # a document missing fields
    assert tuple(wire_item(json.dumps(legacy))) == ITEM_FIELDS
