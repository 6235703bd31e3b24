"""Recognition with a trained model: the artifact from S3, the engine that made it, results mapped to IDs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.errors import InvalidInput, NotImplementedApi
from gateway.resources import Resources
from gateway.services.access.principal import Principal
from gateway.services.ingest.remote_files import FetchRefused, fetch_bytes
from gateway.services.ingest.uploads import read_limited
from gateway.services.models import backbones as engine_backbones
from gateway.services.models import registry as models
from gateway.services.recognition import index as index_recognition
from gateway.services.training import engine_models
from gateway.services.training.defaults import default_model_of
from storage.rows import EngineModel, ModelVersion


@dataclass(frozen=True, slots=True)
class Outcome:
    model: EngineModel | None  # None: a registered auto_tagging model answered (``registered``)
    threshold: float | None
    matches: list[Any]  # engines.interface.Match
    registered: ModelVersion | None = None
    tags: list[Any] = field(default_factory=list)  # engines.tagging.Tag, for a registered model
    windows: tuple[tuple[float, float], ...] = ()  # audio: the voiced [start, end) seconds used
    faces: tuple[Any, ...] = ()  # engines.interface.RecognizedFace: every face a face engine found


# The last artifact larger than the artifact cache's whole budget, by storage key: a gallery of hundreds of MB
# would otherwise be read from S3 (and its session looked up by hashing it) on every recognition. One per process.
_large: dict[str, bytes] = {}


async def artifact_bytes(res: Resources, model: EngineModel) -> bytes:
    key = model.storage_key
    if key is None:
        raise InvalidInput("this model has no stored artifact to recognize with")
    cached = res.caches.artifacts.get(key) or _large.get(key)
    if cached is None:
        cached = await engine_models.read_artifact(res, model)
        try:
            res.caches.artifacts[key] = cached
        except ValueError:  # larger than the whole cache
            _large.clear()
            _large[key] = cached
    return cached


async def media_bytes(res: Resources, upload: Any, url: str | None) -> bytes:
    if upload is not None and url:
        raise InvalidInput("send the media as a file or as a url, not both")
    if upload is not None:
        return await read_limited(upload, res.settings.max_upload_bytes)
    if url:
        try:
            async with res.fetch_limiter:
                data, _ = await fetch_bytes(res.http, url, res.fetch_policy)
        except FetchRefused as exc:
            raise InvalidInput(str(exc), data={"reason": exc.reason}) from exc
        return data
    raise InvalidInput("send the image or recording as a file (multipart) or a url")


async def run(res: Resources, model: EngineModel, images: list[bytes], *, top_k: int, threshold: float | None) -> list[Any]:
    engine = res.engines.get(model.engine_id)
    if engine is None:
        raise NotImplementedApi(f"engine {model.engine_id} is not installed in this gateway; it recognizes elsewhere")
    if model.train_status != "complete":
        raise InvalidInput(f"the model is {model.train_status}, not complete: engine has not been trained")
    if index_recognition.serves_from_index(model):
        return await index_recognition.recognize(res, model, images, top_k=top_k, threshold=threshold)
    artifact = await artifact_bytes(res, model)
    from engines.interface import EngineError

    try:
        return await engine.recognize(
            artifact, images, top_k=top_k, threshold=threshold, execution_provider=res.settings.onnx_provider
        )
    except EngineError as exc:
        raise InvalidInput(str(exc)) from exc


async def recognize(
    res: Resources, principal: Principal, model_id: object, *, upload: Any, url: str | None, top_k: int | None,
    threshold: float | None, registered_ref: str | None = None, library_id: object | None = None,
    engine_id: object | None = None,
) -> Outcome:
    """With a trained LibraryEngineModel (``model_id``), a library's default model (``library_id``, for
    ``engine_id`` or the library's default engine), or a registered auto_tagging model (``registered_ref``)."""
    top_k = 5 if top_k is None else top_k
    if not 1 <= top_k <= 100:
        raise InvalidInput("topK must be between 1 and 100")
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise InvalidInput("threshold must be between -1 and 1")
    if engine_id is not None and library_id is None:
        raise InvalidInput("engineId picks the default model of a library: give libraryId with it")
    if sum(x is not None for x in (model_id, registered_ref, library_id)) != 1:
        raise InvalidInput("give either libraryEngineModelId (a trained model), libraryId (its default model) or modelId "
                           "(a registered auto_tagging model): exactly one")
    if library_id is not None:
        model_id = (await default_model_of(res, principal, library_id, engine_id)).id
    if registered_ref is not None:
        return await _tag(res, principal, registered_ref, upload=upload, url=url, top_k=top_k, threshold=threshold)
    model = await engine_models.get(res, principal, model_id)
    image = await media_bytes(res, upload, url)
    await refuse_long_media(res, model, image)
    results = await run(res, model, [image], top_k=top_k, threshold=threshold)
    effective = threshold
    if effective is None:
        effective = (model.jsondata or {}).get("threshold")
    windows = tuple(results[0].windows) if results else ()
    faces = tuple(results[0].faces) if results else ()
    return Outcome(model=model, threshold=effective, matches=list(results[0].matches) if results else [],
                   windows=windows, faces=faces)


async def refuse_long_media(res: Resources, model: EngineModel, data: bytes) -> None:
    """A video, or a recording longer than the engine recognizes in one call, is refused with a message that
    names recognizeMedia (a job with time-coded segments) instead of failing in the engine's photo decoder."""
    from gateway.services.recognition import media_probe

    info = await media_probe.probe_async(data)
    if info.kind not in ("video", "audio"):
        return
    engine = res.engines.get(model.engine_id)
    if info.kind == "audio":
        artifact = await artifact_bytes(res, model) if hasattr(engine, "inline_seconds") else None
        if not info.is_long(await media_probe.inline_seconds(engine, artifact, res.settings.onnx_provider)):
            return
    what = "a video" if info.kind == "video" else f"a recording of {info.duration or 0:.0f} s"
    if media_probe.is_media_engine(engine):
        raise InvalidInput(
            f"this is {what}: recognize answers one photo or short recording at once; use recognizeMedia, which "
            "runs as a job and answers time-coded segments", data={"reason": "use-recognizeMedia"},
        )
    raise InvalidInput(f"this is {what}, and engine {model.engine_id} recognizes photos and short recordings only")


async def _tag(
    res: Resources, principal: Principal, ref: str, *, upload: Any, url: str | None, top_k: int, threshold: float | None
) -> Outcome:
    from engines.interface import EngineError
    from engines.tagging import tag_images

    if threshold is not None and threshold < 0:
        raise InvalidInput("threshold for an auto_tagging model is a confidence between 0 and 1")
    version = await models.resolve_model(res, principal.org_id, ref)
    if version.application != "auto_tagging":
        raise InvalidInput(
            f"model {version.ref} is an {version.application} model; recognize with modelId takes an auto_tagging "
            "model (train a gallery or classifier engine with config.modelId to recognize with an embedding model)"
        )
    image = await media_bytes(res, upload, url)
    model = await engine_backbones.engine_model(res, version)
    try:
        tags = await tag_images(model, [image], top_k=top_k, threshold=threshold,
                                execution_provider=res.settings.onnx_provider)
    except EngineError as exc:
        raise InvalidInput(str(exc)) from exc
    return Outcome(model=None, threshold=threshold, matches=[], registered=version, tags=tags[0])
