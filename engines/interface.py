"""The one small interface between engineshed and its recognition engines.

The worker codes against these names only. An engine is any object with an ``info`` attribute
(:class:`EngineInfo`) and the two coroutines of :class:`Engine`; built-ins and third-party
packages register the same way, through the ``engineshed.engines`` entry-point group.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "Artifact",
    "ConfigOption",
    "EmbeddingCache",
    "EmbeddingModel",
    "Engine",
    "EngineConfigError",
    "EngineError",
    "EngineInfo",
    "FetchError",
    "IdentifierRef",
    "Match",
    "Measures",
    "NothingToTrain",
    "Recognition",
    "RecognizedFace",
    "StoredVectors",
    "TrainingContext",
]


class EngineError(Exception):
    """Training or recognition failed for a reason the user should read; the message is shown."""


class EngineConfigError(EngineError):
    """The engine configuration is invalid; the message names the key."""


class FetchError(EngineError):
    """The bytes of one identifier could not be fetched."""


class NothingToTrain(EngineError):
    """No identifier is left to train on, e.g. every one failed the quality gates."""


_ALLOWED_TYPES = (int, float, str, bool)


@dataclass(frozen=True, slots=True)
class ConfigOption:
    """One configuration key an engine accepts, with its type, default and bounds."""

    name: str
    type: type
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if self.type not in _ALLOWED_TYPES:
            raise TypeError(f"config option {self.name!r}: type must be int, float, str or bool")

    def coerce(self, value: Any) -> Any:
        """Return ``value`` checked against this option, or raise EngineConfigError naming the key."""
        key = self.name
        # bool is a subclass of int: refuse True where a number is expected, and 1 where a flag is.
        if self.type is bool:
            if not isinstance(value, bool):
                raise EngineConfigError(f"config key {key!r} must be a boolean, got {_kind(value)}")
        elif self.type is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise EngineConfigError(f"config key {key!r} must be an integer, got {_kind(value)}")
        elif self.type is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise EngineConfigError(f"config key {key!r} must be a number, got {_kind(value)}")
            value = float(value)
            if value != value or value in (float("inf"), float("-inf")):
                raise EngineConfigError(f"config key {key!r} must be a finite number")
        elif not isinstance(value, str):
            raise EngineConfigError(f"config key {key!r} must be a string, got {_kind(value)}")
        if self.minimum is not None and value < self.minimum:
            raise EngineConfigError(f"config key {key!r} must be at least {_num(self.minimum)}, got {value!r}")
        if self.maximum is not None and value > self.maximum:
            raise EngineConfigError(f"config key {key!r} must be at most {_num(self.maximum)}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(repr(c) for c in self.choices)
            raise EngineConfigError(f"config key {key!r} must be one of {allowed}, got {value!r}")
        return value


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What the gateway lists about an engine and what the dispatcher needs to schedule it."""

    id: str
    name: str
    category_id: str
    identifier_type_ids: tuple[str, ...]
    library_type_ids: tuple[str, ...]
    modes: tuple[str, ...] = ("library-train", "library-run")
    library_required: bool = True
    concurrency_limit: int = 2
    version: str = "1"
    config: tuple[ConfigOption, ...] = field(default=())
    # Identifier type IDs this engine is the default for: a library of a type that takes one of them trains
    # with it when no engine is named (REST /v1/trainings). Where several engines claim a type, the one that
    # lists it first (earliest in its tuple) wins, then the engine ID.
    default_for: tuple[str, ...] = field(default=())
    # (application, identifier type) of the registered system models the engine cannot train without when its
    # config names no others (the face engine: a face detector and a face embedding). Where one is missing (an
    # offline install that pulled none), the engine is not the default and publishLibrary starts no job for it.
    requires_models: tuple[tuple[str, str], ...] = field(default=())
    # Checks across keys after each key was checked on its own (e.g. split fractions summing to at most 1);
    # raises EngineConfigError.
    check: Callable[[Mapping[str, Any]], None] | None = None

    def validate_config(self, raw: Mapping[str, Any] | None) -> dict[str, Any]:
        """Return the configuration with defaults filled in.

        Raises EngineConfigError, naming the key, for an unknown key, a value of the wrong type,
        or a value out of range.
        """
        options = {option.name: option for option in self.config}
        raw = {} if raw is None else raw
        if not isinstance(raw, Mapping):
            raise EngineConfigError(f"config must be an object, got {_kind(raw)}")
        unknown = sorted(set(raw) - set(options))
        if unknown:
            known = ", ".join(sorted(options)) or "none"
            raise EngineConfigError(f"unknown config key {unknown[0]!r} (known keys: {known})")
        config = {
            name: option.coerce(raw[name]) if name in raw else option.default
            for name, option in options.items()
        }
        if self.check is not None:
            self.check(config)
        return config


