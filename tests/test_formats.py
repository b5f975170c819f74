"""Catalog formats (ingest/formats): each file written here in its exact column layout, its photos
served by a real HTTP server on loopback (luma photos), imported with the real pipeline."""

from __future__ import annotations

import csv
import functools
import http.server
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from conftest import LUMA, luma_offers, open_resources, profile_env, profile_settings
from snapsource.ingest.formats import FormatError, detect, open_source, stable_id
from snapsource.ingest.formats.mapping import parse_item_id
from snapsource.ingest.pipeline import DeleteMissing, IngestReport, ingest
from snapsource.offer import Item
from snapsource.resources import Resources

# Shopify's product export, classic and newer column names (help.shopify.com, "Using CSV files")
SHOPIFY_CLASSIC = (
    "Handle,Title,Body (HTML),Vendor,Product Category,Type,Tags,Published,Option1 Name,Option1 Value,Option2 Name,"
    "Option2 Value,Option3 Name,Option3 Value,Variant SKU,Variant Grams,Variant Inventory Tracker,Variant Inventory Qty,"
    "Variant Inventory Policy,Variant Fulfillment Service,Variant Price,Variant Compare At Price,Variant Requires Shipping,"
    "Variant Taxable,Variant Barcode,Image Src,Image Position,Image Alt Text,Gift Card,SEO Title,SEO Description,"
    "Google Shopping / Google Product Category,Google Shopping / Gender,Google Shopping / Age Group,Google Shopping / MPN,"
    "Google Shopping / Condition,Google Shopping / Custom Product,Variant Image,Variant Weight Unit,Variant Tax Code,"
    "Cost per item,Included / United States,Price / United States,Compare At Price / United States,"
    "Included / International,Price / International,Compare At Price / International,Status"
)
SHOPIFY_NEW = (
    "Title,URL handle,Description,Vendor,Product category,Type,Tags,Published on online store,Status,SKU,Barcode,"
    "Option1 name,Option1 value,Option1 Linked To,Option2 name,Option2 value,Option2 Linked To,Option3 name,Option3 value,"
    "Option3 Linked To,Price,Compare-at price,Cost per item,Charge tax,Tax code,Unit price total measure,"
    "Unit price total measure unit,Unit price base measure,Unit price base measure unit,Inventory tracker,"
    "Inventory quantity,Continue selling when out of stock,Weight value (grams),Weight unit for display,"
    "Requires shipping,Fulfillment service,Product image URL,Image position,Image alt text,Variant image URL,Gift card,"
    "SEO title,SEO description,Color (product.metafields.shopify.color-pattern),"
    "Google Shopping / Google product category,Google Shopping / Gender,Google Shopping / Age group,"
    "Google Shopping / Manufacturer part number (MPN),Google Shopping / Ad group name,Google Shopping / Ads labels,"
    "Google Shopping / Condition,Google Shopping / Custom product,Google Shopping / Custom label 0,"
    "Google Shopping / Custom label 1,Google Shopping / Custom label 2,Google Shopping / Custom label 3,"
    "Google Shopping / Custom label 4"
)
# WooCommerce's own sample export: plugins/woocommerce/sample-data/sample_products.csv, its header line as is
WOOCOMMERCE = (
    'ID,Type,SKU,Name,Published,"Is featured?","Visibility in catalog","Short description",Description,'
    '"Date sale price starts","Date sale price ends","Tax status","Tax class","In stock?",Stock,"Backorders allowed?",'
    '"Sold individually?","Weight (lbs)","Length (in)","Width (in)","Height (in)","Allow customer reviews?",'
    '"Purchase note","Sale price","Regular price",Categories,Tags,"Shipping class",Images,"Download limit",'
    '"Download expiry days",Parent,"Grouped products",Upsells,Cross-sells,"External URL","Button text",Position,'
    '"Attribute 1 name","Attribute 1 value(s)","Attribute 1 visible","Attribute 1 global","Attribute 2 name",'
    '"Attribute 2 value(s)","Attribute 2 visible","Attribute 2 global","Meta: _wpcom_is_markdown","Download 1 name",'
    '"Download 1 URL","Download 2 name","Download 2 URL"'
)


