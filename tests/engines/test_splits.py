"""Training/validation/test splits (engines/splits.py) and the engines' test-split metrics (issue #15)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from engines.classifier import ClassifierEngine
from engines.gallery import GalleryEngine
from engines.interface import EngineConfigError, EngineError, IdentifierRef
from engines.splits import split_rows
from tests.engines.memory_context import MemoryContext

GALLERY, CLASSIFIER = GalleryEngine(), ClassifierEngine()


def _labels(per_entity: list[int]) -> np.ndarray:
    return np.concatenate([np.full(n, e) for e, n in enumerate(per_entity)])


def test_fractions_cut_each_entity_in_proportion_disjointly_and_reproducibly():
    labels = _labels([20, 10, 40, 3])
    config = GALLERY.info.validate_config({"validationFraction": 0.2, "testFraction": 0.3, "seed": 7})
    split = split_rows(labels, config, seed=7)
    parts = [split.training, split.validation, split.test]
    together = np.concatenate(parts)
    assert together.size == labels.size == np.unique(together).size  # disjoint, and the gallery takes the rest
    for entity, n in enumerate([20, 10, 40, 3]):
        counts = [int((labels[p] == entity).sum()) for p in parts]
        assert counts[1] == min(round(n * 0.2), n - 1) and counts[0] >= 1, (entity, counts)
        assert counts[2] == min(round(n * 0.3), n - 1 - counts[1])
    again = split_rows(labels, config, seed=7)
    assert all((a == b).all() for a, b in zip(parts, [again.training, again.validation, again.test]))
    other = split_rows(labels, config, seed=8)
    assert not (other.test.size == split.test.size and (other.test == split.test).all())
    assert split.sizes() == {"training": split.training.size, "validation": split.validation.size, "test": split.test.size,
                             "unused": 0, "method": "fraction", "seed": 7}


def test_explicit_fractions_that_leave_rows_over_leave_them_unused():
    labels = _labels([10, 10])
    config = CLASSIFIER.info.validate_config({"trainingFraction": 0.5, "validationFraction": 0.2, "testFraction": 0.1})
    split = split_rows(labels, config, seed=0)
    assert (split.training.size, split.validation.size, split.test.size, split.unused) == (10, 4, 2, 4)


def test_the_classifiers_default_split_validates_the_rest_of_each_entity_and_keeps_one_to_train():
    rng = np.random.default_rng(3)
    for seed in range(40):
        labels = rng.integers(0, 6, int(rng.integers(1, 120)))
        fraction = float(rng.choice([0.5, 0.75, 0.8, 0.95]))
        config = CLASSIFIER.info.validate_config({"trainingFraction": fraction, "seed": seed})
        split = split_rows(labels, config, seed=seed)
        assert split.test.size == 0 and split.unused == 0
        assert sorted([*split.training, *split.validation]) == list(range(labels.size))
        for entity in np.unique(labels):
            rows = int((labels == entity).sum())
            validated = int((labels[split.validation] == entity).sum())
            assert validated == min(int(round(rows * (1.0 - fraction))), rows - 1)
        assert split_rows(labels, config, seed=seed).validation.tolist() == split.validation.tolist()


@pytest.mark.parametrize(("config", "fragment"), [
    ({"trainingFraction": 0.8, "testFraction": 0.3}, "sum to at most 1"),
    ({"validationFraction": 0.6, "testFraction": 0.5}, "sum to at most 1"),
    ({"trainingFraction": 0.0}, "leave something to train on"),
    ({"testFraction": 1.5}, "'testFraction' must be at most 1"),
    ({"testFraction": -0.1}, "'testFraction' must be at least 0"),
    ({"splitKey": 3}, "'splitKey' must be a string"),
])
@pytest.mark.parametrize("engine", [GALLERY, CLASSIFIER], ids=["gallery", "classifier"])
def test_bad_split_configs_are_refused_naming_the_keys(engine, config, fragment):
    with pytest.raises(EngineConfigError, match=fragment.replace("(", r"\(")):
        engine.info.validate_config(config)


def test_a_filter_split_follows_the_jsondata_marks_and_ignores_the_rest():
    labels = _labels([4, 4])
    marks = ["train", "TEST", "validation", None, "training", "test", "holdout", "validate"]
    config = GALLERY.info.validate_config({"splitKey": "split", "testFraction": 0.9})
    split = split_rows(labels, config, seed=0, filter_values=marks)
    assert (split.training.tolist(), split.validation.tolist(), split.test.tolist()) == ([0, 4], [2, 7], [1, 5])
    assert split.unused == 2 and split.method == "filter"
    with pytest.raises(EngineError, match="marks no usable identifier as train"):
        split_rows(labels, config, seed=0, filter_values=["test"] * 8)


class MarkedContext(MemoryContext):
    """A MemoryContext whose identifiers carry a filter-split mark, as the worker reads jsondata[splitKey]."""

    def __init__(self, *args, marks: dict[str, str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.marks = marks

    def _ref(self, e) -> IdentifierRef:
        return dataclasses.replace(super()._ref(e), split=self.marks.get(e.identifier_id))


def _subset(digit_library, per_digit: int):
    seen: dict[str, int] = {}
    out = []
    for entry in digit_library.train:
        if seen.get(entry.entity_id, 0) < per_digit:
            seen[entry.entity_id] = seen.get(entry.entity_id, 0) + 1
            out.append(entry)
    return out


async def test_the_gallery_measures_the_test_split_against_a_gallery_without_it(decode_pool, digit_library):
    entries = _subset(digit_library, 30)
    config = GALLERY.info.validate_config({"testFraction": 0.2, "validationFraction": 0.1, "seed": 1})
    artifact = await GALLERY.train(MemoryContext(entries, config=config, decode_pool=decode_pool))
    evaluation = artifact.jsondata["evaluation"]
    assert evaluation["splits"] == {"training": 210, "validation": 30, "test": 60, "unused": 0, "method": "fraction", "seed": 1}
    assert evaluation["method"].startswith("held-out test split") and evaluation["evaluated"] == 60
    assert artifact.jsondata["galleryRows"] == 210
    assert sum(e["count"] for e in evaluation["perEntity"].values()) == 60
    assert artifact.accuracy == evaluation["top1"] >= 0.85  # real held-out digits
    assert artifact.jsondata["calibration"]["genuine"] == 30  # calibrated on the validation split
    again = await GALLERY.train(MemoryContext(entries, config=config, decode_pool=decode_pool))
    assert again.jsondata["evaluation"] == evaluation and again.jsondata["threshold"] == artifact.jsondata["threshold"]


async def test_the_gallery_and_classifier_take_a_filter_split(decode_pool, digit_library):
    entries = _subset(digit_library, 12)
    marks = {e.identifier_id: ("test" if i % 4 == 0 else "train") for i, e in enumerate(entries)}
    for engine in (GALLERY, CLASSIFIER):
        config = engine.info.validate_config({"splitKey": "split", "seed": 2})
        artifact = await engine.train(MarkedContext(entries, config=config, decode_pool=decode_pool, marks=marks))
        evaluation = artifact.jsondata["evaluation"]
        assert evaluation["splits"]["method"] == "filter"
        assert (evaluation["splits"]["training"], evaluation["splits"]["test"]) == (90, 30), engine.info.id
        assert evaluation["evaluated"] == 30 and evaluation["method"].startswith("held-out test split")
        assert artifact.accuracy == evaluation["top1"] and artifact.accuracy >= 0.7, (engine.info.id, artifact.accuracy)


async def test_the_classifier_reports_its_test_split_beside_validation(decode_pool, digit_library):
    entries = _subset(digit_library, 20)
    config = CLASSIFIER.info.validate_config({"trainingFraction": 0.6, "testFraction": 0.2, "seed": 3, "maxEpochs": 60})
    artifact = await CLASSIFIER.train(MemoryContext(entries, config=config, decode_pool=decode_pool))
    evaluation = artifact.jsondata["evaluation"]
    assert evaluation["splits"] == {"training": 120, "validation": 40, "test": 40, "unused": 0, "method": "fraction", "seed": 3}
    assert evaluation["evaluated"] == 40 and evaluation["validationRows"] == 40
    assert artifact.accuracy == evaluation["top1"] and evaluation["validationTop1"] is not None