@dataclass(frozen=True, slots=True)
class IdentifierRef:
    """One identifier of the library, as the worker pages them."""

    identifier_id: str
    entity_id: str
    entity_name: str
    identifier_type_id: str
    content_type: str | None
    content_sha256: str | None  # None when not known before fetch (stored by reference)
    split: str | None = None  # jsondata[config.splitKey] when a filter split is asked for (engines.splits)
    # jsondata.faceBox as stored, unchecked (None: none): the face a user pinned in the photo, which face engines use
    face_box: Any = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class EmbeddingModel:
    """A registered model version as the worker hands it to an engine (engines never read the registry).

    ``ref`` is how users name it (``face-embedding@2``), ``version_id`` the registry's id, ``sha256``
    the digest of ``model`` (the ONNX file as registered), ``manifest`` the completed manifest.
    """

    ref: str
    version_id: str
    model: bytes = field(repr=False)
    manifest: Mapping[str, Any] = field(default_factory=dict)
    sha256: str = ""

    @property
    def input_size(self) -> int:
        return int(self.manifest["input"]["height"])

    @property
    def channels(self) -> int:
        return int(self.manifest["input"].get("channels", 3))


Measures = tuple[int, int, float | None]  # a decoded content's width, height and sharpness (None: not measured)


class EmbeddingCache(Protocol):
    """What the worker keeps per content sha256 across trainings: vectors by backbone, and the decode's measures.

    A content embedded once by a backbone is not fetched or embedded again by it; the measures let the quality
    gates judge a cached vector without the bytes.
    """

    async def cached_embeddings(self, backbone_digest: str, sha256s: Sequence[str]) -> dict[str, np.ndarray]:
        """Embeddings already computed by this backbone, by content sha256 (misses are absent)."""
        ...

    async def store_embeddings(self, backbone_digest: str, vectors: Mapping[str, np.ndarray]) -> None:
        """Remember embeddings computed by this backbone, by content sha256."""
        ...

    async def content_measures(self, sha256s: Sequence[str]) -> dict[str, Measures]:
        """The measures recorded for contents decoded before (misses are absent)."""
        ...

    async def store_content_measures(self, measures: Mapping[str, Measures]) -> None:
        """Record what the decode measured, by content sha256."""
        ...


class StoredVectors(Protocol):
    """The identifiers' own vectors of one registered embedding model, read with the library's pages.

    They stand in for fetching and embedding only when the engine embeds whole images with the backbone that
    made them (its digest is ``digest``).
    """

    digest: str  # the backbone digest of the registered model the vectors were made with

    def take(self, ref: IdentifierRef) -> np.ndarray | None:
        """The stored vector of ``ref`` (once; None when it has none)."""
        ...

    async def store(self, vectors: Mapping[str, np.ndarray]) -> None:
        """Keep vectors computed by ``digest``'s backbone (or found in the cache) as the identifiers' own."""
        ...


