"""Every setting is documented; the README keeps its two set-up commands."""

from __future__ import annotations

from conftest import ROOT
from snapsource.config import SETTINGS, Settings


def test_settings_are_documented():
    text = (ROOT / "docs" / "settings.md").read_text()
    for setting in SETTINGS:
        assert f"`{setting.name}`" in text, setting.name
        assert f"SNAPSOURCE_{setting.name.upper()}" in text, setting.name


def test_settings_table_matches_dataclass():
    assert {s.name for s in SETTINGS} == set(Settings.__dataclass_fields__)
    loaded = Settings.load(environ={"SNAPSOURCE_CANDIDATE_CAP": "50"}, similarity_threshold=0.5)
    assert loaded.candidate_cap == 50 and loaded.similarity_threshold == 0.5


def test_readme_starts_with_make_demo_and_make_test():
    text = (ROOT / "README.md").read_text()
    assert text.index("make demo") < text.index("make test")


def test_readme_upload_example_names_a_real_photo():
    import re

    text = (ROOT / "README.md").read_text()
    photos = re.findall(r"curl -F file=@(\S+) ", text)
    assert photos and all((ROOT / photo).is_file() for photo in photos), photos


def test_readme_command_table_uses_the_apis_flags():
    text = (ROOT / "README.md").read_text()
    for old in ("--factory", "--max-price", "--min-price"):
        assert old not in text, old
    assert "snapsource client search PHOTO_OR_URL" in text and "--is-factory" in text and "--price-end" in text
