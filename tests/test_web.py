"""The search page and the console in real headless Chromium (Debian's, driven by Playwright).

Screenshots are kept in build/web/ (ignored by git) as the test's artifacts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from conftest import LUMA, ROOT, luma_offers, main_image_url, with_settings
from imageserver import ImageServer, grocery_photo
from snapsource.api.app import create_app
from snapsource.config import Settings
from snapsource.store.category_names import CategoryNames
from snapsource.tools import composites
from snapsource.tools.loopback import serve
from snapsource.vision import objects
from snapsource.vision.localise import Box

CHROMIUM = Path(os.environ.get("SNAPSOURCE_CHROMIUM", "/usr/bin/chromium"))
SHOTS = ROOT / "build" / "web"
ADMIN_KEY = "web-console-key-9c2e"
CATEGORIES = LUMA.parent / "categories.json"


@pytest.fixture(scope="module")
def site(resources) -> Iterator[str]:
    """The catalog served with the admin API on, loopback image URLs allowed (the URL box) and
    luma's category names."""
    opened = with_settings(resources, admin_key=ADMIN_KEY, fetch_allow="127.0.0.0/8", categories=str(CATEGORIES))
    opened = dataclasses.replace(opened, category_names=CategoryNames.load(CATEGORIES))
    with serve(create_app(resources=opened)) as url:
        yield url
    opened.fetcher.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: `apt-get install chromium chromium-driver` (.ci/run does)"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture()
def page(browser, site, token) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=site)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto(f"/#token={token}")  # how `snapsource info` hands the token over
    yield opened
    context.close()
    assert errors == []  # no script failed along the way


def screenshot(index: int, tmp_path: Path) -> Path:
    """A luma offer's photo as a user would hold it: smaller, off-centre on a grey page, new bytes."""
    photo = Image.open(LUMA.parent / luma_offers()[index]["img"]).convert("RGB")
    photo.thumbnail((480, 480))
    canvas = Image.new("RGB", (900, 800), (236, 238, 240))
    canvas.paste(photo, (120, 140))
    path = tmp_path / f"screenshot-{index}.jpg"
    canvas.save(path, quality=88)
    return path


def cards(page: Page):
    return page.locator("#results .card")


def settled(page: Page) -> None:
    """The search the address names has answered (render() marks the page busy until then)."""
    page.wait_for_function("() => !document.body.hasAttribute('aria-busy')")


def prices(page: Page) -> list[Decimal]:
    texts = page.locator("#results .card .price").evaluate_all("nodes => nodes.map(n => n.firstChild.textContent)")
    return [Decimal(t.lstrip("¥")) for t in texts]


def offers_shown(page: Page) -> int:
    """The total the status line reports: "185 offers · page 1 of 10"."""
    found = re.match(r"(\d+) offers?\b", page.locator("#status").text_content())
    assert found, page.locator("#status").text_content()
    return int(found.group(1))


