"""The console's Upstream tab in real headless Chromium: on a server without an upstream, how to set
one; on a real `snapsource serve` in front of the TMAPI stand-in (both on loopback, an empty
catalog in fallback mode) after one search that the upstream answered, the calls made, the mode,
the breaker and the estimated cost, never the upstream's token; and a token made with the upstream
scope from the New token form.

Screenshots are kept in /tmp/console-shots/.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Page, expect

from conftest import open_resources, profile_settings, serve_workers
from snapsource.api.app import create_app
from snapsource.tools.loopback import free_port, serve
from snapsource.tools.tmapi_standin import luma_standin
from test_web import browser  # noqa: F401 - the headless Chromium fixture

SHOTS = Path("/tmp/console-shots")
KEY = "console-upstream-key-81b3"
SECRET = "tm_console_secret_2e7d90"  # the upstream's token: never in the console
PRICE = 0.02
OPEN_BREAKER = {
    "code": 200,
    "msg": "success",
    "data": {
        "configured": True,
        "url": "https://api.tmapi.io",
        "mode": "always",
        "breaker": {
            "state": "open",
            "failures_in_a_row": 3,
            "retry_in_s": 12.4,
            "last_error": "503 API request concurrency limit exceeded",
        },
        "pages_stored": 12,
        "photos_converted": 9,
        "cache_days": 7,
        "price_per_call": 0.0,
        "token": "***",
        "days": 30,
        "totals": {
            "calls": 1,
            "conversions": 1,
            "cached": 1,
            "local": 2,
            "saved_calls": 3,
            "local_share": 0.5,
            "estimated_cost": 0.0,
            "estimated_saving": 0.0,
        },
        "usage": [{"day": "2026-12-04", "token": "ops", "token_id": 1, "calls": 1, "conversions": 1, "cached": 1, "local": 2}],
    },
}


def open_console(chromium: Browser, site: str, errors: list[str]) -> Page:
    """The console signed in, on its Upstream tab."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = chromium.new_context(base_url=site, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/console")
    page.fill("#admin-key", KEY)
    page.click("#sign-in-form button")
    expect(page.locator("#signed-in")).to_be_visible()
    page.click(".tabs a[data-view=upstream]")
    expect(page).to_have_url(f"{site}/console#/upstream")
    expect(page.locator(".tabs a[data-view=upstream]")).to_have_attribute("aria-current", "page")
    expect(page.locator("#upstream-view")).to_be_visible()
    expect(page.locator("#tokens-view")).to_be_hidden()
    return page


def test_without_an_upstream_the_tab_says_how_to_set_one(browser: Browser, tmp_path):  # noqa: F811 - the imported fixture
    resources = open_resources(tmp_path / "data", admin_key=KEY)
    errors: list[str] = []
    try:
        with serve(create_app(resources=resources)) as site:
            page = open_console(browser, site, errors)
            off = page.locator("#upstream-off")
            expect(off).to_be_visible()
            expect(off).to_contain_text("This server has no upstream")
            for name in ("SNAPSOURCE_UPSTREAM", "SNAPSOURCE_UPSTREAM_TOKEN", "SNAPSOURCE_UPSTREAM_MODE", "SNAPSOURCE_PUBLIC_URL"):
                expect(off.locator("code", has_text=name).first).to_be_visible()
            expect(off).to_contain_text("docs/upstream.md")
            expect(page.locator("#upstream-on")).to_be_hidden()
            expect(page.locator("#upstream-usage-panel")).to_be_hidden()  # nothing was ever metered
            expect(page.locator("#upstream-message")).to_have_text("")

            # an open breaker and no price, as /admin/upstream answers them (its shape, routed here)
            page.route("**/admin/upstream?*", lambda route: route.fulfill(json=OPEN_BREAKER))
            page.click("#upstream-refresh")
            expect(page.locator("#upstream-on")).to_be_visible()
            expect(page.locator("#upstream-breaker")).to_have_attribute("data-state", "open")
            alert = page.locator("#upstream-breaker-open")
            expect(alert).to_be_visible()
            expect(alert).to_have_class("status error")
            expect(alert).to_contain_text("3 times in a row")
            expect(alert).to_contain_text("tried again in 13 s")
            expect(alert).to_contain_text("Last error: 503 API request concurrency limit exceeded")
            expect(page.locator("#upstream-money")).to_contain_text("Set SNAPSOURCE_UPSTREAM_PRICE_PER_CALL to estimate")
            expect(page.locator("#upstream-counts [data-count=estimated_cost] dd")).to_have_text("–")
            expect(page.locator("#upstream-counts [data-count=local_share] dd")).to_have_text(
                "50%"
            )  # local / (calls + cached + local)
            expect(page.locator("#upstream-usage tbody tr")).to_have_count(1)
            page.screenshot(path=SHOTS / "upstream-open.png", full_page=True)
            assert "tm_" not in page.content()
            page.context.close()
    finally:
        resources.close()
    assert errors == []  # no script failed along the way