@pytest.fixture(scope="module")
def photos() -> Iterator[str]:
    """Base URL of the luma photos, served on 127.0.0.1 (a trusted file's URLs may point anywhere)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(LUMA.parent / "images"))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def table(header: str, rows: list[dict[str, str]], delimiter: str = ",") -> str:
    """A file's text: the header line as given, then each row's cells in the header's order."""
    names = next(csv.reader([header], delimiter=delimiter))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    for row in rows:
        assert set(row) <= set(names), set(row) - set(names)
        writer.writerow([row.get(name, "") for name in names])
    return header + "\n" + out.getvalue()


def stored(resources: Resources, item_id: int) -> tuple[dict, int]:
    """An offer's stored document and the number of images it shows."""
    state = resources.catalog.offer_state(item_id)
    assert state is not None, f"{item_id} was not imported"
    return json.loads(state[0]), len(state[1])


def problems(report: IngestReport) -> dict[int, str]:
    return {p.row: p.reason for p in report.problems}


# detection, without importing ---------------------------------------------------------------------


def test_formats_are_detected_from_the_content(tmp_path):
    offer = luma_offers()[0]
    envelope = {"code": 200, "msg": "success", "data": {"page": 1, "items": [Item.model_validate(offer).model_dump()]}}
    files = {
        "jsonl": json.dumps(offer) + "\n",
        "tmapi": json.dumps(envelope, indent=2, ensure_ascii=False),
        "csv": "item_id;title;img;price\n1;A;a.jpg;1,50\n",
        "tsv": "item_id\ttitle\timg\tprice\n1\tA\ta.jpg\t1.50\n",
        "shopify": table(SHOPIFY_NEW, [{"Title": "A", "URL handle": "a", "Price": "1"}]),
        "woocommerce": table(WOOCOMMERCE, [{"ID": "1", "Type": "simple", "Name": "A"}]),
    }
    for name, text in files.items():
        path = tmp_path / f"catalog.{name}"
        path.write_text(text)
        assert detect(path) == name, name
    (tmp_path / "one.txt").write_text(json.dumps(envelope) + "\n")  # an envelope a line
    (tmp_path / "bare.txt").write_text("\n".join(Item.model_validate(o).model_dump_json() for o in luma_offers()[:2]))
    (tmp_path / "bad-first.txt").write_text("{not json\n" + json.dumps(offer) + "\n")
    assert [detect(tmp_path / n) for n in ("one.txt", "bare.txt", "bad-first.txt")] == ["tmapi", "jsonl", "jsonl"]
    assert detect(tmp_path / "catalog.shopify") == "shopify" and detect(tmp_path / "catalog.woocommerce") == "woocommerce"

    (tmp_path / "notes.txt").write_text("just some notes\nabout nothing\n")
    (tmp_path / "book.xlsx").write_bytes(b"PK\x03\x04\x14\x00\x00\x00binary")
    for unknown in ("notes.txt", "book.xlsx"):
        with pytest.raises(FormatError, match="jsonl, csv, tsv, shopify, woocommerce or tmapi"):
            open_source(tmp_path / unknown)
    with pytest.raises(FormatError, match="unknown format 'xml'.*jsonl, csv, tsv, shopify, woocommerce or tmapi"):
        open_source(tmp_path / "catalog.csv", "xml")
    for bom, words in (
        (b"\xff\xfe\x00\x00", "is UTF-32 text"),
        (b"\x00\x00\xfe\xff", "is UTF-32 text"),
        (b"\xff\xfe", "is UTF-16 text"),
    ):
        (tmp_path / "wide.csv").write_bytes(bom + "a,b\n".encode("utf-16-le"))
        with pytest.raises(FormatError, match=words):
            open_source(tmp_path / "wide.csv")
    with pytest.raises(FormatError, match="no column for item_id, title"):
        open_source(tmp_path / "catalog.csv", "csv", {"columns": {"price": "price", "img": "img"}})
    with pytest.raises(FormatError, match="mapping applies to csv, tsv, shopify, woocommerce files only"):
        open_source(tmp_path / "catalog.jsonl", mapping={"constants": {"moq": 2}})
    with pytest.raises(FormatError, match="'shop_info.shop_name' is no catalog field"):
        open_source(tmp_path / "catalog.csv", mapping={"columns": {"title": "shop_info.shop_name"}})

    # a TSV whose header names catalog fields needs no mapping; an untrusted file reads no local path
    source = open_source(tmp_path / "catalog.tsv", trusted=False)
    assert source.base_dir is None and not source.trusted
    assert [(r.number, r.data) for r in source.rows()] == [(2, {"item_id": 1, "title": "A", "img": "a.jpg", "price": "1.50"})]
    assert open_source(tmp_path / "catalog.tsv").base_dir == tmp_path


