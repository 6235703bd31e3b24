"""Which registered embedding model an engine trains on: ``config.modelId``, else the identifier type's default.

The worker resolves the model here and hands the engine its bytes and manifest
(engines.interface.EmbeddingModel): engines never read the registry. ``createJob`` calls
:func:`check_config` first, so an unknown or unusable ``modelId`` is refused before anything is created.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from engines.interface import EmbeddingModel, EngineError
from engines.model_backbone import PIXEL_PROJECTION
from gateway.errors import InvalidInput
from gateway.resources import Resources
from gateway.services.models import registry as models
from storage.queries import models as model_q
from storage.rows import ModelVersion

__all__ = [
    "PIXEL_PROJECTION", "candidate_models", "check_config", "check_detector", "detector_model", "embedding_model", "engine_model",
    "missing_models", "takes_detector", "takes_model",
]

EMBEDDING = "embedding"
DETECTION = "auto_annotation"
CONFIG_KEY = "modelId"
MAX_CANDIDATES = 3  # registered models compared with the pixel projection at most (each embeds the sample once)
_IMAGE_DEFAULT = models.default_model_name(EMBEDDING, "image")
DETECTOR_KEY = "detectorModelId"


def takes_model(engine: Any) -> bool:
    """Whether an installed engine accepts ``config.modelId`` (the built-in gallery and classifier do)."""
    return engine is not None and any(o.name == CONFIG_KEY for o in engine.info.config)


async def _resolve(res: Resources, org_id: UUID, config: Mapping[str, Any], identifier_types: Sequence[str]) -> ModelVersion | None:
    ref = config.get(CONFIG_KEY) or ""
    if ref == PIXEL_PROJECTION:
        return None
    if ref:
        try:
            return await models.resolve_model(res, org_id, ref, EMBEDDING)
        except InvalidInput as exc:
            raise InvalidInput(f"config.modelId: {exc.message}") from exc
    kind = "face" if "face" in identifier_types else (identifier_types[0] if identifier_types else None)
    return await models.default_model(res, org_id, EMBEDDING, kind)


async def check_config(res: Resources, org_id: UUID, config: Mapping[str, Any] | None) -> ModelVersion | None:
    """The version ``config.modelId`` names, or None when it names none; raises not_found / invalid_input."""
    if not config or not config.get(CONFIG_KEY) or config[CONFIG_KEY] == PIXEL_PROJECTION:
        return None
    return await _resolve(res, org_id, config, ())


async def embedding_model(
    res: Resources, org_id: UUID, config: Mapping[str, Any], identifier_types: Sequence[str], pinned: str | None = None,
) -> EmbeddingModel | None:
    """The model a training task embeds with, read from S3 (cached); None: the built-in pixel projection.

    ``pinned``: the version ``createJob`` resolved ``config.modelId`` to (the task payload's
    ``modelVersionId``). It is used as it is, so an alias moved since, or a new default, does not change
    what an accepted job trains on. Without it, ``config.modelId`` or the default for the identifier types
    (``face`` among them picks the face default) is resolved now.
    """
    if pinned:
        try:
            version = await models.pinned_version(res, org_id, UUID(str(pinned)))
        except ValueError:
            version = None
        if version is None or version.application != EMBEDDING:
            raise EngineError(f"the model version this job was created with ({pinned}) was deleted or is not ready")
    else:
        version = await _resolve(res, org_id, config, identifier_types)
    return None if version is None else await engine_model(res, version)


async def candidate_models(
    res: Resources, org_id: UUID, config: Mapping[str, Any], identifier_types: Sequence[str], pinned: str | None = None,
) -> list[EmbeddingModel]:
    """The registered models a training may compare with the built-in pixel projection (engines.backbone_choice):
    the ``default`` versions of the ready system embedding models that read whole images, for a library whose
    identifier type has no model of its own (``image``; ``face`` and audio have theirs). None when the job names a
    model (``config.modelId`` or the version ``createJob`` pinned): a user's choice is used as it is.

    A system model that is another identifier type's default (face-embedding, speaker-embedding) is left out: it
    was made for that type's content. At most ``MAX_CANDIDATES``, by name, so the comparison stays bounded.
    """
    kind = "face" if "face" in identifier_types else (identifier_types[0] if identifier_types else None)
    if pinned or (config.get(CONFIG_KEY) or "") or models.default_model_name(EMBEDDING, kind) != _IMAGE_DEFAULT:
        return []
    others = {name for (application, _), name in models.SYSTEM_DEFAULTS.items() if application == EMBEDDING}
    others.discard(_IMAGE_DEFAULT)
    async with res.pool.acquire() as conn:
        versions, _ = await model_q.version_page(
            conn, org_id, application=EMBEDDING, name=None, tags=None, status="ready", system=True, alias="default",
            order="name", descending=False, offset=0, limit=MAX_CANDIDATES + len(others))
    images = [v for v in versions if v.name not in others and _reads_images(v.manifest)][:MAX_CANDIDATES]
    return [await engine_model(res, v) for v in images]


def _reads_images(manifest: Any) -> bool:
    spec = manifest.get("input") if isinstance(manifest, Mapping) else None
    return isinstance(spec, Mapping) and bool(spec.get("height")) and bool(spec.get("width"))


async def missing_models(res: Resources, org_id: UUID, engine: Any) -> list[str]:
    """The registered models an installed engine requires (``EngineInfo.requires_models``) that have no ready
    system default here, as ``application/type``; empty when it can train with its defaults."""
    missing = []
    for application, kind in getattr(engine.info, "requires_models", ()) if engine is not None else ():
        if await models.default_model(res, org_id, application, kind) is None:
            missing.append(f"{application}/{kind}")
    return missing


def takes_detector(engine: Any) -> bool:
    """Whether an installed engine detects with a registered model (``config.detectorModelId``: the face engine)."""
    return engine is not None and any(o.name == DETECTOR_KEY for o in engine.info.config)


async def check_detector(res: Resources, org_id: UUID, config: Mapping[str, Any] | None) -> ModelVersion | None:
    """The auto_annotation version ``config.detectorModelId`` names, or None; raises not_found / invalid_input."""
    ref = (config or {}).get(DETECTOR_KEY) or ""
    if not ref:
        return None
    try:
        version = await models.resolve_model(res, org_id, ref, DETECTION)
    except InvalidInput as exc:
        raise InvalidInput(f"config.{DETECTOR_KEY}: {exc.message}") from exc
    if not (version.manifest.get("output") or {}).get("keypoints"):
        raise InvalidInput(
            f"config.{DETECTOR_KEY}: model {version.ref} gives no keypoints; the face engine aligns faces on "
            "six keypoints per face (eyes, nose, mouth, ears: output.keypoints [K, 6, 2] in the manifest)"
        )
    return version


async def detector_model(
    res: Resources, org_id: UUID, config: Mapping[str, Any], pinned: str | None = None
) -> EmbeddingModel | None:
    """The face detector a training task uses: the version ``createJob`` pinned, ``config.detectorModelId``
    now, or the system default (``face-detector``); None when none is registered."""
    if pinned:
        try:
            version = await models.pinned_version(res, org_id, UUID(str(pinned)))
        except ValueError:
            version = None
        if version is None or version.application != DETECTION:
            raise EngineError(f"the detector version this job was created with ({pinned}) was deleted or is not ready")
    else:
        version = await check_detector(res, org_id, config)
        if version is None:
            version = await models.default_model(res, org_id, DETECTION, "face")
    return None if version is None else await engine_model(res, version)


async def engine_model(res: Resources, version: ModelVersion) -> EmbeddingModel:
    """A registered version with its ONNX file (from S3 once per process, then cached by sha256)."""
    data = res.caches.model_files.get(version.sha256)
    if data is None:
        data = await models.model_bytes(res, version)
        with contextlib.suppress(ValueError):  # a file larger than the whole cache is read each time
            res.caches.model_files[version.sha256] = data
    manifest = dict(version.manifest)
    if version.labels and "labels" not in manifest:
        manifest["labels"] = list(version.labels)
    return EmbeddingModel(version.ref, str(version.id), data, manifest, version.sha256)


async def pin_models(res: Resources, org_id: UUID, engine_id: str, payload: dict[str, Any]) -> UUID | None:
    """Check the registered models a task's ``config`` names and pin them in ``payload`` (``modelVersionId``,
    ``detectorVersionId``: what the worker uses, whatever alias moves later; never taken from the client).
    An unknown, unready or wrong-kind model is refused here, before anything is written. Returns the pinned
    embedding version's ID (the job's ``modelVersionId``), or None. createJob and REST trainings share it."""
    installed = res.engines.get(engine_id)
    pinned: UUID | None = None
    payload.pop("modelVersionId", None)
    if takes_model(installed):
        version = await check_config(res, org_id, payload.get("config"))
        if version is not None:
            pinned = version.id
            payload["modelVersionId"] = str(version.id)
    payload.pop("detectorVersionId", None)
    if takes_detector(installed):
        detector = await check_detector(res, org_id, payload.get("config"))
        if detector is not None:
            payload["detectorVersionId"] = str(detector.id)
    return pinned
