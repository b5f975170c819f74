"""Command-line details a user relies on."""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conftest import ROOT
from snapsource.api.middleware import MaskToken
from snapsource.api.routes.search import search_params as server_search_params


def test_access_log_masks_the_token():
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/1688/search/image?apiToken=ss_secret&img_url=/img/x.jpg", "1.1", 200),
        None,
    )
    MaskToken().filter(record)
    line = record.getMessage()
    assert "ss_secret" not in line and "apiToken=***&img_url=/img/x.jpg" in line


def test_token_create_and_revoke(tmp_path):
    cli = [sys.executable, "-m", "snapsource", "token"]
    made = subprocess.run([*cli, "create", "--name", "shop", "--data", str(tmp_path)], capture_output=True, text=True)
    assert made.returncode == 0 and made.stdout.strip().startswith("ss_")
    assert made.stdout.strip() not in (tmp_path / "catalog.db").read_bytes().decode("latin-1")
    revoked = subprocess.run([*cli, "revoke", "shop", "--data", str(tmp_path)], capture_output=True, text=True)
    assert revoked.returncode == 0 and "revoked 1" in revoked.stderr
    again = subprocess.run([*cli, "revoke", "shop", "--data", str(tmp_path)], capture_output=True, text=True)
    assert again.returncode == 1