def test_stable_ids_are_53_bit_and_never_random():
    ids = {stable_id(key) for key in ("blue-shirt", "red-shirt", "SKU-1", "sku-1", "")}
    assert len(ids) == 5 and all(0 < i < 2**53 for i in ids)  # exact in JavaScript's numbers
    assert stable_id("blue-shirt") == int.from_bytes(__import__("hashlib").sha256(b"blue-shirt").digest()[:8], "big") >> 11
    # a CSV's item_id cell: a number the stores hold as it is, anything else by its hash
    assert [parse_item_id(key) for key in ("42", " 42 ", "MJ-09", "9" * 20)] == [42, 42, stable_id("MJ-09"), stable_id("9" * 20)]


# each format imported ----------------------------------------------------------------------------


def test_csv_with_catalog_field_headers(tmp_path, photos):
    """No mapping: the header names the fields (dotted for nested ones); a quoted cell spanning lines
    keeps the later rows' numbers right; a bad row is reported by its line and the rest import."""
    rows = [
        {
            "item_id": "501",
            "title": "Prima Compete Bra Top",
            "img": photos + "wb04-blue_main.jpg",
            "images": f"{photos}wb04-blue_alt1.jpg|{photos}wb04-blue_back.jpg",
            "price": "$60.20",
            "price_info.origin_price": "63.99",
            "category_path": "Women > Tops > Bras",
            "shop_info.company_name": "Luma",
            "free_shipping": "yes",
            "notes": "first line\nsecond line\nthird line",
        },
        {"item_id": "502", "title": "Overnight Duffle", "img": photos + "wb07-brown-0.jpg", "price": "cheap"},
        {"item_id": "503", "title": "Portia Capri", "img": photos + "wp13-blue_main.jpg", "price": "1,234.5", "moq": "3"},
    ]
    header = "item_id,title,img,images,price,price_info.origin_price,category_path,shop_info.company_name,free_shipping,moq,notes"
    path = tmp_path / "catalog.csv"
    path.write_text(table(header, rows))
    resources = open_resources(tmp_path / "data")
    report = ingest(resources, path)
    assert report.added == 2 and report.rejected == 1, report.problems
    assert list(problems(report)) == [5]  # line 1 header, 2-4 the first row, 5 the second
    assert "column 'price' = 'cheap': not a price" in problems(report)[5]
    assert [p.item_id for p in report.problems if p.row == 5] == [502]  # its item_id was readable: kept
    doc, shown = stored(resources, 501)
    assert doc["price"] == "60.20" and doc["price_info"] == {"sale_price": "60.20", "origin_price": "63.99"}
    assert doc["category_path"] == ["Women", "Tops", "Bras"] and doc["shop_info"]["company_name"] == "Luma"
    assert doc["free_shipping"] is True and doc["sale_info"]["sale_quantity_int"] == 0 and shown == 3
    doc, shown = stored(resources, 503)
    assert doc["price"] == "1234.50" and doc["moq"] == 3 and doc["shop_info"]["company_name"] is None and shown == 1


