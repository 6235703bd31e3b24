"""The engine contract, checked on every engine the registry discovers (the built-ins and any installed plugin).

Each engine is trained in-process on a small generated library through the TrainingContext the worker gives
(tests/engines/memory_context.py stands in for gateway/worker/context.py, which implements the same members),
with the registered models the worker would hand it. An engine passes when its info is well formed, its
config validates its defaults and refuses bad values, its artifact runs and maps answers back to the library's
entities and identifiers, an empty library is an EngineError, and cancelling a training stops it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from engines.interface import (
    Artifact,
    ConfigOption,
    EmbeddingModel,
    Engine,
    EngineConfigError,
    EngineError,
    TrainingContext,
)
from engines.registry import discover_engines
from gateway.worker.context import LibraryContext
from sampledata.digits import Digits
from sampledata.library import Entry
from sampledata.speech import wav_bytes
from tests.engines import face_fixtures
from tests.engines.memory_context import MemoryContext

ENGINES = discover_engines()
MODES = {"library-train", "library-run"}
PER_ENTITY = 6


@dataclass(frozen=True)
class Library:
    """A generated library for one engine, and the registered models the worker would hand the engine."""

    entries: list[Entry]
    embedding_model: EmbeddingModel | None = None
    detector_model: EmbeddingModel | None = None


def _model(name: str, data: bytes, manifest: dict[str, Any]) -> EmbeddingModel:
    return EmbeddingModel(f"{name}@1", str(uuid4()), data, manifest, hashlib.sha256(data).hexdigest())


def _digits(digits: Digits) -> Library:
    by_entity: dict[str, list[Entry]] = {}
    for entry in digits.train:
        by_entity.setdefault(entry.entity_id, []).append(entry)
    return Library([e for entries in by_entity.values() for e in entries[:PER_ENTITY]])


def _speaker_encoder() -> bytes:
    """A small speaker encoder with the registered ``speaker-embedding``'s shapes: mel pieces [P, 160, 40] -> [P, 256]."""
    weights = np.random.default_rng(0).normal(0, 1, (40, 256)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Add", ["mels", "eps"], ["shifted"]), helper.make_node("Log", ["shifted"], ["log"]),
         helper.make_node("ReduceMean", ["log"], ["pooled"], axes=[1], keepdims=0),
         helper.make_node("MatMul", ["pooled", "w"], ["embedding"])],
        "tiny-speaker-encoder",
        [helper.make_tensor_value_info("mels", TensorProto.FLOAT, ["P", 160, 40])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["P", 256])],
        [numpy_helper.from_array(np.array(1e-6, np.float32), "eps"), numpy_helper.from_array(weights, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def _voice(pitch: float, seed: int, seconds: float = 2.5, rate: int = 16_000) -> bytes:
    """A voiced-like recording: harmonics of ``pitch`` under a syllable envelope, with a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * pitch * k * t + rng.uniform(0, np.pi)) / k for k in range(1, 6))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * (3.5 + rng.uniform(0, 1)) * t) ** 2
    samples = 0.25 * tone * envelope + rng.normal(0, 0.005, t.size)
    return wav_bytes(samples.astype(np.float32), rate)


def _speech() -> Library:
    pitches = {"low": 95.0, "middle": 160.0, "high": 260.0}
    entries = [
        Entry(f"{name}-{k}", f"speaker-{name}", name, _voice(pitch, 10 * s + k), identifier_type_id="audio-recording")
        for s, (name, pitch) in enumerate(pitches.items()) for k in range(3)
    ]
    manifest = {"input": {"name": "mels", "layout": "NTC", "frames": 160, "mels": 40}, "output": {"dimension": 256}}
    return Library(entries, embedding_model=_model("speaker-embedding", _speaker_encoder(), manifest))


def _faces(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Library:
    cache: Path = face_fixtures.package_cache(request, tmp_path_factory)
    models = {name: face_fixtures.as_engine_model(face_fixtures.pulled(cache, name), name)
              for name in ("face-detector", "face-embedding")}
    scenes = face_fixtures.scenes(cache, models["face-detector"].model)
    entries = [
        Entry(f"{person}-{i}", f"entity-{person}", person, scene.data, identifier_type_id="face")
        for person, pair in scenes.enrolled.items() for i, scene in enumerate(pair)
    ]
    return Library(entries, embedding_model=models["face-embedding"], detector_model=models["face-detector"])


# What each built-in engine is trained on; an engine installed from elsewhere trains on the digits.
LIBRARIES: dict[str, Callable[..., Library]] = {
    "engineshed-speaker": lambda request, tmp_path_factory, digits: _speech(),
    "engineshed-face": lambda request, tmp_path_factory, digits: _faces(request, tmp_path_factory),
}


@pytest.fixture(scope="module", params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest) -> Engine:
    return ENGINES[request.param]


@pytest.fixture(scope="module")
def library(engine: Engine, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            digit_library: Digits) -> Library:
    make = LIBRARIES.get(engine.info.id)
    return make(request, tmp_path_factory, digit_library) if make else _digits(digit_library)


def context(engine: Engine, library: Library, entries: list[Entry], decode_pool: concurrent.futures.Executor,
            **kwargs: Any) -> MemoryContext:
    ctx = MemoryContext(entries, config=engine.info.validate_config({}), decode_pool=decode_pool, **kwargs)
    ctx.embedding_model = library.embedding_model
    ctx.detector_model = library.detector_model
    return ctx


@pytest.fixture(scope="module")
def trained(engine: Engine, library: Library, decode_pool: concurrent.futures.Executor) -> tuple[Artifact, MemoryContext]:
    ctx = context(engine, library, library.entries, decode_pool)
    return asyncio.run(engine.train(ctx)), ctx


def _wrong_type(option: ConfigOption) -> Any:
    return "not a number" if option.type in (int, float) else 1 if option.type is str else "yes"


def test_the_info_is_well_formed(engine: Engine) -> None:
    info = engine.info
    assert info.id and info.id == info.id.strip() and info.name and info.category_id
    assert info.identifier_type_ids and all(isinstance(t, str) and t for t in info.identifier_type_ids)
    assert info.library_type_ids and all(isinstance(t, str) and t for t in info.library_type_ids)
    assert "library-train" in info.modes and set(info.modes) <= MODES
    assert info.concurrency_limit >= 1 and info.version
    assert set(info.default_for) <= set(info.identifier_type_ids)
    assert all(len(pair) == 2 and all(isinstance(x, str) for x in pair) for pair in info.requires_models)
    names = [option.name for option in info.config]
    assert len(names) == len(set(names)), names


def test_the_config_validates_its_defaults_and_refuses_bad_values(engine: Engine) -> None:
    info = engine.info
    assert info.validate_config({}) == {option.name: option.default for option in info.config}
    assert info.validate_config(None) == info.validate_config({})
    with pytest.raises(EngineConfigError, match="unknown config key 'noSuchKey'"):
        info.validate_config({"noSuchKey": 1})
    with pytest.raises(EngineConfigError, match="config must be an object"):
        info.validate_config([])  # type: ignore[arg-type]
    for option in info.config:
        # None: unset, the engine decides (e.g. a split fraction that takes what the others leave)
        assert option.default is None or option.coerce(option.default) == option.default, option.name
        with pytest.raises(EngineConfigError, match=repr(option.name)):
            info.validate_config({option.name: _wrong_type(option)})
        if option.minimum is not None:
            with pytest.raises(EngineConfigError, match=f"{option.name!r} must be at least"):
                info.validate_config({option.name: option.type(option.minimum - 1)})
        if option.maximum is not None:
            with pytest.raises(EngineConfigError, match=f"{option.name!r} must be at most"):
                info.validate_config({option.name: option.type(option.maximum + 1)})


def test_the_worker_context_and_its_stand_in_are_training_contexts(engine: Engine, library: Library,
                                                                  decode_pool: concurrent.futures.Executor) -> None:
    res = SimpleNamespace(settings=SimpleNamespace(onnx_provider="cpu"), pool=None)
    task = SimpleNamespace(org_id=uuid4(), payload={"libraryId": str(uuid4()), "libraryEngineModelId": str(uuid4())})
    worker = LibraryContext(
        res, task, library_type_ids=list(engine.info.identifier_type_ids),  # type: ignore[arg-type]  # what it reads
        engine_type_ids=engine.info.identifier_type_ids, library_version=1, config=engine.info.validate_config({}),
        decode_pool=decode_pool, total_identifiers=0, detector_model=library.detector_model,
        # as the registry hands it: its version id is a UUID
        embedding_model=library.embedding_model and dataclasses.replace(library.embedding_model, version_id=str(uuid4())),
    )
    assert isinstance(worker, TrainingContext)
    assert isinstance(context(engine, library, [], decode_pool), TrainingContext)


def test_it_trains_on_a_small_library_and_reports_it(engine: Engine, library: Library,
                                                    trained: tuple[Artifact, MemoryContext]) -> None:
    artifact, ctx = trained
    assert isinstance(artifact, Artifact) and artifact.data and artifact.content_type
    assert artifact.jsondata["identifiers"] == len(library.entries)  # the worker copies it into the task output
    assert artifact.accuracy is None or 0.0 <= artifact.accuracy <= 1.0
    assert ctx.progress_log and ctx.progress_log[-1][0] <= 1.0  # MemoryContext checks every fraction is in 0..1
    assert ctx.fetched == len(library.entries)


async def test_the_artifact_runs_and_names_the_librarys_entities_and_identifiers(
    engine: Engine, library: Library, trained: tuple[Artifact, MemoryContext],
) -> None:
    artifact, _ = trained
    names = {e.entity_id: e.entity_name for e in library.entries}
    identifiers = {e.identifier_id for e in library.entries}
    one_each = list({e.entity_id: e for e in library.entries}.values())
    answers = await engine.recognize(
        artifact.data, [e.data for e in one_each], top_k=3, threshold=-1.0, execution_provider="cpu")
    assert [a.index for a in answers] == list(range(len(one_each)))
    for entry, answer in zip(one_each, answers, strict=True):
        assert answer.matches, entry.identifier_id
        for match in answer.matches:
            assert names.get(match.entity_id) == match.entity_name
            assert match.entity_identifier_id is None or match.entity_identifier_id in identifiers
            assert -1.0 <= match.score <= 1.0
    right = sum(answer.matches[0].entity_id == entry.entity_id for entry, answer in zip(one_each, answers, strict=True))
    assert right >= 0.8 * len(one_each), f"{right} of {len(one_each)} training items recognised as their own entity"


async def test_an_empty_library_is_an_engine_error(engine: Engine, library: Library,
                                                   decode_pool: concurrent.futures.Executor) -> None:
    with pytest.raises(EngineError):
        await engine.train(context(engine, library, [], decode_pool))


async def test_cancelling_a_training_stops_it_promptly(engine: Engine, library: Library,
                                                      decode_pool: concurrent.futures.Executor) -> None:
    ctx = context(engine, library, library.entries, decode_pool, fetch_delay=30.0)
    task = asyncio.create_task(engine.train(ctx))
    await asyncio.sleep(0.3)
    started = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - started < 2.0
    assert ctx.fetched == 0