def test_upload_a_photo_filter_sort_and_page(page: Page, site: str, tmp_path):
    # The first offer is a factory's; capping the price at its own keeps it in the filtered results
    # (its photo finds it) and leaves the dearer offers out: the cap comes from the catalog.
    query = luma_offers()[0]
    assert query["shop_info"]["is_factory"] is True
    cap = Decimal(query["price"])
    expect(page).to_have_url(re.compile(r"/$"))  # the token left the address at once
    page.set_input_files("#file", str(screenshot(0, tmp_path)))
    expect(cards(page).first).to_be_visible(timeout=30_000)
    expect(page).to_have_url(re.compile(r"img_url=%2Fimg%2F[0-9a-f]{64}"))
    assert cards(page).count() == 20
    first = cards(page).first
    expect(first.locator(".title")).not_to_be_empty()
    expect(first.locator(".shop")).not_to_be_empty()
    assert first.locator(".title").get_attribute("href").startswith("http")
    expect(page.locator("#boxes rect.used")).to_have_count(1)  # the box searched, drawn on the photo
    expect(page.locator("#status")).to_contain_text("offers")
    everything = offers_shown(page)
    assert everything > 20  # more than a page: the pager has somewhere to go
    page.screenshot(path=SHOTS / "search.png", full_page=True)

    page.check("#filters [name=is_factory]")
    expect(page).to_have_url(re.compile(r"is_factory=true"))
    settled(page)
    assert cards(page).count() == page.locator("#results .card .badge.factory").count() > 0
    factories = offers_shown(page)
    assert factories < everything

    page.check("#filters [value=price_up]")
    expect(page).to_have_url(re.compile(r"sort=price_up"))
    settled(page)
    shown = prices(page)
    assert shown == sorted(shown) and len(shown) > 1
    assert offers_shown(page) == factories  # a sort reorders, it leaves nothing out

    page.fill("#filters [name=price_end]", str(cap))
    page.press("#filters [name=price_end]", "Enter")
    expect(page).to_have_url(re.compile(rf"price_end={re.escape(str(cap))}"))
    settled(page)
    capped = prices(page)
    assert capped and max(capped) <= cap and capped == sorted(capped)
    assert cards(page).count() == page.locator("#results .card .badge.factory").count()  # still factories only
    assert 0 < offers_shown(page) < factories
    ids = cards(page).evaluate_all("nodes => nodes.map(n => n.dataset.itemId)")
    assert str(query["item_id"]) in ids, ids  # the photo's own offer passes both filters

    page.fill("#filters [name=price_end]", "")
    page.press("#filters [name=price_end]", "Enter")
    expect(page).not_to_have_url(re.compile(r"price_end"))
    page.uncheck("#filters [name=is_factory]")
    expect(page).not_to_have_url(re.compile(r"is_factory"))
    settled(page)
    assert offers_shown(page) == everything  # every filter off: all the offers again
    first_page = cards(page).first.get_attribute("data-item-id")
    page.click("#next")
    expect(page).to_have_url(re.compile(r"page=2"))
    expect(page.locator("#page-info")).to_contain_text("Page 2 of")
    assert cards(page).first.get_attribute("data-item-id") != first_page
    page.go_back()  # the address is the search: Back shows page 1 again
    expect(page.locator("#page-info")).to_contain_text("Page 1 of")
    expect(cards(page).first).to_have_attribute("data-item-id", first_page)

    shared = page.url  # a shared address opens the same search
    other = page.context.new_page()
    other.goto(shared)
    expect(other.locator("#results .card").first).to_have_attribute("data-item-id", first_page)
    other.close()


def test_draw_a_region_and_switch_back(page: Page, tmp_path):
    page.set_input_files("#file", str(screenshot(3, tmp_path)))
    expect(cards(page).first).to_be_visible(timeout=30_000)
    box = page.locator("#boxes").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.6, steps=5)
    page.mouse.up()
    expect(page).to_have_url(re.compile(r"region=\d+%2C\d+%2C\d+%2C\d+"))
    settled(page)
    expect(page.locator("#boxes rect.used")).to_have_count(1)
    drawn = page.locator("#boxes rect.used").bounding_box()
    assert abs(drawn["width"] - box["width"] * 0.3) < box["width"] * 0.05  # the box the user drew
    page.click("#whole")
    expect(page).not_to_have_url(re.compile(r"region="))


def test_paste_drop_and_url_each_start_a_search(page: Page, site: str):
    photo = grocery_photo(5).read_bytes()
    # a pasted screenshot and a dropped file arrive as File objects in a DataTransfer
    for kind in ("paste", "drop"):
        page.goto("/")
        page.evaluate(
            """async ([kind, bytes]) => {
                const data = new DataTransfer();
                data.items.add(new File([new Uint8Array(bytes)], "shot.jpg", {type: "image/jpeg"}));
                const event = kind === "paste"
                    ? new ClipboardEvent("paste", {clipboardData: data, bubbles: true})
                    : new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true});
                document.body.dispatchEvent(event);
            }""",
            [kind, list(photo)],
        )
        expect(cards(page).first).to_be_visible(timeout=30_000)
        expect(page).to_have_url(re.compile(r"img_url="))
    result_photo = page.locator("#results .card .thumb img").first.evaluate("img => img.src")
    page.goto("/")
    page.evaluate(  # a result's photo dragged back in: searched by its path, nothing fetched
        """(address) => {
            const data = new DataTransfer();
            data.setData("text/uri-list", address);
            document.body.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
        }""",
        result_photo,
    )
    expect(page).to_have_url(re.compile(r"img_url=%2Fimg%2F[0-9a-f]{64}"))
    expect(cards(page).first).to_be_visible(timeout=30_000)
    with ImageServer(photo, photo).running() as images:
        page.goto("/")
        page.fill("#url", images + "/photo.jpg")
        page.click("#url-form button")
        expect(cards(page).first).to_be_visible(timeout=30_000)
        page.goto("/")
        page.fill("#url", images + "/page.jpg")  # HTML that calls itself a JPEG
        page.click("#url-form button")
        expect(page.locator("#status.error")).to_contain_text("not an image")