def test_csv_mapping_with_decimal_commas_and_yes_no(tmp_path, photos):
    """A semicolon-separated export with German columns: a TOML mapping names the fields, a constant
    fills the shop, prices use decimal commas and currency signs, booleans say ja/nein."""
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        """
category_separator = "/"
[columns]
"Artikelnummer" = "item_id"
"Bezeichnung" = "title"
"Bild" = "img"
"Weitere Bilder" = "images"
"Preis" = "price"
"UVP" = "price_info.origin_price"
"Kategorie" = "category_path"
"Versandkostenfrei" = "free_shipping"
"Dropshipping" = "support_dropshipping"
"Mindestmenge" = "moq"
[constants]
"shop_info.company_name" = "Luma GmbH"
"shop_info.location" = ["Berlin"]
[prices]
decimal_comma = true
currency_signs = ["EUR"]
[booleans]
true = ["ja"]
false = ["nein"]
"""
    )
    header = "Artikelnummer;Bezeichnung;Bild;Weitere Bilder;Preis;UVP;Kategorie;Versandkostenfrei;Dropshipping;Mindestmenge;Lager"
    rows = [
        {
            "Artikelnummer": "7001",
            "Bezeichnung": "Nadia Elements Shell",
            "Bild": photos + "wj10-black_main.jpg",
            "Preis": "1.234,50 €",
            "UVP": "1.399,00 EUR",
            "Kategorie": "Damen/Jacken",
            "Versandkostenfrei": "ja",
            "Dropshipping": "Nein",
            "Mindestmenge": "10",
        },
        {"Artikelnummer": "7002", "Bezeichnung": "Hoodie", "Bild": photos + "mh06-black_main.jpg", "Preis": "12,9"},
        {
            "Artikelnummer": "7003",
            "Bezeichnung": "Shell",
            "Bild": photos + "mj09-blue_main.jpg",
            "Preis": "9,99",
            "Versandkostenfrei": "vielleicht",
        },
        {"Artikelnummer": "MJ-09", "Bezeichnung": "Tee", "Bild": photos + "ws09-blue_main.jpg", "Preis": "19.99"},
    ]
    path = tmp_path / "artikel.csv"
    path.write_text(table(header, rows, ";"))
    resources = open_resources(tmp_path / "data")
    report = ingest(resources, open_source(path, mapping=mapping))
    assert report.added == 2 and report.rejected == 2
    assert "'vielleicht': not one of ja (true) or nein (false)" in problems(report)[4]
    assert "looks like a decimal point: set decimal_comma = false" in problems(report)[5]
    doc, _ = stored(resources, 7001)
    assert doc["price"] == "1234.50" and doc["price_info"]["origin_price"] == "1399.00" and doc["moq"] == 10
    assert doc["category_path"] == ["Damen", "Jacken"] and doc["free_shipping"] is True and doc["support_dropshipping"] is False
    assert doc["shop_info"]["company_name"] == "Luma GmbH" and doc["shop_info"]["location"] == ["Berlin"]
    doc, _ = stored(resources, 7002)
    assert doc["price"] == "12.90" and doc["free_shipping"] is None  # an empty cell leaves the flag unknown


def shopify_classic(photos: str) -> str:
    rows = [
        # three variants (the lowest one on sale), photos given out of order, one variant photo
        {
            "Handle": "prima-bra",
            "Title": "Prima Compete Bra Top",
            "Body (HTML)": "<p>Light support.</p>\n<p>Quick dry.</p>",
            "Vendor": "Luma",
            "Product Category": "Apparel & Accessories > Clothing > Activewear",
            "Type": "Bra",
            "Option1 Name": "Size",
            "Option1 Value": "S",
            "Variant Price": "25.00",
            "Image Src": photos + "wb04-blue_back.jpg",
            "Image Position": "2",
            "Status": "active",
        },
        {"Handle": "prima-bra", "Option1 Value": "M", "Variant Price": "19.99", "Variant Compare At Price": "29.99"},
        {"Handle": "prima-bra", "Option1 Value": "L", "Variant Price": "22.00", "Variant Image": photos + "wb04-blue_alt1.jpg"},
        {"Handle": "prima-bra", "Image Src": photos + "wb04-blue_main.jpg", "Image Position": "1"},
        {
            "Handle": "overnight-duffle",
            "Title": "Overnight Duffle",
            "Vendor": "Luma",
            "Type": "Bags",
            "Variant Price": "45.00",
            "Image Src": photos + "wb07-brown-0.jpg",
            "Image Position": "1",
        },
        {"Handle": "gift-card", "Title": "Gift Card", "Image Src": photos + "wg03-gr-0.jpg"},  # no price: no offer
    ]
    return table(SHOPIFY_CLASSIC, rows)


