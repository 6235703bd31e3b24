"""Engine configuration is validated up front, and every error names the key."""

from __future__ import annotations

import pytest

from engines.classifier import ClassifierEngine
from engines.gallery import GalleryEngine
from engines.interface import EngineConfigError

INFOS = [GalleryEngine.info, ClassifierEngine.info]


@pytest.mark.parametrize("info", INFOS, ids=lambda i: i.id)
def test_an_empty_config_gets_every_default(info):
    config = info.validate_config(None)
    assert config["pageSize"] == 30 and config["fetchConcurrency"] == 32 and config["batchSize"] == 256
    assert config["minSize"] == 0 and config["sharpnessThreshold"] == 0.0 and config["topK"] == 5
    assert config["imageSize"] == 32
    assert set(config) == {o.name for o in info.config}


def test_gallery_specific_defaults_are_filled():
    assert GalleryEngine.info.validate_config({})["maxGalleryPerEntity"] == 1000


def test_an_integer_is_accepted_where_a_number_is_expected():
    assert GalleryEngine.info.validate_config({"sharpnessThreshold": 50})["sharpnessThreshold"] == 50.0


@pytest.mark.parametrize(
    ("raw", "key", "says"),
    [
        ({"pagesize": 10}, "pagesize", "unknown config key"),
        ({"pageSize": "30"}, "pageSize", "must be an integer"),
        ({"pageSize": 30.0}, "pageSize", "must be an integer"),
        ({"batchSize": True}, "batchSize", "must be an integer"),
        ({"pageSize": 0}, "pageSize", "at least 1"),
        ({"pageSize": 1001}, "pageSize", "at most 1000"),
        ({"sharpnessThreshold": -1}, "sharpnessThreshold", "at least 0"),
        ({"sharpnessThreshold": float("nan")}, "sharpnessThreshold", "finite"),
        ({"minSize": None}, "minSize", "got null"),
    ],
)
def test_a_bad_config_value_is_refused_naming_its_key(raw, key, says):
    with pytest.raises(EngineConfigError) as error:
        GalleryEngine.info.validate_config(raw)
    assert repr(key) in str(error.value) and says in str(error.value)


def test_a_classifier_flag_must_be_a_boolean():
    with pytest.raises(EngineConfigError, match="'refitOnAll' must be a boolean"):
        ClassifierEngine.info.validate_config({"refitOnAll": 1})


def test_a_config_that_is_not_an_object_is_refused():
    with pytest.raises(EngineConfigError, match="must be an object"):
        GalleryEngine.info.validate_config(["pageSize"])  # type: ignore[arg-type]
