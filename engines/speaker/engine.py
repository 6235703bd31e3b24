"""The speaker engine: a per-speaker gallery of utterance embeddings (Resemblyzer's GE2E) and their mean.

Each ``audio-recording`` identifier is decoded, resampled to 16 kHz and cut to its voiced windows
(engines/speaker/audio.py, in the worker's process pool), turned into 160-frame power mel pieces
(engines/speaker/mel.py), embedded piece by piece, and the pieces' mean normalised is the utterance's embedding (as
``VoiceEncoder.embed_utterance``). Recognition is the gallery engine's rule on those embeddings: the speaker
owning the most similar utterance (cosine), with the gallery's leave-one-out evaluation and balanced-accuracy
threshold (engines.evaluation, engines.calibration). The per-speaker mean is evaluated too (held-out: the
query left out of its own speaker's mean) and reported.

The artifact is one self-contained ONNX file: input ``mels`` float32 ``[P, 160, 40]`` (the pieces of ONE
recording), the GE2E graph, the mean over pieces, then engines.artifact's gallery head (``scores``, ``indices``,
``best_identifier``), with the same ``engineshed.*`` metadata.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np
import onnx
from onnx import helper

from engines.artifact import CONTENT_TYPE, ArtifactMeta, Label, build_gallery_artifact
from engines.backbone import BackboneSpec
from engines.calibration import balanced_threshold
from engines.embedded import Skipped
from engines.evaluation import l2_normalise, leave_one_out, per_entity
from engines.interface import (
    Artifact,
    ConfigOption,
    EngineError,
    EngineInfo,
    FetchError,
    IdentifierRef,
    Match,
    NothingToTrain,
    Recognition,
    TrainingContext,
)
from engines.media import MediaOptions, Progress, Segment
from engines.runtime import get_runner
from engines.speaker.audio import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SECONDS,
    DEFAULT_MIN_VOICED_SECONDS,
    utterance_features,
)
from engines.speaker.mel import N_MELS, PARTIAL_FRAMES

__all__ = ["SpeakerEngine", "utterance_model"]

DEFAULT_THRESHOLD = 0.75  # only when no speaker has two recordings to calibrate with (GE2E cosines run high)
PIECES_PER_RUN = 64  # mel pieces per encoder run while training
AUDIO_KEY = "engineshed.audio"  # artifact metadata: the audio limits of training, applied when recognizing


def utterance_model(encoder: bytes) -> bytes:
    """The encoder ``[P, T, 40] -> [P, 256]`` followed by the mean over its P pieces: ``[1, 256]``."""
    model = onnx.load_from_string(encoder)
    graph = model.graph
    out = graph.output[0]
    graph.node.append(helper.make_node("ReduceMean", [out.name], ["utterance"], axes=[0], keepdims=1))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("utterance", onnx.TensorProto.FLOAT, [1, 256]))
    return model.SerializeToString()


class SpeakerEngine:
    """Recognises the speaker of a recording: nearest utterance of the gallery, cosine, calibrated threshold."""

    info = EngineInfo(
        id="engineshed-speaker",
        name="Speaker (GE2E gallery)",
        category_id="speaker-recognition",
        identifier_type_ids=("audio-recording",),
        library_type_ids=("people", "speakers"),
        version="1",
        default_for=("audio-recording",),
        config=(
            ConfigOption("pageSize", int, 30, "Identifiers read from the library per page.", 1, 1000),
            ConfigOption("fetchConcurrency", int, 8, "Recordings downloaded and decoded at once.", 1, 256),
            ConfigOption("topK", int, 5, "Matches the artifact returns per recording at most.", 1, 1000),
            ConfigOption("maxGalleryPerEntity", int, 1000, "Most recordings kept per speaker.", 1, 100_000),
            ConfigOption("maxAudioBytes", int, DEFAULT_MAX_BYTES, "Skip recordings larger than this.", 1, 2**31),
            ConfigOption("maxAudioSeconds", float, DEFAULT_MAX_SECONDS, "Skip recordings longer than this.", 1, 86_400),
            ConfigOption("minVoicedSeconds", float, DEFAULT_MIN_VOICED_SECONDS,
                         "Skip recordings with less voice than this (energy VAD).", 0.05, 3600),
            # The worker hands the resolved model as ctx.embedding_model (gateway/services/models/backbones.py).
            ConfigOption("modelId", str, "", "Registered speaker encoder: name, name@3 or name@alias; empty = the "
                         "audio-recording default (speaker-embedding, from `engineshed models pull`)."),
        ),
    )

    def __init__(self, encoder: bytes | None = None) -> None:
        """``encoder``: the GE2E ONNX (engines.convert.ge2e) used when the worker hands no embedding model."""
        self.encoder = encoder

    def _encoder(self, ctx: TrainingContext) -> tuple[bytes, str]:
        model = ctx.embedding_model
        if model is not None:
            spec = model.manifest.get("input") or {}
            if spec.get("layout") != "NTC" or spec.get("frames") != PARTIAL_FRAMES or spec.get("mels") != N_MELS:
                raise EngineError(f"model {model.ref} is not a speaker encoder: its input is not mel pieces "
                                  f"[N, {PARTIAL_FRAMES}, {N_MELS}] (use speaker-embedding)")
            return model.model, model.ref
        if self.encoder is not None:
            return self.encoder, "ge2e"
        raise EngineError("the speaker engine needs the speaker-embedding model (Resemblyzer GE2E): "
                          "run `engineshed models pull speaker-embedding`")

    async def train(self, ctx: TrainingContext) -> Artifact:
        """Embed every recording, evaluate leave-one-out, calibrate, and build the ONNX artifact."""
        config = ctx.config
        encoder, encoder_name = self._encoder(ctx)
        started = time.perf_counter()
        runner = await asyncio.to_thread(get_runner, encoder, ctx.execution_provider)
        rows: list[tuple[int, IdentifierRef, np.ndarray, dict[str, Any]]] = []
        skipped: list[Skipped] = []
        timings = {"fetch": 0.0, "decode": 0.0, "inference": 0.0}
        gate = asyncio.Semaphore(config["fetchConcurrency"])
        # One encoder run at a time: ONNX Runtime already uses every core for one run, and concurrent runs
        # beside the decode processes only thrash (measured: inference busy time 7x the raw ceiling's).
        encoder_lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        decode = functools.partial(utterance_features, max_bytes=config["maxAudioBytes"],
                                   max_seconds=config["maxAudioSeconds"], min_voiced_seconds=config["minVoicedSeconds"])

        async def one(seq: int, ref: IdentifierRef) -> None:
            async with gate:
                t0 = time.perf_counter()
                try:
                    blob = await ctx.fetch(ref)
                except FetchError as exc:
                    skipped.append(Skipped(ref, "fetch-failed", str(exc)))
                    return
                t1 = time.perf_counter()
                pieces, info = await loop.run_in_executor(ctx.decode_pool, decode, blob)
                t2 = time.perf_counter()
                timings["fetch"] += t1 - t0
                timings["decode"] += t2 - t1
            if pieces is None:
                skipped.append(Skipped(ref, info["reason"], info["detail"]))
                return
            async with encoder_lock:
                t3 = time.perf_counter()
                vector = await asyncio.to_thread(embed_utterance, runner, pieces)
                timings["inference"] += time.perf_counter() - t3
            ctx.count_inference(len(pieces))
            rows.append((seq, ref, vector, info))

        seq = 0
        async for page in ctx.pages(config["pageSize"]):
            await asyncio.gather(*(one(seq + i, ref) for i, ref in enumerate(page)))
            seq += len(page)
            total = ctx.total_identifiers or seq
            await ctx.progress(min(0.9, 0.9 * seq / max(total, 1)), f"{seq} recordings embedded")
        if not rows:
            raise NothingToTrain(_nothing_left(skipped))
        rows.sort(key=lambda r: r[0])  # training independent of fetch timing
        index: dict[str, int] = {}
        names: list[str] = []
        for _, ref, _, _ in rows:
            if ref.entity_id not in index:
                index[ref.entity_id] = len(index)
                names.append(ref.entity_name)
        labels = np.array([index[r[1].entity_id] for r in rows], np.int64)
        keep = _cap_per_entity(labels, config["maxGalleryPerEntity"])
        rows = [rows[i] for i in keep]
        labels = labels[keep]
        vectors = l2_normalise(np.stack([r[2] for r in rows]))
        entity_ids = list(index)
        fit_started = time.perf_counter()
        loo = await asyncio.to_thread(functools.partial(leave_one_out, vectors, labels, normalised=True))
        calibration = balanced_threshold(loo.genuine, loo.impostor[np.isfinite(loo.impostor)], default=DEFAULT_THRESHOLD)
        centroid = held_out_centroid_top1(vectors, labels)
        await ctx.progress(0.95, "evaluated")
        refs = [r[1] for r in rows]
        ids: list[list[str]] = [[] for _ in entity_ids]
        for label, ref in zip(labels, refs, strict=True):
            ids[int(label)].append(ref.identifier_id)
        meta = ArtifactMeta(
            engine=self.info.id, engine_version=self.info.version, backbone=encoder_name,
            backbone_digest=runner.digest, library_id=ctx.library_id, image_size=PARTIAL_FRAMES, channels=N_MELS,
            top_k=config["topK"], threshold=calibration.threshold, score="cosine",
            labels=tuple(Label(e, entity_ids[e], names[e], tuple(ids[e])) for e in range(len(entity_ids))),
        )
        bounds = {"maxAudioBytes": config["maxAudioBytes"], "maxAudioSeconds": config["maxAudioSeconds"],
                  "minVoicedSeconds": config["minVoicedSeconds"]}
        data = await asyncio.to_thread(build_speaker_artifact, encoder, vectors, labels, meta, bounds)
        means = l2_normalise(np.stack([vectors[labels == e].mean(axis=0) for e in range(len(entity_ids))]))
        report: dict[str, Any] = {
            "engine": self.info.id, "engineVersion": self.info.version, "contentType": CONTENT_TYPE,
            "libraryId": ctx.library_id, "libraryVersion": ctx.library_version,
            "backbone": {"name": encoder_name, "digest": runner.digest}, "provider": runner.provider,
            "input": {"name": "mels", "shape": ["P", PARTIAL_FRAMES, N_MELS], "sampleRate": 16000,
                      "features": "power mel of the voiced windows, n_fft 400, hop 160, 40 Slaney mels (engines/speaker/mel.py)"},
            "identifiers": len(rows), "entities": len(entity_ids), "galleryRows": len(rows),
            "skipped": [s.as_json() for s in skipped],
            "recordings": {r[1].identifier_id: r[3] for r in rows},
            "speakers": {
                entity_ids[e]: {"utterances": int((labels == e).sum()),
                                "meanSimilarity": float(np.mean(vectors[labels == e] @ means[e]))}
                for e in range(len(entity_ids))
            },
            "evaluation": {
                "method": "leave-one-out top-1 nearest utterance (cosine)",
                "evaluated": int(loo.queries.size), "top1": loo.top1,
                "perEntity": per_entity(entity_ids, labels[loo.queries], loo.correct),
                "speakerMean": centroid,
            },
            "threshold": calibration.threshold,
            "calibration": calibration.as_json(),
            "timings": {**{k: round(v, 4) for k, v in timings.items()},
                        "fit": round(time.perf_counter() - fit_started, 4),
                        "total": round(time.perf_counter() - started, 4)},
        }
        if skipped:
            report["issues"] = {"hasWarning": True}
        await ctx.progress(1.0, "artifact built")
        return Artifact(data, CONTENT_TYPE, report, loo.top1)

    async def recognize(
        self, artifact: bytes, images: Sequence[bytes], *, top_k: int, threshold: float | None, execution_provider: str
    ) -> list[Recognition]:
        """Best speakers per recording, best first, with the voiced windows (seconds) that were used."""
        if top_k < 1:
            raise EngineError("top_k must be at least 1")
        bounds = await asyncio.to_thread(audio_bounds, artifact, execution_provider)
        results = []
        for index, blob in enumerate(images):
            pieces, info = await asyncio.to_thread(functools.partial(utterance_features, blob, **bounds))
            if pieces is None:
                raise EngineError(f"recording {index} cannot be used ({info['reason']}): {info['detail']}")
            matches = await asyncio.to_thread(recognize_pieces, artifact, pieces, top_k, threshold, execution_provider)
            results.append(Recognition(index, matches, windows=tuple((a, b) for a, b in info["windows"])))
        return results

    def inline_seconds(self, artifact: bytes, execution_provider: str) -> float:
        """The longest recording one ``recognize`` call takes with this artifact (the limit it was trained with);
        a longer one is recognized over time, as a job (``recognize_media``)."""
        return float(audio_bounds(artifact, execution_provider)["max_seconds"])

    async def recognize_media(
        self, artifact: bytes, path: str, options: MediaOptions, *, execution_provider: str,
        pool: Executor | None, progress: Progress,
    ) -> AsyncIterator[Segment]:
        """Who speaks when in a long recording or a video's audio track (engines/speaker/diarize.py): speaker
        segments in start order, each voice matched once against the library or left an unknown speaker."""
        from engines.speaker.diarize import diarize

        async for segment in diarize(artifact, path, options, execution_provider=execution_provider, pool=pool,
                                     progress=progress):
            yield segment


def embed_utterance(runner: Any, pieces: np.ndarray) -> np.ndarray:
    """The normalised mean of the pieces' embeddings (``VoiceEncoder.embed_utterance``)."""
    parts = np.concatenate([runner.run(pieces[i : i + PIECES_PER_RUN]) for i in range(0, len(pieces), PIECES_PER_RUN)])
    mean = parts.mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def build_speaker_artifact(
    encoder: bytes, vectors: np.ndarray, labels: np.ndarray, meta: ArtifactMeta, bounds: dict[str, float] | None = None
) -> bytes:
    """The utterance graph with engines.artifact's gallery head; input ``mels`` [P, 160, 40].

    ``bounds`` (maxAudioBytes, maxAudioSeconds, minVoicedSeconds) go into ``engineshed.audio``: recognition
    applies the limits the model was trained with.
    """
    model = utterance_model(encoder)
    spec = BackboneSpec("ge2e-utterance", model, PARTIAL_FRAMES, N_MELS, 256, hashlib.sha256(model).hexdigest())
    data = build_gallery_artifact(spec, vectors, labels, meta)
    if not bounds:
        return data
    proto = onnx.load_from_string(data)
    proto.metadata_props.append(onnx.StringStringEntryProto(key=AUDIO_KEY, value=json.dumps(bounds)))
    return proto.SerializeToString(deterministic=True)