@pytest.mark.profiles
def test_shopify_export_end_to_end(tmp_path, photos):
    """The classic export, found from its header: one offer a handle at its lowest variant price,
    photos by position then variant photos, the vendor as the shop; a product without a price is
    reported at its first line and the rest import."""
    path = tmp_path / "products_export_1.csv"
    path.write_text(shopify_classic(photos))
    resources = open_resources(tmp_path / "data")
    report = ingest(resources, path)
    assert report.added == 2 and report.rejected == 1
    assert list(problems(report)) == [8] and "no variant has a Variant Price" in problems(report)[8]  # body spans lines 2-3
    doc, shown = stored(resources, stable_id("prima-bra"))
    assert doc["title"] == "Prima Compete Bra Top" and doc["price"] == "19.99"
    assert doc["price_info"] == {"sale_price": "19.99", "origin_price": "29.99"}
    assert doc["category_path"] == ["Apparel & Accessories", "Clothing", "Activewear"]
    assert doc["img"].endswith("wb04-blue_main.jpg") and [p.rsplit("/", 1)[1] for p in doc["images"]] == [
        "wb04-blue_main.jpg",
        "wb04-blue_back.jpg",
        "wb04-blue_alt1.jpg",
    ]
    assert shown == 3 and doc["shop_info"]["company_name"] == "Luma" and doc["sale_info"]["sale_quantity_int"] == 0
    doc, shown = stored(resources, stable_id("overnight-duffle"))
    assert doc["price"] == "45.00" and doc["price_info"]["origin_price"] == "45.00" and doc["category_path"] == ["Bags"]

    # imported again: unchanged (the same ids, never random)
    again = ingest(resources, open_source(path, "shopify"))
    assert again.unchanged == 2 and again.added == 0


def test_shopify_newer_export(tmp_path, photos):
    rows = [
        {
            "Title": "Stark Fundamental Hoodie",
            "URL handle": "stark-hoodie",
            "Vendor": "Luma",
            "Product category": "Apparel & Accessories > Clothing > Hoodies",
            "Option1 name": "Color",
            "Option1 value": "Black",
            "Price": "42.00",
            "Compare-at price": "50.00",
            "Product image URL": photos + "mh06-black_main.jpg",
            "Image position": "1",
        },
        {
            "URL handle": "stark-hoodie",
            "Option1 value": "Blue",
            "Price": "40.00",
            "Variant image URL": photos + "mj09-blue_main.jpg",
        },
        {
            "Title": "Tiffany Fitness Tee",
            "URL handle": "tiffany-tee",
            "Price": "19.00",
            "Product image URL": photos + "ws09-blue_main.jpg",
        },
        {"URL handle": "stark-hoodie", "Price": "1.00"},  # its rows must stay together
    ]
    path = tmp_path / "products_export.csv"
    path.write_text(table(SHOPIFY_NEW, rows))
    resources = open_resources(tmp_path / "data")
    report = ingest(resources, path)
    assert report.added == 2 and report.rejected == 1
    assert "keep a product's rows together" in problems(report)[5]
    doc, shown = stored(resources, stable_id("stark-hoodie"))
    assert doc["price"] == "40.00" and doc["price_info"]["origin_price"] == "40.00"  # the lowest variant has no compare-at
    assert doc["category_path"] == ["Apparel & Accessories", "Clothing", "Hoodies"] and shown == 2

    # a numeric product ID, where an app's export has one, is the item_id
    path.write_text("ID,URL handle,Title,Price,Product image URL\n8123,tee,Tee,5,https://img.example/t.jpg\n")
    assert [r.data["item_id"] for r in open_source(path).rows()] == [8123]


