"""A new photo's pixel work on the pool gives what it gives in the request's thread, in order."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from conftest import LUMA, luma_offers
from imageserver import grocery_photo
from snapsource.config import Settings
from snapsource.search import queries
from snapsource.vision import hands, verify


@pytest.fixture()
def threads():
    """Set the pool's size for one test; the default (one per core) afterwards."""
    yield hands.use
    hands.use(0)


def test_one_thread_keeps_the_work_in_the_callers_thread(threads):
    threads(1)
    assert hands.submit(lambda: threading.current_thread().name).result() == threading.current_thread().name
    assert hands.each(lambda x: x * x, range(5)) == [0, 1, 4, 9, 16]
    failed = hands.submit(lambda: 1 / 0)  # raised where the pool's would be: at .result()
    with pytest.raises(ZeroDivisionError):
        failed.result()


def test_the_pool_runs_beside_the_caller_and_keeps_the_order(threads):
    threads(2)
    names = hands.each(lambda _: threading.current_thread().name, range(8))
    assert all(name.startswith("snapsource-pixels") for name in names)
    assert hands.each(lambda x: x * x, range(50)) == [x * x for x in range(50)]
    with pytest.raises(ZeroDivisionError):
        hands.submit(lambda: 1 / 0).result()


def _photos() -> list[Image.Image]:
    luma = [Image.open(LUMA.parent / offer["images"][0]).convert("RGB") for offer in luma_offers()[:3]]
    return [*luma, Image.open(grocery_photo(3)).convert("RGB")]


def test_a_photos_analysis_is_the_same_on_one_thread_and_on_the_pool(resources, threads):
    """Boxes, vectors, keypoints and the re-ranking's inliers, bit for bit."""
    photos = _photos()
    analyses, inliers = {}, {}
    for size in (1, 2):
        threads(size)
        analyses[size] = [queries.analyse(resources, photo) for photo in photos]
        candidates = [a.local for a in analyses[size]]
        mirrored = photos[0].transpose(Image.Transpose.FLIP_LEFT_RIGHT).rotate(8, fillcolor=(255, 255, 255))
        inliers[size] = verify.inliers_many(verify.extract(mirrored), candidates)
    for one, pooled in zip(analyses[1], analyses[2]):
        assert np.array_equal(one.vector, pooled.vector) and np.array_equal(one.whole, pooled.whole)
        assert one.region == pooled.region and one.regions == pooled.regions
        assert np.array_equal(one.local.points, pooled.local.points)
        assert np.array_equal(one.local.descriptors, pooled.local.descriptors)
    assert inliers[1] == inliers[2] and inliers[1][0] >= 15 > max(inliers[1][1:]), inliers  # found mirrored


@pytest.mark.parametrize("name", ["pixel_threads", "threads"])
def test_thread_counts_are_zero_or_more(name):
    with pytest.raises(ValueError, match=f"{name} \\(SNAPSOURCE_{name.upper()}\\) is 0"):
        Settings.load(environ={f"SNAPSOURCE_{name.upper()}": "-1"}).check()