def audio_bounds(artifact: bytes, provider: str) -> dict[str, Any]:
    """The artifact's ``engineshed.audio`` limits as utterance_features keywords (defaults when absent)."""
    raw = get_runner(artifact, provider).metadata.get(AUDIO_KEY)
    try:
        given = json.loads(raw) if raw else {}
        return {"max_bytes": int(given.get("maxAudioBytes", DEFAULT_MAX_BYTES)),
                "max_seconds": float(given.get("maxAudioSeconds", DEFAULT_MAX_SECONDS)),
                "min_voiced_seconds": float(given.get("minVoicedSeconds", DEFAULT_MIN_VOICED_SECONDS))}
    except (ValueError, TypeError, AttributeError):
        raise EngineError("not an engineshed speaker artifact: bad engineshed.audio metadata") from None


def recognize_pieces(artifact: bytes, pieces: np.ndarray, top_k: int, threshold: float | None, provider: str) -> list[Match]:
    """Run the artifact on one recording's pieces; blocking. Matches under the threshold are dropped."""
    runner = get_runner(artifact, provider)
    meta = ArtifactMeta.from_metadata(runner.metadata)
    outputs = dict(zip(runner.output_names, runner.run_all(np.ascontiguousarray(pieces, np.float32)), strict=True))
    cut = meta.threshold if threshold is None else threshold
    matches = []
    for j in range(min(top_k, outputs["scores"].shape[1])):
        score = float(outputs["scores"][0, j])
        if score < cut:
            break
        label = meta.labels[int(outputs["indices"][0, j])]
        identifier = label.identifier_ids[int(outputs["best_identifier"][0, j])] if label.identifier_ids else None
        matches.append(Match(label.entity_id, label.entity_name, identifier, score))
    return matches