def test_woocommerce_export(tmp_path, photos):
    """Variations fold into their parent (by id:NN or by SKU, wherever they are in the file); the
    parent's price is its lowest variation's; a grouped product and an orphan variation are
    reported by their lines and the rest import."""
    rows = [
        {"ID": "44", "Type": "variable", "SKU": "woo-vneck-tee", "Name": "V-Neck T-Shirt", "Published": "1",
         "Description": "A variable product,\nwith a line break.", "Categories": "Clothing > Tshirts, Sale",
         "Images": f"{photos}ws09-blue_main.jpg, {photos}wb04-blue_main.jpg"},
        {"ID": "46", "Type": "simple", "SKU": "woo-hoodie-logo", "Name": "Hoodie with Logo", "Regular price": "45",
         "Sale price": "42", "Categories": "Clothing > Hoodies", "Images": photos + "mh06-black_main.jpg"},
        {"ID": "87", "Type": "grouped", "SKU": "logo-collection", "Name": "Logo Collection", "Images": photos + "wg03-gr-0.jpg"},
        {"ID": "76", "Type": "variation", "SKU": "woo-vneck-tee-red", "Name": "V-Neck T-Shirt - Red", "Regular price": "20",
         "Parent": "id:44", "Images": photos + "wb04-blue_alt1.jpg"},
        {"ID": "77", "Type": "variation", "SKU": "woo-vneck-tee-green", "Name": "V-Neck T-Shirt - Green",
         "Regular price": "18", "Sale price": "15", "Parent": "woo-vneck-tee"},
        {"ID": "90", "Type": "variation", "SKU": "lost", "Name": "Lost", "Regular price": "5", "Parent": "woo-nothing"},
        {"ID": "91", "Type": "simple", "SKU": "ended-sale", "Name": "Ended Sale", "Regular price": "30", "Sale price": "10",
         "Date sale price ends": "2020-01-31 23:59:59", "Images": photos + "wj10-black_main.jpg"},
    ]  # fmt: skip
    path = tmp_path / "wc-product-export.csv"
    path.write_text(table(WOOCOMMERCE, rows))
    resources = open_resources(tmp_path / "data")
    report = ingest(resources, path)
    assert report.added == 3 and report.rejected == 1 and report.left_out == 1  # a grouped product is no offer, no failure
    assert "left out: a grouped product" in problems(report)[5] and "'woo-nothing', which is no product" in problems(report)[8]
    assert {p.row: p.item_id for p in report.problems} == {5: 87, 8: 90}  # both keep their ids
    doc, shown = stored(resources, 44)
    assert doc["title"] == "V-Neck T-Shirt" and doc["price"] == "15.00" and doc["price_info"]["origin_price"] == "18.00"
    assert doc["category_path"] == ["Clothing", "Tshirts"] and shown == 3  # its two photos and the red variation's
    doc, _ = stored(resources, 46)
    assert doc["price"] == "42.00" and doc["price_info"]["origin_price"] == "45.00"
    doc, _ = stored(resources, 91)
    assert doc["price"] == "30.00"  # the sale ended


def test_tmapi_answers(tmp_path, photos):
    """Saved answers: a pretty-printed envelope (items numbered by their line), JSON Lines of
    envelopes and of bare items (`client search --json`); every TMAPI field kept as given, repeats
    read once, a failed answer reported."""
    items = []
    for offer, name in zip(luma_offers()[:3], ("wb04-blue_main.jpg", "wb07-brown-0.jpg", "wj10-black_main.jpg")):
        items.append(Item.model_validate({**offer, "img": photos + name}).model_dump(mode="json"))
    envelope = {"code": 200, "msg": "success", "data": {"page": 1, "page_size": 20, "items": items[:2]}}
    pretty = tmp_path / "answer.json"
    pretty.write_text(json.dumps(envelope, indent=2, ensure_ascii=False))
    lines = tmp_path / "answers.jsonl"
    failed = {"code": 439, "msg": "Subscription expired", "data": None}
    lines.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in (envelope, failed, items[2], items[0])) + "\n")

    source = open_source(pretty)
    numbered = [(r.number, r.data["item_id"]) for r in source.rows()]
    text = pretty.read_text().splitlines()
    assert [text[n - 1].strip() for n, _ in numbered] == ["{", "{"]
    assert [text[n].strip() for n, _ in numbered] == [f'"item_id": {items[0]["item_id"]},', f'"item_id": {items[1]["item_id"]},']

    resources = open_resources(tmp_path / "data")
    report = ingest(resources, lines)
    assert report.rows == 4 and report.added == 3 and report.rejected == 1  # the repeat of items[0] is read once
    assert "failed answer (code 439" in problems(report)[2]
    doc, _ = stored(resources, items[0]["item_id"])
    assert {k: doc[k] for k in Item.model_fields} == items[0]  # sales, shop, rating: as saved, nothing invented
    assert doc["support_dropshipping"] is None and doc["created_at"] is None


