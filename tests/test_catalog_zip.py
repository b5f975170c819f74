"""What the catalog API imports besides files of URLs, over real HTTP: a zip of a catalog file and
its photos (uploaded, or fetched from a URL), this server's own /img/ URLs, TOML mappings; and the
zips it refuses before writing a byte (links, climbing names, bombs, too many members).

The server allows no loopback fetches here (no fetch_allow): its own http://127.0.0.1/img/ URLs
are read from the store, and only a zip's own folder is read from its disk.
"""

from __future__ import annotations

import io
import json
import os
import resource
import socket
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import LUMA, luma_offers, open_resources, profile_env, profile_settings
from snapsource.api.app import create_app
from snapsource.ingest import archive, jobs
from snapsource.store.jobs import JobTable, QueueLimits
from snapsource.tools.loopback import serve
from test_catalog_api import ADMIN, photo_server, wait_for_job

pytestmark = pytest.mark.profiles

MAPPING_TOML = """
[columns]
"Artikelnummer" = "item_id"
"Bezeichnung" = "title"
"Bild" = "img"
"Weitere Bilder" = "images"
"Preis" = "price"

[prices]
decimal_comma = true
"""


def running(resources):
    """A real server with an import runner over these resources: (resources, client, url)."""
    app = create_app(resources=resources)
    runner = jobs.Runner(resources).start()
    app.state.import_runner = runner
    try:
        with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
            yield resources, client, url
    finally:
        runner.stop()
        resources.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """An empty catalog behind a real server; loopback fetches refused."""
    yield from running(open_resources(tmp_path_factory.mktemp("catalog-zip"), admin_key="catalog-admin-key"))


@pytest.fixture(scope="module")
def fetching(tmp_path_factory):
    """The same, allowed to fetch catalog files from loopback (a local file server)."""
    data = tmp_path_factory.mktemp("catalog-zip-url")
    yield from running(open_resources(data, admin_key="catalog-admin-key", fetch_allow="127.0.0.1"))


def german_csv(offers: list[dict], photo: Callable[[str], str]) -> str:
    """The offers as a German shop's CSV: its own column names, decimal commas, photo paths by `photo`."""
    lines = ["Artikelnummer;Bezeichnung;Bild;Weitere Bilder;Preis"]
    for offer in offers:
        price = offer["price"].replace(".", ",")
        more = "|".join(photo(ref) for ref in extra_photos(offer))
        lines.append(f"{offer['item_id']};{offer['title']};{photo(offer['img'])};{more};{price}")
    return "\n".join(lines) + "\n"


def extra_photos(offer: dict) -> list[str]:
    return [ref for ref in offer["images"] if ref != offer["img"]][:1]