def held_out_centroid_top1(vectors: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Top-1 of each recording against every speaker's mean, its own speaker's mean made without it."""
    counts = np.bincount(labels)
    queries = np.flatnonzero(counts[labels] > 1)
    if queries.size == 0 or counts.size < 2:
        return {"method": "held-out speaker mean (cosine)", "evaluated": 0, "top1": None}
    sums = np.zeros((counts.size, vectors.shape[1]), np.float64)
    np.add.at(sums, labels, vectors)
    scores = vectors[queries] @ l2_normalise(sums).T  # [Q, E]
    own = l2_normalise(sums[labels[queries]] - vectors[queries])
    scores[np.arange(queries.size), labels[queries]] = np.sum(vectors[queries] * own, axis=1)
    correct = scores.argmax(axis=1) == labels[queries]
    return {"method": "held-out speaker mean (cosine)", "evaluated": int(queries.size), "top1": float(correct.mean())}


def _cap_per_entity(labels: np.ndarray, cap: int) -> np.ndarray:
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty_like(labels)
    rank[order] = np.arange(labels.size) - starts[labels[order]]
    return np.flatnonzero(rank < cap)


def _nothing_left(skipped: list[Skipped]) -> str:
    message = f"no recording could be used ({len(skipped)} skipped)"
    by_reason: dict[str, list[str]] = {}
    for skip in skipped:
        by_reason.setdefault(skip.reason, []).append(skip.detail)
    if by_reason:
        message += ": " + "; ".join(f"{len(d)} {r} (e.g. {d[0]})" for r, d in sorted(by_reason.items(), key=lambda x: -len(x[1])))
    return message