def test_calls_made_mode_and_cost_never_the_token(browser: Browser, tmp_path):  # noqa: F811 - the imported fixture
    stand = luma_standin(limit=20, token=SECRET)
    port = free_port()
    settings = {
        **profile_settings(),
        "upstream": "",  # set below, once the stand-in has its address
        "upstream_token": SECRET,
        "upstream_mode": "fallback",
        "public_url": f"http://127.0.0.1:{port}",
        "fetch_allow": "127.0.0.0/8",  # the stand-in fetches the query photo from public_url, on loopback
        "admin_key": KEY,
        "upstream_price_per_call": str(PRICE),
    }
    errors: list[str] = []
    admin = {"Authorization": f"Bearer {KEY}"}
    with serve(stand.app) as upstream:
        settings["upstream"] = upstream
        with serve_workers(tmp_path / "data", tmp_path, workers=1, port=port, **settings) as site:
            made = httpx.post(f"{site}/admin/tokens", headers=admin, json={"name": "shopper"}).json()["data"]
            # an empty catalog in fallback: the upstream answers (a conversion, then a search)
            found = httpx.post(
                f"{site}/1688/search/image",
                params={"apiToken": made["token"], "page_size": 10},
                files={"file": ("photo.jpg", stand.items[0].photo, "image/jpeg")},
                timeout=30,
            )
            assert found.status_code == 200, found.text
            assert found.json()["data"]["source"] == "upstream", found.json()["data"].get("upstream_error")
            assert stand.calls["search"] == 1 and stand.calls["convert"] == 1
            time.sleep(1.5)  # metering is written within a second
            report = httpx.get(f"{site}/admin/upstream", headers=admin).json()["data"]
            calls, conversions = report["totals"]["calls"], report["totals"]["conversions"]
            assert calls >= 1 and report["configured"]

            page = open_console(browser, site, errors)
            expect(page.locator("#upstream-on")).to_be_visible()
            expect(page.locator("#upstream-off")).to_be_hidden()
            expect(page.locator("#upstream-url")).to_have_text(upstream)
            expect(page.locator("#upstream-mode")).to_have_attribute("data-mode", "fallback")
            expect(page.locator("#upstream-mode")).to_contain_text("fallback")
            expect(page.locator("#upstream-token")).to_have_text("set")
            expect(page.locator("#upstream-breaker")).to_have_attribute("data-state", "closed")
            expect(page.locator("#upstream-breaker-open")).to_be_hidden()
            expect(page.locator("#upstream-price")).to_have_text(str(PRICE))

            counts = page.locator("#upstream-counts")
            expect(counts.locator("[data-count=calls] dd")).to_have_text(str(calls))
            assert int(counts.locator("[data-count=calls] dd").text_content()) >= 1
            expect(counts.locator("[data-count=conversions] dd")).to_have_text(str(conversions))
            expect(counts.locator("[data-count=estimated_cost] dd")).to_have_text(f"{(calls + conversions) * PRICE:.2f}")
            expect(page.locator("#upstream-money")).to_contain_text(f"At {PRICE} a call")
            expect(page.locator("#upstream-money")).not_to_contain_text("SNAPSOURCE_UPSTREAM_PRICE_PER_CALL")
            row = page.locator(f"#upstream-usage tbody tr[data-token-id='{made['id']}']")
            expect(row).to_have_count(1)
            expect(row.locator("td").nth(1)).to_have_text("shopper")
            expect(row.locator("td[data-count=calls]")).to_have_text(str(calls))
            page.select_option("#upstream-form [name=days]", "7")
            expect(page.locator("#upstream-usage-heading")).to_have_text("Calls made and saved in the last 7 days")
            expect(row.locator("td[data-count=calls]")).to_have_text(str(calls))  # today is within 7 days
            page.screenshot(path=SHOTS / "upstream.png", full_page=True)
            assert SECRET not in page.content()

            # a token that may choose source=, from the New token form
            page.click(".tabs a[data-view=tokens]")
            page.fill("#create-form [name=name]", "chooser")
            page.select_option("#create-form [name=scopes]", "search upstream")
            page.click("#create-form button")
            expect(page.locator("#secret")).to_be_visible()
            chooser = page.locator("#secret-value").text_content()
            expect(page.locator("#tokens tbody tr", has_text="chooser").locator("td.scopes")).to_have_text("search, upstream")
            local = httpx.get(
                f"{site}/1688/search/image",
                params={"apiToken": chooser, "img_url": found.json()["data"]["image_url"], "source": "local"},
                timeout=30,
            )
            assert local.status_code == 200 and local.json()["data"]["source"] == "local", local.text  # the scope works
            assert SECRET not in page.content()
            page.context.close()
    assert errors == []  # no script failed along the way