def test_cli_ingest_takes_format_and_mapping(tmp_path, photos):
    path = tmp_path / "feed.txt"
    path.write_text(
        table(
            "sku,name,picture,cost",
            [{"sku": "9001", "name": "Clamber Watch", "picture": photos + "wg03-gr-0.jpg", "cost": "54,00"}],
        )
    )
    mapping = tmp_path / "feed.json"
    mapping.write_text(
        json.dumps(
            {"columns": {"sku": "item_id", "name": "title", "picture": "img", "cost": "price"}, "prices": {"decimal_comma": True}}
        )
    )
    env = {**os.environ, **profile_env(profile_settings()), "COLUMNS": "200"}
    cli = [sys.executable, "-m", "snapsource", "ingest", str(path), "--data", str(tmp_path / "d")]
    run = subprocess.run([*cli, "--format", "csv", "--mapping", str(mapping)], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert "rows 1: added 1" in run.stderr

    wrong = subprocess.run([*cli, "--format", "shopify"], capture_output=True, text=True, env=env)
    assert wrong.returncode == 2 and "not a Shopify product export: no Handle or URL handle" in wrong.stderr
    unmapped = subprocess.run([*cli, "--data", str(tmp_path / "new")], capture_output=True, text=True, env=env)
    assert unmapped.returncode == 2 and "no column for item_id" in unmapped.stderr and "--mapping" in unmapped.stderr
    assert not (tmp_path / "new").exists()
    found = subprocess.run(
        [*cli, "--mapping", str(mapping), "--data", str(tmp_path / "d2")], capture_output=True, text=True, env=env
    )
    assert found.returncode == 0 and "format: csv (found from the content" in found.stderr, found.stderr

    header_only = tmp_path / "empty.csv"
    header_only.write_text("item_id,title,img,price\n")
    empty = subprocess.run(
        [sys.executable, "-m", "snapsource", "ingest", str(header_only), "--data", str(tmp_path / "e")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert empty.returncode != 0 and "nothing imported" in empty.stderr, empty.stderr

    # the problem table prints reasons as they are: "[prices]" is not console markup
    dotted = tmp_path / "dotted.csv"
    dotted.write_text(
        table("sku,name,picture,cost", [{"sku": "9002", "name": "W", "picture": photos + "wg03-gr-0.jpg", "cost": "54.00"}])
    )
    hint = subprocess.run(
        [sys.executable, "-m", "snapsource", "ingest", str(dotted), "--mapping", str(mapping), "--data", str(tmp_path / "h")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert "set decimal_comma = false under [prices] in the mapping" in hint.stderr, hint.stderr


def test_a_windows_1252_csv_is_refused_not_garbled(tmp_path, photos):
    """Excel's plain "CSV" is Windows-1252: read as UTF-8 its é would become a replacement character
    in every title, silently; the file is refused with how to save it instead."""
    path = tmp_path / "latin.csv"
    path.write_bytes(
        table(
            "item_id,title,img,price",
            [{"item_id": "705", "title": "Latin1 café", "img": photos + "wg03-gr-0.jpg", "price": "9.00"}],
        ).encode("cp1252")
    )
    with pytest.raises(FormatError, match=r'latin.csv: not UTF-8 text \(line 2, .*"CSV UTF-8"'):
        open_source(path)


@pytest.mark.profiles
def test_unpublished_and_hidden_products_are_left_out(tmp_path, photos):
    """WooCommerce's drafts (Published 0), private products (-1) and hidden ones, and Shopify's
    draft and archived products and those not published, are not imported (nor searchable) unless
    the mapping says include_unpublished; they are no failures, so --delete-missing runs on such an
    export and removes the offers that left the shop's catalog."""
    img = photos + "mh06-black_main.jpg"
    woo = [
        {"ID": "46", "Type": "simple", "Name": "Shown", "Published": "1", "Regular price": "45", "Images": img},
        {"ID": "47", "Type": "simple", "Name": "Draft", "Published": "0", "Regular price": "45", "Images": img},
        {"ID": "48", "Type": "simple", "Name": "Private", "Published": "-1", "Regular price": "45", "Images": img},
        {"ID": "49", "Type": "simple", "Name": "Hidden", "Published": "1", "Visibility in catalog": "hidden",
         "Regular price": "45", "Images": img},
        {"ID": "87", "Type": "grouped", "SKU": "logo-collection", "Name": "Logo Collection", "Images": img},
    ]  # fmt: skip
    path = tmp_path / "wc-product-export.csv"
    path.write_text(table(WOOCOMMERCE, woo))
    keep_all = tmp_path / "keep.json"
    keep_all.write_text(json.dumps({"include_unpublished": True}))
    resources = open_resources(tmp_path / "data")
    report = ingest(resources, open_source(path, mapping=keep_all))
    assert report.added == 4 and report.left_out == 1 and resources.catalog.offer_ids() == {46, 47, 48, 49}

    report = ingest(resources, path, delete_missing=DeleteMissing(confirmed=True))
    assert report.left_out == 4 and report.rejected == 0 and report.unchanged == 1
    assert "Published 0: a draft" in problems(report)[3] and "Published -1: private" in problems(report)[4]
    assert "Visibility in catalog hidden" in problems(report)[5] and "include_unpublished = true" in problems(report)[5]
    assert report.deleted == 3 and resources.catalog.offer_ids() == {46}

    shopify = [
        {"Handle": "shown", "Title": "Shown", "Variant Price": "5", "Image Src": img, "Published": "TRUE", "Status": "active"},
        {"Handle": "draft", "Title": "Draft", "Variant Price": "5", "Image Src": img, "Published": "TRUE", "Status": "draft"},
        {"Handle": "archived", "Title": "Old", "Variant Price": "5", "Image Src": img, "Status": "archived"},
        {"Handle": "unpublished", "Title": "Off", "Variant Price": "5", "Image Src": img, "Published": "FALSE"},
    ]
    path = tmp_path / "products_export.csv"
    path.write_text(table(SHOPIFY_CLASSIC, shopify))
    resources = open_resources(tmp_path / "shop")
    report = ingest(resources, path)
    assert report.added == 1 and report.left_out == 3 and resources.catalog.offer_ids() == {stable_id("shown")}
    assert "Status draft" in problems(report)[3] and "Status archived" in problems(report)[4]
    assert "Published FALSE" in problems(report)[5]
    assert ingest(resources, open_source(path, mapping=keep_all)).added == 3


def test_saved_answers_with_an_item_out_of_range_reject_that_item_only(tmp_path, photos):
    """A saved TMAPI answer whose one item counts 10^29 sales, or carries a 5,000-digit number:
    that row is rejected with the reason, the other items import."""
    items = [
        Item.model_validate({**offer, "img": photos + name}).model_dump(mode="json")
        for offer, name in zip(luma_offers()[:2], ("wb04-blue_main.jpg", "wb07-brown-0.jpg"))
    ]
    items[1]["sale_info"] = {"sale_quantity": "1" * 30, "sale_quantity_int": 10**29, "orders_count": 1}
    answer = {"code": 200, "msg": "success", "data": {"page": 1, "items": items}}
    path = tmp_path / "answers.jsonl"
    path.write_text(json.dumps(answer) + "\n" + '{"item_id": 3, "moq": ' + "7" * 5000 + "}\n")
    resources = open_resources(tmp_path / "data")
    report = ingest(resources, path)
    assert report.added == 1 and report.rejected == 2 and resources.catalog.offer_ids() == {items[0]["item_id"]}
    assert "sale_info.sale_quantity_int: Input should be less than or equal to" in problems(report)[1]
    assert "a number of more than 4,300 digits" in problems(report)[2]
