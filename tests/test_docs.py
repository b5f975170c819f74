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