def test_phone_width_and_a_missing_token(browser, site, token, tmp_path):
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=site, is_mobile=True)
    phone = context.new_page()
    answer = phone.goto("/")
    assert "script-src" not in answer.headers["content-security-policy"]  # default-src 'self': our scripts only
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")
    expect(phone.locator("#status")).to_contain_text("API token")
    phone.fill("#token", token)
    phone.click("#token-form button")
    phone.set_input_files("#file", str(screenshot(1, tmp_path)))
    expect(phone.locator("#results .card").first).to_be_visible(timeout=30_000)
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing wider than the phone
    assert phone.locator("#results .card").first.bounding_box()["width"] < 200  # two cards a row
    phone.screenshot(path=SHOTS / "search-phone.png", full_page=False)
    phone.fill("#token", "ss_wrong")
    phone.click("#token-form button")
    expect(phone.locator("#status.error")).to_contain_text("Set your API token")
    context.close()


def test_console_creates_and_revokes_a_token(browser, site):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=site)
    console = context.new_page()
    console.on("dialog", lambda dialog: dialog.accept())  # "Revoke …?"
    console.goto("/console")
    console.fill("#admin-key", "not-the-key")
    console.click("#sign-in-form button")
    expect(console.locator("#status.error")).to_contain_text("admin key")
    console.fill("#admin-key", ADMIN_KEY)
    console.click("#sign-in-form button")
    expect(console.locator("#signed-in")).to_be_visible()

    console.fill("#create-form [name=name]", "web-console")
    console.fill("#create-form [name=quota]", "100")
    console.fill("#create-form [name=qps]", "5")
    console.click("#create-form button")
    expect(console.locator("#secret")).to_be_visible()
    secret = console.locator("#secret-value").text_content()
    assert secret.startswith("ss_")
    row = console.locator("#tokens tbody tr", has_text="web-console")
    expect(row).to_have_count(1)
    expect(row.locator("td.scopes")).to_have_text("search")  # the form's default scope
    token_id = row.get_attribute("data-token-id")

    # the new token works
    answer = httpx.post(
        f"{site}/1688/tools/image/upload", params={"apiToken": secret}, files={"file": ("p.jpg", grocery_photo(2).read_bytes())}
    )
    assert answer.status_code == 200, answer.text

    console.select_option("#usage-form [name=name]", "web-console")
    expect(console.locator("#usage-total")).to_contain_text("1 call,")
    expect(row.locator("td").nth(3)).to_have_text("1")  # calls used, read again
    expect(console.locator("#chart rect.calls[data-calls='1']")).to_have_count(1)
    console.screenshot(path=SHOTS / "console.png", full_page=True)

    console.locator(f"#tokens tr[data-token-id='{token_id}'] button.revoke").click()
    expect(console.locator(f"#tokens tr[data-token-id='{token_id}']")).to_have_class("revoked")
    refused = httpx.post(f"{site}/1688/tools/image/upload", params={"apiToken": secret}, files={"file": ("p.jpg", b"x")})
    assert refused.status_code == 401 and "revoked" in refused.json()["msg"]

    # a token for the catalog API only, by the form's scope choice
    console.fill("#create-form [name=name]", "web-catalog")
    console.select_option("#create-form [name=scopes]", "catalog")
    console.click("#create-form button")
    expect(console.locator("#tokens tbody tr", has_text="web-catalog").locator("td.scopes")).to_have_text("catalog")
    catalog_secret = console.locator("#secret-value").text_content()
    assert httpx.get(f"{site}/catalog/offers", params={"apiToken": catalog_secret}).status_code == 200
    context.close()


LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def test_api_docs_render_without_the_internet(browser, site):
    """/docs (Swagger UI) with every request off loopback refused, as on a machine without the
    internet: its script and style come from this server, and nothing else is asked for."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=site)
    outside: list[str] = []

    def loopback_only(route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", loopback_only)
    docs = context.new_page()
    errors: list[str] = []
    docs.on("pageerror", lambda error: errors.append(str(error)))
    docs.goto("/docs")
    operation = docs.locator(".opblock-get .opblock-summary-path", has_text="/1688/search/image")
    expect(operation).to_be_visible(timeout=30_000)  # the operation list, drawn from /openapi.json
    expect(docs.locator(".opblock-post .opblock-summary-path", has_text="/1688/search/image")).to_be_visible()
    docs.screenshot(path=SHOTS / "docs.png")
    context.close()
    assert outside == [] and errors == [], (outside, errors)


def test_pager_stays_hidden_on_the_empty_page_and_after_an_error(page: Page):
    expect(page.locator("#drop")).to_be_visible()
    expect(page.locator("#pager")).to_be_hidden()  # nothing searched: nothing to page
    page.goto("/?img_url=" + quote("/img/" + "0" * 64 + ".jpg", safe=""))  # no such image: a 422
    expect(page.locator("#status.error")).to_contain_text("not an image of this service")
    expect(page.locator("#pager")).to_be_hidden()
    expect(page.locator("#next")).to_be_hidden()


def test_try_a_sample_photo(page: Page, resources):
    sample = page.locator("#sample")
    expect(sample).to_be_visible()  # on the empty page, in the drop zone
    sample.click()
    expect(cards(page).first).to_be_visible(timeout=30_000)
    example = resources.catalog.example_image()  # the first offer's main photo
    expect(page).to_have_url(re.compile(rf"img_url=%2Fimg%2F{example.sha256}"))
    expect(cards(page).first).to_have_attribute("data-item-id", str(min(resources.catalog.offer_ids())))  # it finds itself
    expect(page.locator("#pager")).to_be_visible()
    expect(sample).to_be_hidden()  # a photo is on screen


def card_ids(page: Page) -> list[str]:
    return cards(page).evaluate_all("nodes => nodes.map(n => n.dataset.itemId)")


def titles(page: Page) -> list[str]:
    return page.locator("#results .card .title").evaluate_all("nodes => nodes.map(n => n.textContent)")


def test_cards_show_the_evidence_and_the_category_chip_filters(page: Page, resources):
    """explain=true on every search: similarity, "same product" and the photo that matched on each card;
    the predicted category as a chip that filters to it; title words and "same product" as filters,
    all of them in the address."""
    offers = luma_offers()
    paths = {str(o["item_id"]): o["category_path"] for o in offers}
    query = offers[0]
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/1688/search/image" in r.url else None)
    page.goto("/?img_url=" + quote(main_image_url(resources, query), safe=""))
    expect(cards(page).first).to_be_visible(timeout=30_000)
    settled(page)
    assert asked and all("explain=true" in url for url in asked)
    assert "explain" not in page.url  # the page's own setting, not part of the shared search
    expect(cards(page).first).to_have_attribute("data-item-id", str(query["item_id"]))  # it finds itself...
    expect(cards(page).first.locator(".badge.same")).to_have_text(re.compile("same product"))  # ...as the same product
    # the look-alikes follow the offer's own photo, after a line that says where "same" ends
    kinds = cards(page).evaluate_all("nodes => nodes.map(n => n.dataset.match)")
    assert "similar" in kinds, kinds
    expect(page.locator("#results .divider")).to_have_count(1)
    around = page.locator("#results .divider").evaluate(
        "d => [d.previousElementSibling.dataset.match, d.nextElementSibling.dataset.match]"
    )
    assert around == ["same", "similar"], around
    similarities = cards(page).evaluate_all("nodes => nodes.map(n => Number(n.dataset.similarity))")
    assert similarities and all(0 <= s <= 1 for s in similarities), similarities
    assert similarities[0] > 0.95
    shown = page.locator("#results .card .similarity").first.text_content()
    assert shown.strip() == f"{round(similarities[0] * 100)}% alike", shown
    assert cards(page).count() == page.locator("#results .card .similarity").count()
    everything = offers_shown(page)
    page.screenshot(path="/tmp/part6-cards.png", full_page=True)

    # the chip: the predicted category, on the query's own path, by name with its path as the tooltip
    chip = page.locator("#category")
    expect(chip).to_be_visible()
    predicted = chip.get_attribute("data-cat-id")
    assert predicted in query["category_path"], (predicted, query["category_path"])
    named = json.loads(CATEGORIES.read_text())[predicted]
    expect(chip.locator("#category-name")).to_have_text(named["name"])
    expect(chip).to_have_attribute("title", re.compile("^" + re.escape(f"{named['path']} (cat_id {predicted})")))
    expect(chip).to_have_attribute("aria-pressed", "false")
    chip.click()
    expect(page).to_have_url(re.compile(rf"cat_id={predicted}"))
    settled(page)
    expect(chip).to_have_attribute("aria-pressed", "true")
    expect(chip).to_have_class(re.compile(r"\bon\b"))
    in_category = offers_shown(page)
    assert 0 < in_category <= everything  # the best matches are mostly in it already
    assert all(predicted in paths[i] for i in card_ids(page)), card_ids(page)
    page.screenshot(path="/tmp/part6-category.png", full_page=True)

    # title words narrow the image results (within the category still)
    page.fill("#filters [name=keyword]", "Bra")
    page.press("#filters [name=keyword]", "Enter")
    expect(page).to_have_url(re.compile(r"keyword=Bra"))
    settled(page)
    assert 0 < offers_shown(page) < in_category
    assert all("bra" in t.lower().split() for t in titles(page)), titles(page)
    assert all(predicted in paths[i] for i in card_ids(page))
    narrowed = card_ids(page)
    page.screenshot(path="/tmp/part6-keyword.png", full_page=True)

    page.reload()  # the address restores both filters
    settled(page)
    expect(page.locator("#filters [name=keyword]")).to_have_value("Bra")
    expect(chip).to_have_attribute("aria-pressed", "true")
    expect(chip).to_have_attribute("data-cat-id", predicted)
    assert card_ids(page) == narrowed

    chip.click()  # clicked again: every category
    expect(page).not_to_have_url(re.compile(r"cat_id="))
    expect(page).to_have_url(re.compile(r"keyword=Bra"))
    settled(page)
    expect(chip).to_have_attribute("aria-pressed", "false")
    assert all("bra" in t.lower().split() for t in titles(page))

    # "same product" only
    page.fill("#filters [name=keyword]", "")
    page.press("#filters [name=keyword]", "Enter")
    expect(page).not_to_have_url(re.compile(r"keyword="))
    page.check("#filters [name=same]")
    expect(page).to_have_url(re.compile(r"match=same"))
    settled(page)
    assert cards(page).count() > 0
    assert cards(page).count() == page.locator("#results .card .badge.same").count()
    assert str(query["item_id"]) in card_ids(page)
    assert offers_shown(page) < everything
    page.screenshot(path="/tmp/part6-same.png", full_page=True)
    page.reload()
    settled(page)
    expect(page.locator("#filters [name=same]")).to_be_checked()


def test_a_card_shows_the_photo_that_matched(page: Page, resources, tmp_path):
    """An offer found by another of its photos shows that photo, noted, rather than its main one."""
    query = luma_offers()[0]
    other = next(p for p in query["images"] if p != query["img"])
    page.set_input_files("#file", str(LUMA.parent / other))
    expect(cards(page).first).to_be_visible(timeout=30_000)
    settled(page)
    first = cards(page).first
    expect(first).to_have_attribute("data-item-id", str(query["item_id"]))
    expect(first.locator(".matched-note")).to_have_text("matched this photo")
    shown = first.locator(".thumb img").get_attribute("src")
    assert not shown.endswith(main_image_url(resources, query))  # not the main photo
    page.screenshot(path="/tmp/part6-matched.png", full_page=True)


def test_clicking_a_product_box_searches_that_box(page: Page, tmp_path):
    """A photo of three products: a click on one product's box searches that box, not the box
    searched before (drawn under the products' boxes, and never clicked)."""
    comp = composites.compose(luma_offers(), LUMA.parent, 0, "plain", count=3, size=(1200, 900))
    photo = tmp_path / "three.jpg"
    photo.write_bytes(comp.jpeg())
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/1688/search/image" in r.url else None)
    page.set_input_files("#file", str(photo))
    expect(cards(page).first).to_be_visible(timeout=30_000)
    settled(page)
    products = page.locator("#boxes rect.found")
    expect(products.first).to_be_visible()
    assert products.count() >= 2, products.count()  # several products, besides the box searched
    first_search = page.locator("#boxes rect.used").get_attribute("data-region")
    target = products.last  # drawn last: the smallest product box
    region = target.get_attribute("data-region")
    assert region != first_search
    bounds = target.bounding_box()
    asked.clear()
    page.mouse.click(bounds["x"] + bounds["width"] / 2, bounds["y"] + bounds["height"] / 2)
    expect(page).to_have_url(re.compile("region=" + re.escape(quote(region, safe=""))))
    settled(page)
    assert asked and all(f"region={quote(region, safe='')}" in url for url in asked), asked
    expect(page.locator("#boxes rect.used")).to_have_attribute("data-region", region)  # the answer's data.region
    x1, x2, y1, y2 = map(int, region.split(","))
    truth = max(range(3), key=lambda i: objects.iou(Box(x1, y1, x2, y2), comp.boxes[i]))
    assert objects.iou(Box(x1, y1, x2, y2), comp.boxes[truth]) >= 0.5
    expect(cards(page).first).to_have_attribute("data-item-id", str(comp.item_ids[truth]))  # that product first
    page.screenshot(path=SHOTS / "search-box.png", full_page=True)


def test_nothing_found_names_the_filters_and_clears_them(page: Page, resources):
    """A bra's photo among watches only finds nothing: the message names the category (and the
    other filters) as the likely reason, and its buttons clear the category, or every filter."""
    query = luma_offers()[0]
    watches = "1007"  # Gear/Watches: nothing there looks like a bra
    filtered = f"/?img_url={quote(main_image_url(resources, query), safe='')}&cat_id={watches}"
    page.goto(filtered)
    settled(page)
    expect(page.locator("#status")).to_have_text(re.compile(r"^No offers match with this filter on: category “Watches”\."))
    expect(page.locator("#category")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#clear-category")).to_be_visible()
    expect(page.locator("#clear-filters")).to_be_hidden()  # one filter: one button
    expect(page.locator("#pager")).to_be_hidden()

    page.goto(filtered + "&keyword=Bra&is_factory=true&price_end=100")
    settled(page)
    status = page.locator("#status")
    for words in ("category “Watches”", "title words “Bra”", "price up to ¥100", "factories only", "likely reason"):
        expect(status).to_contain_text(words)
    page.screenshot(path=SHOTS / "search-empty.png", full_page=True)
    page.click("#clear-category")
    expect(page).not_to_have_url(re.compile(r"cat_id="))
    expect(page).to_have_url(re.compile(r"keyword=Bra"))  # the other filters stay
    settled(page)
    expect(page.locator("#empty")).to_be_hidden()
    assert offers_shown(page) > 0
    assert str(query["item_id"]) in card_ids(page)

    page.goto(filtered + "&keyword=Bra")
    settled(page)
    page.click("#clear-filters")
    expect(page).not_to_have_url(re.compile(r"cat_id=|keyword="))
    settled(page)
    expect(cards(page).first).to_have_attribute("data-item-id", str(query["item_id"]))


def test_category_names_for_the_page(site):
    named = httpx.get(f"{site}/categories/1029").json()
    assert named == {"cat_id": "1029", "name": "Bras & Tanks", "path": "Women/Tops/Bras & Tanks"}
    assert httpx.get(f"{site}/categories/nope").json() == {"cat_id": "nope", "name": None, "path": None}


def test_prices_show_the_catalogs_currency(browser, resources, token):
    """`currency` names the catalog's currency: a shop selling in euros sees € on the page, not ¥."""
    opened = with_settings(resources, currency="EUR")
    with serve(create_app(resources=opened)) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=url)
        page = context.new_page()
        offer = luma_offers()[0]
        page.goto(f"/?img_url={quote(main_image_url(resources, offer))}#token={token}")
        expect(cards(page).first).to_be_visible(timeout=30_000)
        expect(page.locator("#currency-sign")).to_have_text("€")
        first = cards(page).first.locator(".price").evaluate("node => node.firstChild.textContent")
        assert first.startswith("€") and Decimal(first.lstrip("€")) > 0, first
        context.close()
    opened.fetcher.close()
    with pytest.raises(ValueError, match="ISO 4217"):
        Settings.load(environ={"SNAPSOURCE_CURRENCY": "€"}).check()
