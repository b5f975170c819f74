"""Searching with an offer's own photo finds it; the CLI prints results in the API's item schema."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import LUMA, luma_offers
from snapsource.offer import ITEM_FIELDS
from snapsource.tools.evaluate import self_retrieval


def test_self_retrieval_of_the_luma_catalog(resources):
    result = self_retrieval(resources, LUMA)
    assert result["offers"] == 214
    assert result["recall_at_1"] >= 0.99, result["misses"]


def search_command(resources, offer: dict) -> list[str]:
    """`snapsource search` of an offer's main photo against the test catalog."""
    return [
        sys.executable,
        "-m",
        "snapsource",
        "search",
        str(LUMA.parent / offer["img"]),
        "--data",
        str(resources.settings.data_dir),
    ]


def test_cli_search_json(resources):
    offer = luma_offers()[3]
    out = subprocess.run(
        [*search_command(resources, offer), "--json", "--page-size", "5"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    items = [json.loads(line) for line in out]
    assert len(items) == 5
    # the API's item with explain=true: the spec's fields in order, then the evidence
    assert tuple(items[0]) == (*ITEM_FIELDS, "similarity", "match", "matched_img")
    assert 0.0 <= items[0]["similarity"] <= 1.0 and items[0]["match"] in {"same", "similar"}
    assert items[0]["similarity"] >= items[-1]["similarity"]
    twins = {o["item_id"] for o in luma_offers() if o["img"] == offer["img"]}
    assert items[0]["item_id"] in twins
    assert items[0]["img"].startswith("/img/")


def test_cli_search_table_and_bad_sort(resources):
    offer = luma_offers()[3]
    cli = search_command(resources, offer)
    table = subprocess.run(cli, capture_output=True, text=True, env={"COLUMNS": "200", "PATH": ""})
    assert table.returncode == 0, table.stderr
    assert offer["title"] in table.stdout and " offers" in table.stdout
    by_sales = subprocess.run([*cli, "--sort", "sales", "--is-factory", "--json"], capture_output=True, text=True)
    assert by_sales.returncode == 0, by_sales.stderr
    factories = [json.loads(line) for line in by_sales.stdout.splitlines()]
    assert len(factories) > 1 and all(item["shop_info"]["is_factory"] is True for item in factories)
    sales = [item["sale_info"]["sale_quantity_int"] for item in factories]
    assert sales == sorted(sales, reverse=True)
    bad = subprocess.run([*cli, "--sort", "cheapest"], capture_output=True, text=True)
    assert bad.returncode == 2 and "cheapest" in bad.stderr
