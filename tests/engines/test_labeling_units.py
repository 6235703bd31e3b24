"""The labeling loop's pure parts: clustering, the image measures auto-grouping may cluster on, and the
validated forms of autoTag's query and findHardExamples' scope."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from engines.clustering import cluster
from engines.image_features import (
    feature_of,
    features_batch,
    fit_within_batch,
    larger_than,
)
from gateway.errors import InvalidInput
from gateway.services.labeling.jobs import check_resolution, parse_scope
from gateway.services.selection import parse_query


def blobs_around(centres: np.ndarray, per: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(centres)), per)
    x = centres[truth] + rng.normal(scale=0.05, size=(truth.size, centres.shape[1]))
    return x / np.linalg.norm(x, axis=1, keepdims=True), truth


def test_kmeans_groups_are_numbered_largest_first_with_their_nearest_member_as_representative() -> None:
    centres = np.eye(4, 16)
    x, truth = blobs_around(centres, 10)
    x, truth = np.vstack([x, x[:5]]), np.concatenate([truth, truth[:5]])  # group 0 is the largest
    found = cluster(x, n_clusters=4, similarity_threshold=None)
    sizes = np.bincount(found.labels)
    assert list(sizes) == sorted(sizes, reverse=True) and sizes[0] == 15
    for g, rep in enumerate(found.representatives):
        rows = np.flatnonzero(found.labels == g)
        assert len(set(truth[rows])) == 1  # well-separated blobs come back whole
        centre = x[rows].mean(axis=0)
        assert rep == rows[np.argmin(np.linalg.norm(x[rows] - centre, axis=1))]
        np.testing.assert_allclose(found.distances[rows], np.linalg.norm(x[rows] - centre, axis=1))


def test_a_similarity_threshold_decides_how_many_groups() -> None:
    centres = np.array([[1.0, 0, 0], [0, 1.0, 0], [0.95, 0.31, 0]])  # the third is 0.95 similar to the first
    x, _ = blobs_around(centres, 8)
    assert len(cluster(x, n_clusters=None, similarity_threshold=0.99).representatives) == 3
    assert len(cluster(x, n_clusters=None, similarity_threshold=0.8).representatives) == 2
    assert len(cluster(x, n_clusters=None, similarity_threshold=0.01).representatives) == 1


@pytest.mark.parametrize("bad", [dict(n_clusters=0, similarity_threshold=None), dict(n_clusters=5, similarity_threshold=None),
                                 dict(n_clusters=None, similarity_threshold=None), dict(n_clusters=2, similarity_threshold=0.5)])
def test_cluster_refuses_impossible_requests(bad: dict) -> None:
    with pytest.raises(ValueError):
        cluster(np.eye(4), **bad)


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_the_image_measures_mean_what_they_say() -> None:
    rng = np.random.default_rng(1)
    sharp = Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8), "L").convert("RGB")
    blurred = sharp.filter(ImageFilter.GaussianBlur(3))
    assert feature_of(sharp, "blur") > feature_of(blurred, "blur") + 2  # log scale: far sharper
    assert feature_of(Image.new("RGB", (8, 8), (255, 255, 255)), "brightness") == pytest.approx(255, abs=0.5)
    assert feature_of(Image.new("RGB", (8, 8), (0, 0, 0)), "brightness") == 0
    assert feature_of(Image.new("RGB", (8, 8), (128, 128, 128)), "colorfulness") == 0
    assert feature_of(Image.new("RGB", (8, 8), (255, 0, 0)), "colorfulness") > 50
    assert features_batch([png(sharp), b"not an image"], "brightness")[1] is None


def test_fit_within_downscales_only_larger_images_keeping_their_aspect() -> None:
    big, small = png(Image.new("RGB", (1200, 600), (10, 20, 30))), png(Image.new("RGB", (100, 50)))
    assert larger_than(big, 300, 300) and not larger_than(small, 300, 300) and not larger_than(b"junk", 1, 1)
    fitted, same, junk = fit_within_batch([big, small, b"junk"], 300, 300)
    assert Image.open(io.BytesIO(fitted)).size == (300, 150)
    assert same == small and junk == b"junk"


def test_the_query_form() -> None:
    assert parse_query(None) == {} and parse_query("  ") == {}
    assert parse_query("annotation.label=Bird") == {"entity_name": "Bird"}
    assert parse_query('entity.name="cats AND dogs" and identifier.contentType=image/png') == {
        "entity_name": "cats AND dogs", "content_type": "image/png"}
    for bad, fragment in [("colour=red", "unknown field"), ("entity.name", "field=value"), ("entity.name=", "needs a value"),
                          ('entity.name="x', "not closed"), ("entity.name=a AND entity.name=b", "twice"),
                          ("entity.name~x", "field=value"), ("x" * 1001, "longer")]:
        with pytest.raises(InvalidInput, match=fragment):
            parse_query(bad)


def test_the_confidence_scope_and_resolution() -> None:
    assert parse_scope(None) == (0.1, 0.9) and parse_scope(" 0-1 ") == (0.0, 1.0)
    for bad in ("0.9-0.1", "0.5-0.5", "0.1-1.2", "-0.1-0.5", "a-b", "0.1", ""):
        with pytest.raises(InvalidInput):
            parse_scope(bad)
    assert check_resolution(None) == (300, 300) and check_resolution([480, 480]) == (480, 480)
    for bad in ([300], [300, 300, 3], [7, 300], [300, 5000], [True, 300]):
        with pytest.raises(InvalidInput):
            check_resolution(bad)