def zipped(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def shop_zip(offers: list[dict], extra_rows: list[str] = (), photo_folder: str = "bilder/") -> bytes:
    """A folder `shop/` of the German CSV and its photos, zipped as Finder does (with __MACOSX);
    the CSV names the photos in `photo_folder`."""
    csv = german_csv(offers, lambda ref: photo_folder + Path(ref).name) + "".join(row + "\n" for row in extra_rows)
    files = {"shop/artikel.csv": csv.encode(), "__MACOSX/shop/._artikel.csv": b"\x00\x05\x16\x07"}
    for offer in offers:
        for ref in [offer["img"], *extra_photos(offer)]:
            files["shop/bilder/" + Path(ref).name] = (LUMA.parent / ref).read_bytes()
    return zipped(files)


def first_found(client: httpx.Client, token: str, photo: Path) -> int | None:
    answer = client.post(
        "/1688/search/image", params={"apiToken": token, "page_size": 3}, files={"file": (photo.name, photo.read_bytes())}
    ).json()
    items = answer["data"]["items"] if answer["code"] == 200 else []
    return items[0]["item_id"] if items else None


def imports_left(resources) -> list[str]:
    folder = resources.settings.data_dir / "imports"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_zip_of_a_csv_and_its_photos_imports_with_a_toml_mapping(world):
    resources, client, _ = world
    token = resources.tokens.create("zip")
    offers = luma_offers()[60:64]
    bad_rows = [
        "9001;Climbs out;../../../../etc/hostname;;1,00",  # outside the catalog's folder
        "9002;Absolute;/etc/hostname;;1,00",
        "9003;Missing photo;bilder/nothing.jpg;;1,00",
    ]
    body = shop_zip(offers, bad_rows)
    started = client.post(
        "/catalog/imports",
        files={"file": ("shop.zip", body)},
        data={"mapping": MAPPING_TOML},  # pasted as the docs show it: TOML
        headers=ADMIN,
    )
    assert started.status_code == 200, started.text
    assert started.json()["data"]["format"] == "csv" and started.json()["data"]["source"] == "shop.zip"
    job = wait_for_job(client, started.json()["data"]["id"])
    assert job["status"] == "done", job
    # rows none of whose photos can be read are skipped with the reason, the others imported
    assert job["counts"]["added"] == 4 and job["counts"]["skipped"] == 3, json.dumps(job)
    assert job["counts"]["images_embedded"] == sum(1 + len(extra_photos(o)) for o in offers) == 7
    assert job["counts"]["images_failed"] == 3
    reasons = {p["item_id"]: p["reason"] for p in job["problems"]}
    assert "outside the catalog file's folder" in reasons[9001] and "outside the catalog file's folder" in reasons[9002]
    assert "nothing.jpg" in reasons[9003]
    for offer in offers:
        assert first_found(client, token, LUMA.parent / offer["img"]) == offer["item_id"]
    stored = client.get(f"/catalog/offers/{offers[0]['item_id']}", headers=ADMIN).json()["data"]
    assert stored["offer"]["price"] == offers[0]["price"] and all(i["embedded"] for i in stored["images"])
    assert job["id"] not in imports_left(resources)  # the unpacked zip is gone once the job is done


def test_a_zip_fetched_from_a_url_imports_too(fetching, tmp_path):
    resources, client, _ = fetching
    offers = luma_offers()[64:66]
    (tmp_path / "feed.zip").write_bytes(shop_zip(offers))
    with photo_server(tmp_path) as files:
        started = client.post("/catalog/imports", json={"url": files + "feed.zip", "mapping": MAPPING_TOML}, headers=ADMIN)
        assert started.status_code == 200, started.text
        job = wait_for_job(client, started.json()["data"]["id"])
        assert job["status"] == "done" and job["counts"]["added"] == 2 and job["counts"]["images_embedded"] == 4, json.dumps(job)
        assert job["format"] == "csv" and job["id"] not in imports_left(resources)
        (tmp_path / "bad.zip").write_bytes(zipped({"../evil.csv": b"x"}))
        refused = client.post("/catalog/imports", json={"url": files + "bad.zip"}, headers=ADMIN)
        job = wait_for_job(client, refused.json()["data"]["id"])
    assert job["status"] == "failed" and "climbs out of the zip" in job["error"], job


def test_this_servers_own_image_urls_are_read_from_the_store(world):
    """A CSV naming photos by the URLs this server gave (a result's `img`, an upload's image_url)
    imports, though the guarded fetcher refuses loopback addresses."""
    resources, client, url = world
    offers = luma_offers()[66:68]
    token = resources.tokens.create("own-urls")
    uploaded = []
    for offer in offers:
        photo = LUMA.parent / offer["img"]
        answer = client.post(
            "/1688/tools/image/upload", params={"apiToken": token}, files={"file": (photo.name, photo.read_bytes())}
        ).json()
        assert answer["code"] == 200, answer
        uploaded.append(answer["data"]["image_url"])
    absolute = [ref if ref.startswith("http") else url.rstrip("/") + ref for ref in uploaded]
    assert all(ref.startswith("http://127.0.0.1:") for ref in absolute)
    rows = ["item_id,title,img,price"] + [f"{o['item_id']},{o['title']},{ref},{o['price']}" for o, ref in zip(offers, absolute)]
    rows.append(f"9101,Not held here,{url.rstrip('/')}/img/{'0' * 64}.jpg,2.00")  # loopback, and not ours: refused
    started = client.post("/catalog/imports", files={"file": ("own.csv", "\n".join(rows).encode())}, headers=ADMIN)
    job = wait_for_job(client, started.json()["data"]["id"])
    assert job["status"] == "done" and job["counts"]["added"] == 2 and job["counts"]["skipped"] == 1, json.dumps(job)
    assert "public" in job["problems"][0]["reason"] or "address" in job["problems"][0]["reason"], job["problems"]
    for offer in offers:
        assert first_found(client, token, LUMA.parent / offer["img"]) == offer["item_id"]


def link_member(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    info.create_system = 3
    return info


def hostile_zips() -> dict[str, tuple[bytes, str]]:
    """Each zip the API must refuse, and words its message must hold."""
    csv = b"item_id,title,img,price\n1,A,photos/a.jpg,1.00\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("catalog.csv", csv)
        zf.writestr(link_member("photos/a.jpg", "/etc/passwd"), "/etc/passwd")
    link = buffer.getvalue()
    bomb = zipped({"catalog.csv": csv, "photos/a.jpg": b"\0" * 300_000_000})
    damaged = bytearray(zipped({"catalog.csv": csv * 2000}))
    damaged[200] ^= 0xFF  # inside the deflated bytes: the checksum no longer matches
    return {
        "climbs": (zipped({"catalog.csv": csv, "../../evil.jpg": b"x"}), "climbs out of the zip"),
        "absolute": (zipped({"catalog.csv": csv, "/tmp/evil.jpg": b"x"}), "absolute path"),
        "link": (link, "symbolic link"),
        "bomb": (bomb, "zip bomb"),
        "two catalogs": (zipped({"a.csv": csv, "b.jsonl": b"{}"}), "2 catalog files"),
        "no catalog": (zipped({"photos/a.jpg": b"x"}), "no catalog file"),
        "damaged": (bytes(damaged), "is damaged"),
        "truncated": (zipped({"catalog.csv": csv})[:-30], "not a zip file that can be read"),
        "empty rows": (zipped({"catalog.csv": b"item_id,title,img,price\n"}), "has no offers"),
        "encrypted": (encrypted_flag(zipped({"catalog.csv": csv})), "encrypted"),
        "bzip2": (zipped({"catalog.csv": csv}, zipfile.ZIP_BZIP2), "other than deflate"),
        "file then folder": (zipped({"catalog.csv": csv, "x": b"1", "x/y.jpg": b"2"}), "could not be written"),
    }


def encrypted_flag(data: bytes) -> bytes:
    """A zip whose member says it is encrypted (bit 0 of its flags, local and central headers)."""
    data = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        data[at + offset] |= 0x1
    return bytes(data)


def test_hostile_zips_are_refused_before_anything_is_written(world):
    resources, client, _ = world
    before_jobs = {j["id"] for j in client.get("/catalog/imports", headers=ADMIN).json()["data"]["jobs"]}
    before_offers = resources.catalog.count()
    for case, (body, words) in hostile_zips().items():
        started = time.monotonic()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        answer = client.post("/catalog/imports", files={"file": (f"{case}.zip", body)}, headers=ADMIN)
        took = time.monotonic() - started
        assert answer.status_code == 422 and answer.json()["code"] == 422, (case, answer.text)
        assert words in answer.json()["msg"], (case, answer.json()["msg"])
        assert "Error" not in answer.json()["msg"] and "Traceback" not in answer.json()["msg"], case
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss
        print(f"{case}: 422 in {took * 1000:.0f} ms, peak RSS +{grew / 1024:.0f} MB: {answer.json()['msg']}")
    assert set(imports_left(resources)) <= before_jobs, imports_left(resources)  # nothing unpacked stays
    after_jobs = {j["id"] for j in client.get("/catalog/imports", headers=ADMIN).json()["data"]["jobs"]}
    assert after_jobs == before_jobs  # no job was made
    assert resources.catalog.count() == before_offers
    assert client.get("/healthz").status_code == 200


def test_a_zip_listing_too_many_members_is_refused_before_zipfile_reads_them(world):
    """The central directory's size is read first: a 64 MB zip of empty members would cost zipfile
    half a gigabyte of ZipInfo objects."""
    resources, client, _ = world
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("catalog.csv", b"item_id,title,img,price\n1,A,https://img.example/a.jpg,1.00\n")
        for number in range(archive.MAX_MEMBERS + 1):
            zf.writestr(f"p/{number:06x}-{'x' * 200}", b"")
    started = time.monotonic()
    answer = client.post("/catalog/imports", files={"file": ("many.zip", buffer.getvalue())}, headers=ADMIN)
    assert answer.status_code == 422 and f"{archive.MAX_MEMBERS:,}" in answer.json()["msg"], answer.text
    print(f"{archive.MAX_MEMBERS + 1:,} members ({len(buffer.getvalue()):,} bytes): 422 in {time.monotonic() - started:.2f} s")
    assert not [name for name in imports_left(resources) if "many" in name]


def test_mappings_are_json_or_toml_and_bad_ones_say_why(world):
    _, client, _ = world
    csv = b"Artikelnummer;Bezeichnung;Bild;Weitere Bilder;Preis\n1;A;https://img.example/a.jpg;;1,00\n"
    cases = {
        "[columns\n": "neither a JSON object nor valid TOML",
        '{"columns": {"A": "item_id"': "not valid JSON",
        "a = " + "[" * 50_000: "nests too deeply",
        'constants = { "shop_info.company_name" = 1979-05-27T07:32:00Z }': "quote dates",
        "[" * 50_000: "neither a JSON object nor valid TOML",
        json.dumps({"columns": {"Artikelnummer": "nope"}}): "nope",
    }
    for text, words in cases.items():
        answer = client.post("/catalog/imports", files={"file": ("a.csv", csv)}, data={"mapping": text}, headers=ADMIN)
        assert answer.status_code == 422 and words in answer.json()["msg"], (text[:40], answer.text[:300])
    as_json = json.dumps(
        {
            "columns": {"Artikelnummer": "item_id", "Bezeichnung": "title", "Bild": "img", "Preis": "price"},
            "prices": {"decimal_comma": True},
        }
    )
    for text in (as_json, MAPPING_TOML):
        answer = client.post("/catalog/imports", files={"file": ("a.csv", csv)}, data={"mapping": text}, headers=ADMIN)
        assert answer.status_code == 200, answer.text
        wait_for_job(client, answer.json()["data"]["id"])


def test_snapsource_ingest_takes_the_same_zip(tmp_path):
    """The command reads a zip like the API: unpacked for the run, its photos from its folder."""
    offers = luma_offers()[72:74]
    (tmp_path / "shop.zip").write_bytes(shop_zip(offers))
    (tmp_path / "shop.toml").write_text(MAPPING_TOML)
    data = tmp_path / "d"
    where = profile_settings()  # one catalog for the command and the check (a fresh one per call otherwise)
    env = {**os.environ, **profile_env(where), "COLUMNS": "200"}
    command = [sys.executable, "-m", "snapsource", "ingest", str(tmp_path / "shop.zip"), "--mapping", str(tmp_path / "shop.toml")]
    done = subprocess.run([*command, "--data", str(data)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "added 2" in done.stderr and "format: csv" in done.stderr, done.stderr
    resources = open_resources(data, **where)
    try:
        assert resources.catalog.count() == 2
    finally:
        resources.close()
    (tmp_path / "bad.zip").write_bytes(zipped({"catalog.csv": b"x", "../up.jpg": b"x"}))
    refused = subprocess.run(
        [*command[:4], str(tmp_path / "bad.zip"), "--data", str(tmp_path / "e")], capture_output=True, text=True, env=env
    )
    assert refused.returncode == 2 and "climbs out of the zip" in refused.stderr and not (tmp_path / "e").exists(), refused.stderr


def test_a_photo_path_with_a_nul_byte_skips_its_row_only(world):
    resources, client, _ = world
    offer = luma_offers()[74]
    good = dict(offer, img="photos/a.jpg", images=[])
    bad = dict(luma_offers()[75], img="photos/f\u0000.jpg", images=[])
    body = zipped(
        {
            "catalog.jsonl": (json.dumps(good) + "\n" + json.dumps(bad) + "\n").encode(),
            "photos/a.jpg": (LUMA.parent / offer["img"]).read_bytes(),
        }
    )
    started = client.post("/catalog/imports", files={"file": ("nul.zip", body)}, headers=ADMIN)
    job = wait_for_job(client, started.json()["data"]["id"])
    assert job["status"] == "done" and job["counts"]["added"] == 1 and job["counts"]["skipped"] == 1, json.dumps(job)
    assert "not a file name" in job["problems"][0]["reason"]
    assert job["id"] not in imports_left(resources)


def test_files_that_cannot_import_are_refused_at_upload_with_what_to_do(world):
    """What would fail every row fails the upload instead, with one message (no job is made)."""
    resources, client, _ = world
    offer = luma_offers()[76]
    paths_only = german_csv([offer], lambda ref: "bilder/" + Path(ref).name).encode()
    as_jsonl = (json.dumps(offer) + "\n").encode()
    mapping = {"columns": {"Artikelnummer": "item_id", "Bezeichnung": "title", "Bild": "img", "Preis": "price"}}
    cases = [
        ({"file": ("artikel.csv", paths_only)}, {"mapping": MAPPING_TOML}, "put it and its photos in one zip"),
        ({"file": ("artikel.csv", paths_only)}, {"mapping": MAPPING_TOML, "format": "jsonl"}, "named jsonl, but it reads as csv"),
        ({"file": ("offers.jsonl", as_jsonl)}, {"format": "csv"}, "named csv, but it reads as jsonl"),
        (
            {"file": ("a.csv", paths_only)},
            {"mapping": json.dumps({**mapping, "columns": {**mapping["columns"], "Weitere Bilder": "source"}})},
            "'source' is set by snapsource",
        ),
        (
            {"file": ("a.csv", paths_only)},
            {"mapping": '"Artikelnummer" = "item_id"\n'},
            'go under [columns], as "Artikelnummer" = "item_id"',
        ),
    ]
    before = imports_left(resources)
    for files, data, words in cases:
        answer = client.post("/catalog/imports", files=files, data=data, headers=ADMIN)
        assert answer.status_code == 422 and words in answer.json()["msg"], (words, answer.text[:300])
        assert "Extra inputs" not in answer.json()["msg"]
    assert imports_left(resources) == before


def test_photo_paths_written_from_the_zips_top_folder_are_found(world):
    """`shop/bilder/a.jpg` in shop/artikel.csv is the file's `bilder/a.jpg`; a second import of the
    same zip reuses every photo; a job that keeps no row says it imported nothing."""
    _, client, _ = world
    offers = luma_offers()[77:79]

    def run(body: bytes) -> dict:
        started = client.post(
            "/catalog/imports", files={"file": ("shop.zip", body)}, data={"mapping": MAPPING_TOML}, headers=ADMIN
        )
        job = wait_for_job(client, started.json()["data"]["id"])
        assert job["status"] == "done", json.dumps(job)
        return job

    from_top = shop_zip(offers, photo_folder="shop/bilder/")
    for counts in ({"added": 2, "images_embedded": 4, "images_reused": 0}, {"unchanged": 2, "images_reused": 4}):
        job = run(from_top)
        assert job["imported"] == 2 and {name: job["counts"][name] for name in counts} == counts, json.dumps(job)
    job = run(shop_zip(offers, photo_folder="elsewhere/"))
    assert job["imported"] == 0 and job["counts"]["skipped"] == 2, json.dumps(job)
    assert all(p["skipped"] for p in job["problems"]) and len(job["problems"]) == 2


def test_the_import_queue_is_bounded_per_token_and_in_bytes(tmp_path):
    """With no runner, jobs stay queued: a token's next job is refused before its upload is read,
    and an upload whose files would pass the bytes the queue may hold is refused before a byte of
    it is written."""
    resources = open_resources(
        tmp_path / "d", admin_key="catalog-admin-key", catalog_imports_per_token=1, catalog_imports_waiting_max_bytes=3_000_000
    )
    token = resources.tokens.create("shop", scopes=["catalog"])
    offer = luma_offers()[80]
    csv = german_csv([offer], lambda ref: "https://img.example/" + Path(ref).name).encode()
    app = create_app(resources=resources)
    try:
        with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
            as_token = {"Authorization": f"Bearer {token}"}
            first = client.post(
                "/catalog/imports", files={"file": ("a.csv", csv)}, data={"mapping": MAPPING_TOML}, headers=as_token
            )
            assert first.status_code == 200, first.text
            for _ in range(3):
                refused = client.post("/catalog/imports", files={"file": ("b.csv", csv)}, headers=as_token)
                assert refused.status_code == 503 and "this token has 1 import job" in refused.json()["msg"], refused.text
                assert refused.headers["Retry-After"]
            # the admin key has no job count, but the bytes the queue holds count for everyone
            photos = {f"shop/bilder/{i}.jpg": os.urandom(1_000_000) for i in range(4)}  # 4 MB, stored as they are
            body = zipped({"shop/artikel.csv": csv, **photos}, zipfile.ZIP_STORED)
            before = imports_left(resources)
            refused = client.post(
                "/catalog/imports", files={"file": ("shop.zip", body)}, data={"mapping": MAPPING_TOML}, headers=ADMIN
            )
            assert refused.status_code == 503 and "catalog_imports_waiting_max_bytes" in refused.json()["msg"], refused.text
            assert imports_left(resources) == before  # nothing unpacked, the zip itself removed
            small = zipped({"shop/artikel.csv": csv, "shop/bilder/0.jpg": photos["shop/bilder/0.jpg"]}, zipfile.ZIP_STORED)
            taken = client.post(
                "/catalog/imports", files={"file": ("shop.zip", small)}, data={"mapping": MAPPING_TOML}, headers=ADMIN
            )
            assert taken.status_code == 200, taken.text
            assert len(client.get("/catalog/imports", headers=ADMIN).json()["data"]["jobs"]) == 2
            # refused before its body is read: headers that announce 60 MB, and not a byte of it sent
            host, port = urlsplit(url).hostname, urlsplit(url).port
            with socket.create_connection((host, port), timeout=10) as raw:
                raw.sendall(
                    f"POST /catalog/imports HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                    "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 60000000\r\n\r\n".encode()
                )
                assert raw.recv(200).startswith(b"HTTP/1.1 503"), "the upload was waited for"
    finally:
        resources.close()


def test_the_queue_limits_hold_across_servers_on_one_catalog(tmp_path):
    """Two servers on one data dir, a token at 1 job, 8 uploads at once to both: one is accepted
    (each check and its reservation are one transaction). An upload whose server died mid-way is
    swept with its files, and so is a folder no job names."""
    data = tmp_path / "d"
    # one catalog for both (the scale-out profile makes a fresh PostgreSQL database per call otherwise)
    settings = {**profile_settings(), "admin_key": "catalog-admin-key", "catalog_imports_per_token": 1}
    one, two = open_resources(data, **settings), open_resources(data, **settings)
    token = one.tokens.create("shop", scopes=["catalog"])
    csv = german_csv([luma_offers()[81]], lambda ref: "https://img.example/" + Path(ref).name).encode()
    try:
        with serve(create_app(resources=one)) as first, serve(create_app(resources=two)) as second:

            def send(n: int) -> int:
                with httpx.Client(timeout=60) as client:
                    return client.post(
                        f"{(first, second)[n % 2]}/catalog/imports",
                        files={"file": ("a.csv", csv)},
                        data={"mapping": MAPPING_TOML},
                        headers={"Authorization": f"Bearer {token}"},
                    ).status_code

            for url in (first, second):  # each app builds its routes on its first request: not in the race
                assert httpx.get(f"{url}/catalog/imports", headers=ADMIN, timeout=60).status_code == 200
            with ThreadPoolExecutor(8) as pool:
                codes = sorted(pool.map(send, range(8)))
            assert codes == [200] + [503] * 7, codes
        table = JobTable(one.catalog)
        owner = f"{socket.gethostname()}:{dead_pid()}:receiving"  # a server killed while it unpacked
        assert table.reserve("imp_dead", "admin", owner, time.time(), QueueLimits(1, 10**9)) is None
        (data / "imports" / "imp_dead" / ".unpacked").mkdir(parents=True)
        orphan = data / "imports" / "imp_orphan"
        orphan.mkdir()
        os.utime(orphan, (time.time() - 7200, time.time() - 7200))
        jobs.Runner(one).sweep()
        assert "imp_dead" not in table.ids() and not (data / "imports" / "imp_dead").exists() and not orphan.exists()
    finally:
        one.close()
        two.close()


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_shop_folder_zipped_as_it_is_imports_and_its_offers_are_found_by_sku(world):
    """What a shop owner's first tries looked like: the mapping sent as a file (curl -F mapping=@),
    or zipped in the folder beside the CSV; photo names in other letter case or with Windows
    backslashes; the offer then looked up by its SKU."""
    _, client, _ = world
    offers = luma_offers()[82:84]
    lines = ["Artikelnummer;Bezeichnung;Bild;Weitere Bilder;Preis"]
    files: dict[str, bytes] = {}
    for n, offer in enumerate(offers):
        name = Path(offer["img"]).name
        files[f"shop/Bilder/{name}"] = (LUMA.parent / offer["img"]).read_bytes()
        written = f"bilder/{name.upper()}" if n == 0 else f"Bilder\\{name}"  # case, then a backslash
        lines.append(f"SKU-{offer['item_id']};{offer['title']};{written};;{offer['price'].replace('.', ',')}")
    files["shop/artikel.csv"] = ("\n".join(lines) + "\n").encode()
    as_file = client.post(
        "/catalog/imports",
        files={"file": ("shop.zip", zipped(files)), "mapping": ("artikel.toml", MAPPING_TOML.encode())},
        headers=ADMIN,
    )
    assert as_file.status_code == 200, as_file.text
    job = wait_for_job(client, as_file.json()["data"]["id"])
    assert job["counts"]["added"] == 2 and job["counts"]["skipped"] == 0, json.dumps(job)
    beside = client.post(
        "/catalog/imports",
        files={"file": ("shop.zip", zipped({**files, "shop/artikel.toml": MAPPING_TOML.encode()}))},
        headers=ADMIN,
    )
    assert beside.status_code == 200, beside.text
    assert wait_for_job(client, beside.json()["data"]["id"])["counts"]["unchanged"] == 2
    found = client.get(f"/catalog/offers/by-key/SKU-{offers[0]['item_id']}", headers=ADMIN)
    assert found.status_code == 200 and found.json()["data"]["offer"]["title"] == offers[0]["title"], found.text
    missing = client.get("/catalog/offers/by-key/SKU-nope", headers=ADMIN).json()
    assert missing["code"] == 404 and "'SKU-nope'" in missing["msg"] and "item_id" in missing["msg"]
    wrong_key = client.get("/catalog/offers", headers={"Authorization": "Bearer not-the-key"}).json()
    assert wrong_key["code"] == 401 and "admin key" in wrong_key["msg"] and "--scope catalog" in wrong_key["msg"]
    semicolons = client.post(
        "/catalog/imports", files={"file": ("a.csv", files["shop/artikel.csv"])}, data={"format": "tsv"}, headers=ADMIN
    )
    assert semicolons.status_code == 422 and "has no tab" in semicolons.json()["msg"], semicolons.text


def test_odd_files_the_probe_sent_get_a_clear_answer_in_bounded_memory(world):
    """A member with no name, files of a byte order mark only, a JSON line of 40 MB and a header of
    3 million columns: each answered in plain words (no 500), each read without holding it whole."""
    resources, client, _ = world
    offer = luma_offers()[85]
    row = json.dumps(dict(offer, img="a.jpg", images=[])) + "\n"
    noname = io.BytesIO()
    with zipfile.ZipFile(noname, "w") as zf:
        zf.writestr("catalog.jsonl", row)
        zf.writestr(zipfile.ZipInfo(""), b"x")
        zf.writestr("a.jpg", (LUMA.parent / offer["img"]).read_bytes())
    taken = client.post("/catalog/imports", files={"file": ("noname.zip", noname.getvalue())}, headers=ADMIN)
    assert taken.status_code == 200, taken.text
    assert wait_for_job(client, taken.json()["data"]["id"])["counts"]["added"] == 1
    for name, body in (("bom.csv", b"\xef\xbb\xbf"), ("bom2.csv", b"\xef\xbb\xbf \r\n"), ("bom.jsonl", b"\xef\xbb\xbf   ")):
        answer = client.post("/catalog/imports", files={"file": (name, body)}, headers=ADMIN)
        assert answer.status_code == 422 and "has no offers" in answer.json()["msg"], (name, answer.text)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    by_url = json.dumps(dict(offer, img="https://img.example/a.jpg", images=[])) + "\n"
    long_line = json.dumps(dict(offer, title="x" * 40_000_000)) + "\n" + by_url
    answer = client.post("/catalog/imports", files={"file": ("long.jsonl", long_line.encode())}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    job = wait_for_job(client, answer.json()["data"]["id"])
    assert job["problems"][0]["row"] == 1 and "longer than 32 MB" in job["problems"][0]["reason"], json.dumps(job)[:500]
    wide = client.post("/catalog/imports", files={"file": ("wide.csv", b"a;" * 3_000_000 + b"\n1;2\n")}, headers=ADMIN)
    assert wide.status_code == 422 and "longer than 4 MB" in wide.json()["msg"], wide.text[:300]
    grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
    assert grew < 400, f"peak RSS grew {grew:.0f} MB"  # the 40 MB line is in the test's memory too


def test_files_that_parse_to_many_times_their_size_are_refused_before_they_are_parsed(world):
    """The second probe's uploads (each under catalog_max_bytes): a JSON document of millions of
    empty objects, a JSON line of them, a CSV record spread over many lines by a quoted cell, and
    shop exports of 1,000 columns; each is refused or read a few cells a row at a time."""
    resources, client, _ = world
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    doc = "[\n" + ",".join(["{}", "[]"] * 3_000_000) + "]\n"
    line = "[" + ",".join(["{}", "[]"] * 3_000_000) + "]\n"
    multi = 'item_id,title,price,images\n1,t,1,"' + "\n".join("ab," * 300_000 for _ in range(30)) + '"\n'
    woo = "Type,SKU,Images,Name,Regular price," + ",".join(f"c{i}" for i in range(995)) + "\n"
    woo += ("simple,s,https://img.example/a.jpg,n,1," + ",".join(["ab"] * 995) + "\n") * 3000
    cases = {
        "doc.json": (doc, "more than 200,000 in one JSON document"),
        "line.jsonl": (line, "more than 20,000 in one row"),
        "multi.csv": (multi, "longer than 16 MB"),
    }
    for name, (text, words) in cases.items():
        answer = client.post("/catalog/imports", files={"file": (name, text.encode())}, headers=ADMIN)
        if answer.status_code == 200:
            reason = wait_for_job(client, answer.json()["data"]["id"])["problems"][0]["reason"]
        else:
            reason = answer.json()["msg"]
        assert words in reason, (name, answer.text[:300], reason)
    answer = client.post("/catalog/imports", files={"file": ("woo.csv", woo.encode())}, headers=ADMIN)
    assert answer.status_code == 200, answer.text[:300]
    assert wait_for_job(client, answer.json()["data"]["id"])["status"] == "done"
    grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
    assert grew < 400, f"peak RSS grew {grew:.0f} MB"  # the texts themselves are built in this process too