def test_missing_model_is_a_clear_error(tmp_path):
    from conftest import LUMA

    run = subprocess.run(  # ingest: the one command that makes a catalog where there is none
        [sys.executable, "-m", "snapsource", "ingest", str(LUMA), "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        env={"SNAPSOURCE_MODEL_PATH": str(tmp_path / "none.onnx"), "PATH": ""},
    )
    assert run.returncode == 2 and "snapsource model export" in run.stderr


def test_search_takes_a_file_or_a_url(resources):
    import json

    from conftest import LUMA, luma_offers
    from imageserver import ImageServer

    photo = (LUMA.parent / luma_offers()[0]["img"]).read_bytes()
    cli = [sys.executable, "-m", "snapsource", "search", "--data", str(resources.settings.data_dir), "--json"]
    with ImageServer(photo, photo).running() as url:
        by_url = subprocess.run([*cli, url + "/photo.jpg"], capture_output=True, text=True)
    assert by_url.returncode == 0, by_url.stderr
    first = json.loads(by_url.stdout.splitlines()[0])
    assert first["item_id"] == luma_offers()[0]["item_id"] or first["title"] == luma_offers()[0]["title"]
    missing = subprocess.run([*cli, "/no/such/photo.jpg"], capture_output=True, text=True)
    assert missing.returncode == 2 and "No such file" in missing.stderr


def test_compact_and_info_describe_the_index(resources):
    data = str(resources.settings.data_dir)
    compacted = subprocess.run([sys.executable, "-m", "snapsource", "compact", "--data", data], capture_output=True, text=True)
    assert compacted.returncode == 0, compacted.stderr
    assert "no IVF base (fewer than 10,000 vectors)" in compacted.stderr  # the demo catalog is scored exactly
    info = subprocess.run([sys.executable, "-m", "snapsource", "info", "--data", data], capture_output=True, text=True)
    assert info.returncode == 0 and f"{len(resources.index)} vectors scored exactly" in info.stdout


def snapsource(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """`snapsource ARGS` as a user runs it, help at a width that keeps each option on one line."""
    env = {**os.environ, "COLUMNS": "200", **kwargs.pop("env", {})}
    return subprocess.run([sys.executable, "-m", "snapsource", *args], capture_output=True, text=True, env=env, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_search_finds_what_the_api_finds(resources, client, token):
    """One search path: the same photo, the same filters, the same offers from `search` and from
    POST /1688/search/image (a new shop photo, analysed; a catalog photo, its indexed vector)."""
    from conftest import LUMA, luma_offers
    from imageserver import grocery_photo

    data = str(resources.settings.data_dir)
    seen = 0
    for photo in (grocery_photo(5), LUMA.parent / luma_offers()[0]["img"]):
        for flags in ((), ("--is-factory",)):
            cli = snapsource("search", str(photo), "--data", data, "--json", *flags)  # first: nothing kept yet
            assert cli.returncode == 0, cli.stderr
            params = {"apiToken": token, **({"is_factory": "true"} if flags else {})}
            answer = client.post("/1688/search/image", params=params, files={"file": (photo.name, photo.read_bytes())})
            assert answer.status_code == 200, answer.text
            api = [item["item_id"] for item in answer.json()["data"]["items"]]
            assert [json.loads(line)["item_id"] for line in cli.stdout.splitlines()] == api, (photo.name, flags)
            seen += len(api)
    assert seen > 0


def test_search_shows_similarity_and_match(resources):
    """`snapsource search` shows the API's explain fields: similarity in 0-1 (not the ranking score,
    which re-ranking may raise past 1) and the match kind, in --json lines and in the table."""
    from conftest import LUMA, luma_offers

    query = luma_offers()[0]
    photo = LUMA.parent / query["img"]
    data = str(resources.settings.data_dir)
    run = snapsource("search", str(photo), "--data", data, "--json")
    assert run.returncode == 0, run.stderr
    items = [json.loads(line) for line in run.stdout.splitlines()]
    assert items and all(0 <= item["similarity"] <= 1 and item["match"] in ("same", "similar") for item in items), items
    assert items[0]["item_id"] == query["item_id"] and items[0]["match"] == "same"  # its own photo: the same product
    assert all("/img/" in item["matched_img"] for item in items)  # the offer's photo that matched
    table = snapsource("search", str(photo), "--data", data, "--page-size", "5")
    assert table.returncode == 0, table.stderr
    header = next(line for line in table.stdout.splitlines() if "item_id" in line)
    assert "similarity" in header and "match" in header and "score" not in header, header
    first = next(line for line in table.stdout.splitlines() if str(query["item_id"]) in line)
    assert re.search(r"\b[01]\.\d{3}\b.*\bsame\b", first), first


API_FLAGS = (
    "--is-factory",
    "--price-start",
    "--price-end",
    "--support-dropshipping",
    "--verified-supplier",
    "--free-shipping",
    "--new-arrival",
    "--sort",
    "--page",
    "--page-size",
    "--cat-id",
    "--keyword",
    "--region",
    "--regions",
    "--group-same",
    "--match",
    "--score-threshold",
    "--explain",
)


def test_search_commands_take_the_apis_parameter_names(resources, base_url, client, token):
    for command in (("search",), ("client", "search")):
        shown = snapsource(*command, "--help")
        assert shown.returncode == 0, shown.stderr
        assert re.search(rf"snapsource {' '.join(command)} \[OPTIONS\] PHOTO_OR_URL *$", shown.stdout, re.MULTILINE), shown.stdout
        for flag in API_FLAGS:
            assert re.search(rf"{flag}\s", shown.stdout), (command, flag)
        for old in ("--factory", "--max-price", "--min-price", "--verified ", "--new ", "--dropshipping", "--no-is-factory"):
            assert old not in shown.stdout, (command, old)
        assert "<bool>" not in shown.stdout and "{" not in shown.stdout
        # every parameter of the API's search is a flag, under the API's name
        for name in inspect.signature(server_search_params).parameters:
            assert re.search(rf"--{name.replace('_', '-')}\s", shown.stdout), (command, name)

    # a run of each with the same flags finds the same offers as the API
    from conftest import luma_offers, main_image_url

    img_url = main_image_url(resources, luma_offers()[0])
    flags = ("--is-factory", "--price-end", "150", "--sort", "price_up", "--page", "2", "--page-size", "3", "--json")
    params = {"apiToken": token, "img_url": img_url, "is_factory": "true", "price_end": "150", "sort": "price_up"}
    api = client.get("/1688/search/image", params={**params, "page": 2, "page_size": 3}).json()["data"]
    assert api["items"] and api["total_count"] > 3
    expected = [item["item_id"] for item in api["items"]]
    remote = snapsource("client", "search", img_url, "--url", base_url, "--token", token, *flags)
    assert remote.returncode == 0, remote.stderr
    assert [json.loads(line)["item_id"] for line in remote.stdout.splitlines()] == expected
    photo = resources.catalog.image_file(*img_url.removeprefix("/img/").split("."))
    local = snapsource("search", str(photo), "--data", str(resources.settings.data_dir), *flags)
    assert local.returncode == 0, local.stderr
    assert [json.loads(line)["item_id"] for line in local.stdout.splitlines()] == expected


def test_client_search_names_the_server_it_cannot_reach():
    from imageserver import grocery_photo

    port = free_port()  # nothing listens there now
    run = snapsource("client", "search", str(grocery_photo(0)), "--url", f"http://127.0.0.1:{port}/", "--token", "ss_secret")
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert f"cannot reach http://127.0.0.1:{port}/1688/search/image" in lines[0]
    assert "ss_secret" not in run.stderr + run.stdout


def test_serve_checks_its_port_and_prints_the_one_it_uses(resources):
    picked = snapsource("serve", "--port", "0", "--print-port")
    assert picked.returncode == 0 and int(picked.stdout) > 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = snapsource("serve", "--port", str(port), "--print-port")
        assert taken.returncode == 2 and taken.stdout == ""
        assert len(taken.stderr.strip().splitlines()) == 1 and f"127.0.0.1:{port}" in taken.stderr and "--port" in taken.stderr

    # a real server on a port picked for it says where it listens, and answers there
    data = str(resources.settings.data_dir)
    server = subprocess.Popen(
        [sys.executable, "-m", "snapsource", "serve", "--data", data, "--port", "0"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        address = None
        deadline = time.monotonic() + 60
        while address is None and time.monotonic() < deadline:
            line = server.stderr.readline()
            assert line, "serve ended before saying where it listens"
            found = re.search(r"serving .* on (http://127\.0\.0\.1:(\d+))/", line)
            address = found.group(1) if found else None
        assert address and not address.endswith(":0")
        while time.monotonic() < deadline:
            try:
                if httpx.get(address + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise AssertionError(f"nothing answered on {address}")
    finally:
        server.terminate()
        server.wait(30)
        server.stderr.close()


def test_info_prints_the_address_to_open_and_a_real_photo(resources):
    data = str(resources.settings.data_dir)
    info = snapsource("info", "--data", data, "--token", "ss_t", "--url", "http://0.0.0.0:8123")
    assert info.returncode == 0, info.stderr
    assert "search page: http://127.0.0.1:8123/#token=ss_t" in info.stdout  # bound everywhere, opened on loopback
    photo = re.search(r"curl -F file=@(\S+) 'http://127\.0\.0\.1:8123/1688/search/image", info.stdout)
    assert photo and Path(photo.group(1)).is_file(), info.stdout
    by_env = snapsource("info", "--data", data, env={"SNAPSOURCE_URL": "http://127.0.0.1:9001"})
    assert "search page: http://127.0.0.1:9001/#token=" in by_env.stdout


def test_make_demo_prints_the_port_it_serves(tmp_path):
    """The demo's recipe with a stand-in for its last step (serve), on a port picked for it (PORT=0)
    and on a port in use: the addresses printed are those served, or nothing is printed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "snapsource"
    stand_in.write_text(
        "#!/bin/sh\n"
        'case " $* " in *" serve "*"--data"*) echo "SERVE $*"; exit 0;; esac\n'
        f'exec {shutil.which("snapsource", path=str(Path(sys.executable).parent)) or "snapsource"} "$@"\n'
    )
    stand_in.chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    make = ["make", "-s", "-C", str(ROOT), "-o", "ingest", "demo", f"BIN={bin_dir}", f"DATA={tmp_path / 'data'}"]
    demo = subprocess.run([*make, "PORT=0"], capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stderr
    page = re.search(r"search page: http://127\.0\.0\.1:(\d+)/#token=ss_", demo.stdout)
    served = re.search(r"SERVE serve --data \S+ --host 127\.0\.0\.1 --port (\d+)", demo.stdout)
    assert page and served and page.group(1) == served.group(1) != "0", demo.stdout
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        refused = subprocess.run([*make, f"PORT={port}"], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "search page" not in refused.stdout and "SERVE" not in refused.stdout
    assert f"127.0.0.1:{port}" in refused.stderr


def api_items(client, token: str, img_url: str, **params) -> dict:
    """`data` of GET /1688/search/image for these parameters."""
    answer = client.get("/1688/search/image", params={"apiToken": token, "img_url": img_url, **params})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def json_lines(run: subprocess.CompletedProcess) -> list[dict]:
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


def test_search_commands_pass_snapsources_parameters(resources, base_url, client, token):
    """--explain, --match, --score-threshold, --cat-id, --keyword, --group-same, --region and
    --regions reach the search: both commands answer what the API answers for the same parameters."""
    from conftest import luma_offers, main_image_url

    img_url = main_image_url(resources, luma_offers()[0])  # a photo two offers share: group_same folds them
    photo = str(resources.catalog.image_file(*img_url.removeprefix("/img/").split(".")))
    data = str(resources.settings.data_dir)
    remote = ("client", "search", img_url, "--url", base_url, "--token", token, "--json")
    local = ("search", photo, "--data", data, "--json")
    cases = (
        (
            ("--explain", "--match", "same", "--cat-id", "1028", "--keyword", "bra", "--group-same"),
            {"explain": "true", "match": "same", "cat_id": "1028", "keyword": "bra", "group_same": "true"},
        ),
        (
            ("--explain", "--score-threshold", "0.7", "--region", "0,600,0,900"),
            {"explain": "1", "score_threshold": "0.7", "region": "0,600,0,900"},
        ),
    )
    for flags, params in cases:
        api = api_items(client, token, img_url, **params)["items"]
        assert api and all(0 <= item["similarity"] <= 1 for item in api), params
        for command in (remote, local):
            got = json_lines(snapsource(*command, *flags))
            assert [(i["item_id"], i["similarity"], i["match"]) for i in got] == [
                (i["item_id"], i["similarity"], i["match"]) for i in api
            ], (command[0], flags)
            assert [i.get("same_product") for i in got] == [i.get("same_product") for i in api], (command[0], flags)
    assert any(item.get("same_product") for item in api_items(client, token, img_url, group_same="true")["items"])

    # explain's fields only when asked of the server; `search` explains unless --no-explain
    assert "similarity" not in json_lines(snapsource(*remote, "--page-size", "1"))[0]
    assert "similarity" not in json_lines(snapsource(*local, "--page-size", "1", "--no-explain"))[0]

    # regions=all: one line per box, as data.groups
    groups = api_items(client, token, img_url, regions="all", page_size=3)["groups"]
    for command in (remote, local):
        got = json_lines(snapsource(*command, "--regions", "all", "--page-size", "3", "--no-explain"))
        assert [(g["region"], g["total_count"], [i["item_id"] for i in g["items"]]) for g in got] == [
            (g["region"], g["total_count"], [i["item_id"] for i in g["items"]]) for g in groups
        ], command[0]
    for command in (remote, local):
        bad = snapsource(*command, "--match", "maybe")
        assert bad.returncode == 2 and "match" in bad.stderr, bad.stderr


def test_search_takes_a_region_of_a_new_photo(resources, client, token):
    """`search --region` on a photo from outside the catalog (which it does not keep) searches that
    box as POST /1688/search/image?region= does."""
    from imageserver import grocery_photo

    photo = grocery_photo(7)
    data = str(resources.settings.data_dir)
    run = snapsource("search", str(photo), "--data", data, "--json", "--region", "0,300,0,300", "--no-explain")
    answer = client.post(
        "/1688/search/image",
        params={"apiToken": token, "region": "0,300,0,300"},
        files={"file": (photo.name, photo.read_bytes())},
    )
    assert answer.status_code == 200, answer.text
    assert [i["item_id"] for i in json_lines(run)] == [i["item_id"] for i in answer.json()["data"]["items"]]


def test_tables_keep_item_id_and_price_whole_at_80_columns(resources, base_url, token):
    """At 80 columns, with explain's and group_same's columns too, every row shows its item_id and
    price whole and no line is wider than the terminal: the title and shop give way."""
    from rich.cells import cell_len

    from conftest import luma_offers, main_image_url

    img_url = main_image_url(resources, luma_offers()[0])
    photo = str(resources.catalog.image_file(*img_url.removeprefix("/img/").split(".")))
    data = str(resources.settings.data_dir)
    for command in (
        ("search", photo, "--data", data, "--group-same"),
        ("client", "search", img_url, "--url", base_url, "--token", token, "--explain", "--group-same"),
    ):
        items = json_lines(snapsource(*command, "--json", "--page-size", "10"))
        table = snapsource(*command, "--page-size", "10", env={"COLUMNS": "80"})
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert max(cell_len(line) for line in lines) <= 80, table.stdout
        assert len(items) >= 5 and any(item.get("same_product") for item in items)
        for item in items:
            row = next((line for line in lines if f" {item['item_id']} " in line), None)
            assert row is not None and re.search(rf" {re.escape(item['price'])} ", row), (item["item_id"], table.stdout)
        header = next(line for line in lines if "item_id" in line)
        assert all(name in header for name in ("similarity", "match", "title", "price", "shop")), header
