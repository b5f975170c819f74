"""The console's catalog page in real headless Chromium: a catalog file uploaded as an import job and
followed to the end, an offer looked up with its photos, deleted after a confirm step, and gone.

The server runs on an empty catalog of its own with an import runner; the file's photos are http
URLs of a loopback server of the luma photos (an uploaded file may not name paths on the server).
Screenshots are kept in /tmp/console-shots/.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from conftest import luma_offers, open_resources
from snapsource.api.app import create_app
from snapsource.ingest import jobs
from snapsource.ingest.formats.mapping import load_mapping
from snapsource.tools.loopback import serve
from test_catalog_api import photo_server
from test_web import browser  # noqa: F401 - the headless Chromium fixture

SHOTS = Path("/tmp/console-shots")
KEY = "console-catalog-key-5d1a"
PHOTOS_LOADED = "() => [...document.querySelectorAll('#offer-photos img')].every(i => i.complete && i.naturalWidth > 0)"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """An empty catalog behind a real server with an import runner, and the photo server: (site, photos)."""
    resources = open_resources(tmp_path_factory.mktemp("console-catalog"), admin_key=KEY, fetch_allow="127.0.0.1")
    app = create_app(resources=resources)
    runner = jobs.Runner(resources).start()
    app.state.import_runner = runner
    with photo_server() as photos, serve(app) as site:
        yield site, photos
    runner.stop()
    resources.close()


def offer_by_url(offer: dict, photos: str) -> dict:
    """The offer with its main photo and the first two others as URLs of the photo server."""
    return dict(offer, img=photos + offer["img"], images=[photos + ref for ref in offer["images"][:2]])


def sign_in(page: Page) -> None:
    page.fill("#admin-key", KEY)
    page.click("#sign-in-form button")
    expect(page.locator("#signed-in")).to_be_visible()


def open_console(chromium: Browser, site: str, errors: list[str], **options) -> Page:
    context = chromium.new_context(base_url=site, **options)
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/console")
    sign_in(page)
    page.click(".tabs a[data-view=catalog]")
    expect(page.locator("#catalog-view")).to_be_visible()
    expect(page.locator("#tokens-view")).to_be_hidden()
    return page


def count(page: Page, name: str):
    return page.locator(f"#job-counts [data-count={name}] dd")


def test_import_look_up_and_delete(browser: Browser, world, tmp_path):  # noqa: F811 - the imported fixture
    site, photos = world
    SHOTS.mkdir(parents=True, exist_ok=True)
    first, second, third = luma_offers()[:3]
    catalog = tmp_path / "three-offers.jsonl"
    lines = [offer_by_url(first, photos), dict(offer_by_url(second, photos), price="cheap"), offer_by_url(third, photos)]
    catalog.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    errors: list[str] = []

    page = open_console(browser, site, errors, viewport={"width": 1280, "height": 900})
    expect(page).to_have_url(f"{site}/console#/catalog")
    expect(page.locator(".tabs a[data-view=catalog]")).to_have_attribute("aria-current", "page")
    expect(page.locator("#jobs-empty")).to_be_visible()  # an empty catalog: no imports yet

    # the mapping's placeholder is a real mapping: {"columns": {column: field}}, as the importer reads it
    placeholder = json.loads(page.locator("#import-mapping").get_attribute("placeholder"))
    assert placeholder["columns"]["SKU"] == "item_id", placeholder
    assert set(placeholder["columns"].values()) >= {"item_id", "title", "price", "img"}
    load_mapping(placeholder)  # the importer takes it as it is

    # a file that is no catalog: the envelope's msg, shown as an error
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01\x02")
    page.set_input_files("#import-file", str(junk))
    page.click("#import-form button[type=submit]")
    expect(page.locator("#import-message.error")).to_contain_text("The import was refused:")
    assert page.locator("#job").is_hidden()

    # the upload, followed to the end
    page.set_input_files("#import-file", str(catalog))
    page.select_option("#import-form [name=format]", "jsonl")
    page.click("#import-form button[type=submit]")
    expect(page.locator("#job")).to_be_visible()
    expect(page.locator("#import-message")).to_contain_text("accepted as job imp_")
    job_id = page.locator("#job-id").text_content()
    assert job_id and job_id.startswith("imp_")
    page.screenshot(path=SHOTS / "import-progress.png", full_page=True)
    expect(page.locator("#job-status")).to_have_text("done", timeout=45_000)
    page.screenshot(path=SHOTS / "import-done.png", full_page=True)
    expect(page.locator("#job-progress-text")).to_have_text("Done: 3 of 3 rows (100%); 1 row not imported (listed below).")
    expect(page.locator("#job-status")).to_have_class("job-status done partial")
    assert page.locator("#job-progress").evaluate("bar => bar.value") == 1
    expect(count(page, "added")).to_have_text("2")
    expect(count(page, "rejected")).to_have_text("1")
    expect(count(page, "updated")).to_have_text("0")
    distinct = [{line["img"], *line["images"]} for line in (lines[0], lines[2])]
    expect(count(page, "images_embedded")).to_have_text(str(sum(len(d) for d in distinct)))
    rejected = page.locator("#problems tbody tr")
    expect(rejected).to_have_count(1)
    expect(rejected.locator("td").nth(0)).to_have_text("2")
    expect(rejected.locator("td").nth(1)).to_have_text(str(second["item_id"]))
    expect(rejected.locator("td.why")).to_have_text("rejected")
    expect(rejected.locator("td.reason")).to_contain_text("price")
    listed = page.locator(f"#jobs tr[data-job-id='{job_id}']")  # the recent jobs, read again when it ended
    expect(listed).to_contain_text("done")
    expect(listed.locator("td").nth(3)).to_have_text("3 / 3")
    headers = page.locator("#jobs thead th").all_text_contents()
    assert headers[4:9] == ["Added", "Updated", "Unchanged", "Rejected", "Skipped"], headers
    for name, n in {"added": "2", "updated": "0", "unchanged": "0", "rejected": "1", "skipped": "0"}.items():
        expect(listed.locator(f"td[data-count={name}]")).to_have_text(n)
    expect(page.locator("#jobs-empty")).to_be_hidden()

    # the lookup: title, price, category and the photos, each embedded
    item = str(first["item_id"])
    page.fill("#lookup-id", item)
    page.press("#lookup-id", "Enter")
    expect(page.locator("#offer")).to_be_visible()
    expect(page.locator("#offer-title")).to_have_text(first["title"])
    expect(page.locator("#offer-price")).to_contain_text(first["price"])  # no currency in the schema: no symbol
    assert "¥" not in page.locator("#offer-price").text_content()
    expect(page.locator("#offer-category")).to_have_text(" › ".join(first["category_path"]))
    photos_shown = page.locator("#offer-photos li")
    expect(photos_shown).to_have_count(len(distinct[0]))
    expect(page.locator("#offer-photos .badge.embedded")).to_have_count(len(distinct[0]))
    expect(page.locator("#offer-photos .badge.main")).to_have_count(1)
    srcs = page.locator("#offer-photos img").evaluate_all("imgs => imgs.map(i => i.getAttribute('src'))")
    assert all(src.startswith(f"{site}/img/") for src in srcs), srcs
    page.wait_for_function(PHOTOS_LOADED)
    page.locator("#offer").scroll_into_view_if_needed()
    page.screenshot(path=SHOTS / "lookup.png", full_page=True)

    # the rejected row's offer is not in the catalog
    page.fill("#lookup-id", str(second["item_id"]))
    page.press("#lookup-id", "Enter")
    expect(page.locator("#lookup-message.error")).to_have_text(f"no offer with item_id {second['item_id']}")
    expect(page.locator("#offer")).to_be_hidden()

    # delete, with a confirm step that can be cancelled
    page.fill("#lookup-id", item)
    page.press("#lookup-id", "Enter")
    expect(page.locator("#offer")).to_be_visible()
    page.click("#delete")
    expect(page.locator("#delete-confirm")).to_be_visible()
    expect(page.locator("#delete-question")).to_contain_text(f"Delete offer {item}")
    page.click("#delete-no")
    expect(page.locator("#delete-confirm")).to_be_hidden()
    assert httpx.get(f"{site}/catalog/offers/{item}", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    page.click("#delete")
    expect(page.locator("#delete-no")).to_be_focused()  # the safe answer first
    page.locator("#offer .danger").screenshot(path=SHOTS / "confirm.png")
    page.click("#delete-yes")
    expect(page.locator("#lookup-message")).to_contain_text(f"no offer with item_id {item}")
    expect(page.locator("#lookup-message")).to_contain_text("deleted")
    expect(page.locator("#offer")).to_be_hidden()
    assert httpx.get(f"{site}/catalog/offers/{item}", headers={"Authorization": f"Bearer {KEY}"}).status_code == 404
    page.screenshot(path=SHOTS / "deleted.png", full_page=True)
    page.context.close()

    # at phone width: the job from the recent list, and the other offer looked up
    phone = open_console(browser, site, errors, viewport={"width": 390, "height": 844}, is_mobile=True)
    phone.locator(f"#jobs tr[data-job-id='{job_id}'] button").click()
    expect(phone.locator("#job-status")).to_have_text("done")
    expect(phone.locator("#problems tbody tr")).to_have_count(1)
    phone.fill("#lookup-id", str(third["item_id"]))
    phone.press("#lookup-id", "Enter")
    expect(phone.locator("#offer-title")).to_have_text(third["title"])
    phone.wait_for_function(PHOTOS_LOADED)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # nothing wider than the phone
    phone.screenshot(path=SHOTS / "phone.png", full_page=True)
    phone.context.close()
    assert errors == []  # no script failed along the way


def test_a_zip_of_a_csv_and_its_photos_with_a_toml_mapping(browser: Browser, world, tmp_path):  # noqa: F811
    """What `snapsource ingest shop.csv --mapping shop.toml` imports, the console imports too: the
    CSV and its photos zipped, the mapping pasted as TOML."""
    from test_catalog_zip import MAPPING_TOML, shop_zip

    site, _ = world
    offers = luma_offers()[70:72]
    archive = tmp_path / "shop.zip"
    archive.write_bytes(shop_zip(offers))
    errors: list[str] = []
    page = open_console(browser, site, errors, viewport={"width": 1280, "height": 900})
    assert ".zip" in (page.locator("#import-file").get_attribute("accept") or "")
    expect(page.locator("#import-help")).to_contain_text(".zip")
    page.set_input_files("#import-file", str(archive))
    page.click(".mapping summary")
    page.fill("#import-mapping", MAPPING_TOML)
    page.click("#import-form button[type=submit]")
    expect(page.locator("#import-message")).to_contain_text("accepted as job imp_")
    expect(page.locator("#job-status")).to_have_text("done", timeout=45_000)
    expect(count(page, "added")).to_have_text("2")
    expect(count(page, "skipped")).to_have_text("0")
    page.fill("#lookup-id", str(offers[0]["item_id"]))
    page.press("#lookup-id", "Enter")
    expect(page.locator("#offer-title")).to_have_text(offers[0]["title"])
    expect(page.locator("#offer-photos .badge.embedded")).to_have_count(
        1 + len([r for r in offers[0]["images"] if r != offers[0]["img"]][:1])
    )
    page.screenshot(path=SHOTS / "import-zip.png", full_page=True)
    page.fill("#lookup-id", "JA-200")  # a SKU: looked up by the id an import makes from it
    page.press("#lookup-id", "Enter")
    expect(page.locator("#lookup-message")).to_contain_text("no offer with the key 'JA-200'")

    # the same zip again: nothing new, every photo reused; then one whose every row is skipped
    page.set_input_files("#import-file", str(archive))
    page.click("#import-form button[type=submit]")
    expect(count(page, "unchanged")).to_have_text("2", timeout=45_000)
    expect(count(page, "images_reused")).to_have_text("3")
    lost = tmp_path / "lost.zip"
    lost.write_bytes(shop_zip(offers, photo_folder="elsewhere/"))
    page.set_input_files("#import-file", str(lost))
    page.click("#import-form button[type=submit]")
    expect(page.locator("#job-status")).to_have_text("nothing imported", timeout=45_000)
    expect(page.locator("#job")).to_be_visible()
    page.set_input_files("#import-file", str(tmp_path / "shop.zip"))
    page.select_option("#import-form [name=format]", "jsonl")  # refused: the job shown before goes
    page.click("#import-form button[type=submit]")
    expect(page.locator("#import-message")).to_contain_text("named jsonl, but it reads as csv")
    expect(page.locator("#job")).to_be_hidden()
    page.select_option("#import-form [name=format]", "auto")
    page.set_input_files("#import-file", str(lost))
    page.click("#import-form button[type=submit]")
    expect(page.locator("#job-status")).to_have_text("nothing imported", timeout=45_000)
    expect(page.locator("#job-status")).to_have_class("job-status empty")
    expect(page.locator("#job-progress-text")).to_contain_text("nothing was imported")
    expect(page.locator("#problems tbody tr td.why")).to_have_text(["skipped", "skipped"])
    expect(page.locator("#job-problems h4")).to_have_text("Rows not imported")
    page.context.close()
    assert errors == []