@runtime_checkable
class TrainingContext(Protocol):
    """What an engine may use while training; the worker implements it.

    Engines never see a database pool or an S3 client: everything goes through these members.
    """

    library_id: str
    library_version: int
    model_id: str
    config: Mapping[str, Any]  # already validated by EngineInfo.validate_config
    execution_provider: str  # "auto" | "cuda" | "cpu"
    decode_pool: concurrent.futures.Executor  # a ProcessPoolExecutor owned by the worker
    total_identifiers: int | None  # how many identifiers pages() will yield, when known
    # The registered embedding model the worker resolved from config ``modelId`` or the identifier type's
    # system default; None: the engine's built-in backbone.
    embedding_model: EmbeddingModel | None
    # The registered models an engine may compare with its built-in backbone to pick the best for the library
    # (engines.backbone_choice), ``embedding_model`` among them; empty when config ``modelId`` names one (the user
    # chose) or none other fits the library's identifier type.
    candidate_models: Sequence[EmbeddingModel]
    # The registered auto_annotation face detector from config ``detectorModelId`` or the system default, for
    # engines that declare a ``detectorModelId`` option; None: none registered (or not asked for).
    detector_model: EmbeddingModel | None
    cache: EmbeddingCache | None  # None: nothing is kept between trainings
    stored: StoredVectors | None  # None: the identifiers have no stored vectors of ``embedding_model``

    def pages(self, page_size: int) -> AsyncIterator[list[IdentifierRef]]:
        """Identifiers of the library's entities whose identifier type the engine takes."""
        ...

    async def fetch(self, ref: IdentifierRef) -> bytes:
        """The bytes of one identifier; raises FetchError on failure."""
        ...

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress in 0..1; also the task's heartbeat."""
        ...

    def count_inference(self, n: int) -> None:
        """Record that ``n`` images went through the backbone."""
        ...


@dataclass(frozen=True, slots=True)
class Artifact:
    """The trained model: bytes to store, their content type, a JSON report and the measured accuracy."""

    data: bytes
    content_type: str
    jsondata: dict[str, Any]
    accuracy: float | None


@dataclass(frozen=True, slots=True)
class Match:
    """One candidate entity for an input image. ``score`` is a cosine similarity: at most 1, which the product
    of two unit float32 vectors can pass by a rounding error, so it is held to 1 here, where every engine's
    matches are made."""

    entity_id: str
    entity_name: str
    entity_identifier_id: str | None
    score: float

    def __post_init__(self) -> None:
        if self.score > 1.0:
            object.__setattr__(self, "score", 1.0)


@dataclass(frozen=True, slots=True)
class RecognizedFace:
    """One face found in a photo: its box and landmarks in the photo's pixels, and its matches, best first."""

    box: tuple[float, float, float, float]  # left, top, width, height
    landmarks: tuple[tuple[float, float], ...]  # (x, y): right eye, left eye, nose, mouth, right ear, left ear
    detection_score: float
    matches: list[Match]


@dataclass(frozen=True, slots=True)
class Recognition:
    """The matches for the input image at ``index``, best first; empty when none passes the threshold."""

    index: int
    matches: list[Match]
    windows: tuple[tuple[float, float], ...] = ()  # audio: the voiced [start, end) seconds that were used
    faces: tuple[RecognizedFace, ...] = ()  # face engines: every face found, largest first


class Engine(Protocol):
    """A recognition engine: trains an artifact from a library and recognises images with it."""

    info: EngineInfo

    async def train(self, ctx: TrainingContext) -> Artifact:
        """Train on the context's library; cancellation is asyncio task cancellation."""
        ...

    async def recognize(
        self,
        artifact: bytes,
        images: Sequence[bytes],
        *,
        top_k: int,
        threshold: float | None,
        execution_provider: str,
    ) -> list[Recognition]:
        """Recognise encoded images with a trained artifact; threshold None uses the calibrated one."""
        ...
