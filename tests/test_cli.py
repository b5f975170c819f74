"""Command-line details a user relies on."""

from __future__ import annotations

import logging
import subprocess
import sys

from snapsource.api.middleware import MaskToken


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
    run = subprocess.run(
        [sys.executable, "-m", "snapsource", "info", "--data", str(tmp_path)],
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
