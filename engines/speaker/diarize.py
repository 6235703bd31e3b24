"""Who speaks when in a long recording (or a video's audio track), against a trained speaker artifact.

The pipeline, in bounded memory:

1. engines.media.audio streams the file as 30 s chunks of 16 kHz mono float32 (decoded in a reader thread: one
   file's demuxer and decoder are sequential, and FFmpeg decodes audio at hundreds of times real time).
2. Each chunk goes to the process pool (engines/speaker/windows.py): a streaming energy VAD and the mel pieces
   of the voiced 1.6 s windows on a 0.5 s grid. A few chunks are in flight at once, no more.
3. The windows are embedded as they come by the artifact's own encoder (below), 256 floats per window: on the
   CPU in the pool process that made them (one thread each), on a GPU here in fixed batches.
4. At the end of the stream the windows are clustered into voices, one-window flips smoothed away, and cut into
   segments; each voice is matched once against the library with the artifact's gallery head.

Memory: the window embeddings (256 float32 per 0.5 s hop of voice, about 7 MB per voiced hour), their start
times and the voiced runs (a few floats per pause) are the only things that grow with the recording; audio is
held a few chunks at a time, and clustering many windows works on an even sample of them, not on an N × N
distance matrix (engines/speaker/voices.py).

Embedding: the artifact is ``mels -> encoder -> ReduceMean over pieces -> "utterance" -> gallery head``. Two
graphs are cut from it (cached per artifact digest; artifacts are built as before): the encoder part
(``mels -> embedding``, one vector per window) and the head part (``utterance -> scores``). Windows are embedded
by exactly the encoder the artifact was trained with, and a voice's mean window embedding fed to the head is
exactly what the artifact computes for a recording made of that voice's windows (the head normalises it), so
the calibrated threshold means what it meant in training.

Overlapped speech: the segments never overlap. A window of two voices at once embeds as a mix; it usually
lands in the louder voice's cluster (the segment carries on as that speaker) and otherwise forms a cluster too
small to be a voice (engines/speaker/voices.py MIN_CLUSTER_WINDOWS), which is folded into its nearest voice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import os
import tempfile
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engines.artifact import ArtifactMeta
from engines.interface import EngineError, Match
from engines.media import UNKNOWN_SPEAKER, MediaOptions, Progress, Segment
from engines.media.audio import audio_chunks, probe_audio
from engines.speaker.mel import N_MELS, PARTIAL_FRAMES, SAMPLE_RATE
from engines.speaker.voices import cluster, cut, smooth
from engines.speaker.windows import (
    ALIGN,
    HOP,
    LOOKBACK,
    WINDOW,
    ChunkWindows,
    chunk_windows,
)

__all__ = ["Voices", "diarize", "embedded_chunk", "split_artifact"]

CPU_PROVIDER = "CPUExecutionProvider"

CHUNK = 20 * ALIGN  # 30 s of audio per pool task
IN_FLIGHT = 4  # chunks decoded and not yet embedded, at most
EMBED_BATCH = 64  # windows per encoder run
MERGE_GAP = 0.75  # one speaker's pieces this close (seconds) are one segment: pauses between phrases
MIN_SEGMENT = 0.25  # shorter slivers (a cut landing beside a pause) are dropped
REACH = WINDOW / SAMPLE_RATE  # voice farther than this from any window's centre has no speaker


@dataclass(frozen=True, slots=True)
class SplitArtifact:
    """The two graphs cut from one speaker artifact, and its metadata."""

    encoder: bytes  # mels [P, 160, 40] -> embedding [P, 256]
    head: bytes  # utterance [N, 256] -> scores, indices, best_identifier [N, k]
    meta: ArtifactMeta


_split_cache: dict[str, SplitArtifact] = {}
_split_lock = threading.Lock()
SPLIT_CACHE_SIZE = 4


def split_artifact(artifact: bytes) -> SplitArtifact:
    """The encoder and head graphs of a speaker artifact (engines/speaker/engine.py), cached by its digest."""
    digest = hashlib.sha256(artifact).hexdigest()
    with _split_lock:
        if digest in _split_cache:
            return _split_cache[digest]
    split = _split(artifact)
    with _split_lock:
        while len(_split_cache) >= SPLIT_CACHE_SIZE:
            _split_cache.pop(next(iter(_split_cache)))
        _split_cache[digest] = split
    return split


def _split(artifact: bytes) -> SplitArtifact:
    import onnx
    from google.protobuf.message import DecodeError
    from onnx import TensorProto

    from engines.gallery_archive import is_archive

    if is_archive(artifact):
        raise EngineError("this speaker model is a gallery archive (over 1.5 GB); long recordings need a single-file model")
    try:
        model = onnx.load_from_string(artifact)
    except (DecodeError, ValueError) as exc:
        raise EngineError(f"the artifact is not a readable ONNX model: {exc}") from None
    meta = ArtifactMeta.from_metadata({p.key: p.value for p in model.metadata_props})
    mean = [n for n in model.graph.node if n.op_type == "ReduceMean" and list(n.output) == ["utterance"]]
    if not mean or [i.name for i in model.graph.input] != ["mels"]:
        raise EngineError("not a speaker artifact: no per-piece embedding ('mels' -> ... -> 'utterance') in its graph")
    embedding = mean[0].input[0]
    encoder = _subgraph(model, {"mels": ["P", PARTIAL_FRAMES, N_MELS]}, [(embedding, TensorProto.FLOAT, ["P", 256])])
    head = _subgraph(model, {"utterance": ["N", 256]}, [(o.name, o.type.tensor_type.elem_type, ["N", "k"])
                                                         for o in model.graph.output])
    return SplitArtifact(encoder, head, meta)


def _subgraph(model: Any, inputs: dict[str, list[Any]], outputs: list[tuple[str, int, list[Any]]]) -> bytes:
    """The nodes (and initializers) of ``model`` that compute ``outputs`` from ``inputs``."""
    from onnx import TensorProto, helper

    graph = model.graph
    producer = {name: node for node in graph.node for name in node.output}
    wanted: set[int] = set()
    seen: set[str] = set()
    stack = [name for name, _, _ in outputs]
    while stack:
        name = stack.pop()
        if name in seen or name in inputs or name not in producer:
            seen.add(name)
            continue
        seen.add(name)
        node = producer[name]
        wanted.add(id(node))
        stack.extend(node.input)
    nodes = [node for node in graph.node if id(node) in wanted]
    used = {name for node in nodes for name in node.input}
    sub = helper.make_graph(
        nodes, graph.name, [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        [init for init in graph.initializer if init.name in used],
    )
    cut = helper.make_model(sub, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    return cut.SerializeToString(deterministic=True)


@dataclass
class Voices:
    """What the stream left behind: window embeddings, their start samples, and the voiced runs; and the
    windows waiting for a full encoder batch."""

    vectors: list[np.ndarray] = field(default_factory=list)
    starts: list[np.ndarray] = field(default_factory=list)
    voiced: list[tuple[float, float]] = field(default_factory=list)
    waiting: list[ChunkWindows] = field(default_factory=list)

    def add(self, chunk: ChunkWindows, vectors: np.ndarray | None = None) -> None:
        """A chunk's voiced runs, and its windows: embedded already (``vectors``) or waiting for a batch."""
        for a, b in chunk.voiced:
            if self.voiced and a - self.voiced[-1][1] < 1e-6:  # a run that crosses a chunk boundary
                self.voiced[-1] = (self.voiced[-1][0], b)
            else:
                self.voiced.append((a, b))
        if vectors is not None:
            self.vectors.append(vectors)
            self.starts.append(chunk.starts)
        elif chunk.starts.size:
            self.waiting.append(chunk)

    def batch(self, final: bool = False) -> tuple[np.ndarray, np.ndarray] | None:
        """EMBED_BATCH waiting windows (starts, mels), or the last few when ``final``; None when not enough wait.
        The encoder always sees one batch shape, so its working memory is the same from the first batch on."""
        waiting = sum(c.starts.size for c in self.waiting)
        if not waiting or (waiting < EMBED_BATCH and not final):
            return None
        starts = np.concatenate([c.starts for c in self.waiting])
        mels = np.concatenate([c.mels for c in self.waiting])
        rest = ChunkWindows([], starts[EMBED_BATCH:], mels[EMBED_BATCH:])
        self.waiting = [rest] if rest.starts.size else []
        return starts[:EMBED_BATCH], mels[:EMBED_BATCH]


async def diarize(
    artifact: bytes, path: str, options: MediaOptions, *, execution_provider: str, pool: Executor | None,
    progress: Progress,
) -> AsyncIterator[Segment]:
    """Speaker segments of the recording at ``path`` in start order, once the whole stream is read."""
    from engines.runtime import get_runner

    if options.speakers is not None and options.speakers < 1:
        raise EngineError(f"speakers must be at least 1, not {options.speakers}")
    if options.top_k < 1:
        raise EngineError(f"top_k must be at least 1, not {options.top_k}")
    split = await asyncio.to_thread(split_artifact, artifact)
    probe = await asyncio.to_thread(probe_audio, path, options.max_seconds)
    encoder = await asyncio.to_thread(get_runner, split.encoder, execution_provider)
    await asyncio.to_thread(_prepare_labelling, split, execution_provider)
    # One thread runs the encoder (which uses every core by itself) and the clustering: their large,
    # short-lived buffers stay in one allocator arena instead of one per thread that happened to run them.
    heavy = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="speaker-embed")
    folder = tempfile.TemporaryDirectory(prefix="engineshed-speaker-") if pool is not None else None
    try:
        encoder_file = None
        if folder is not None:  # pool processes load the encoder from here once each (embedded_chunk)
            encoder_file = os.path.join(folder.name, f"{hashlib.sha256(split.encoder).hexdigest()}.onnx")
            await asyncio.to_thread(Path(encoder_file).write_bytes, split.encoder)
        voices = Voices()
        await collect(path, options, voices, encoder, pool, heavy, progress, probe.duration, encoder_file)
        await progress(0.92, "clustering voices")
        loop = asyncio.get_running_loop()
        segments = await loop.run_in_executor(heavy, label_segments, voices, split, options, execution_provider)
    finally:
        heavy.shutdown(wait=False)
        if folder is not None:
            folder.cleanup()
    await progress(1.0, f"{len(segments)} speaker segments")
    for segment in segments:
        yield segment


def _prepare_labelling(split: SplitArtifact, provider: str) -> None:
    """Load what the end of the run needs (scikit-learn, the head's session) before the stream, not after it:
    a missing piece fails the run before any decoding, and the run's memory is at its plateau from the start."""
    import sklearn.cluster  # noqa: F401

    from engines.runtime import get_runner

    get_runner(split.head, provider)


async def collect(
    path: str, options: MediaOptions, voices: Voices, encoder: Any, pool: Executor | None, embedder: Executor,
    progress: Progress, duration: float | None, encoder_file: str | None = None,
) -> None:
    """Stream, window and embed the whole recording into ``voices``."""
    loop = asyncio.get_running_loop()
    # One reader thread drives the decoding generator, so closing it can never race a read in progress.
    reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="audio-reader")
    # Without a process pool the chunks' VAD and mel run in one thread of their own, for the reason the encoder
    # has its own (in the default executor's threads, each kept tens of MB of freed mel buffers: 180 MB more).
    features = pool or concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="speaker-features")
    chunks = audio_chunks(path, chunk_samples=CHUNK, max_seconds=options.max_seconds)
    # With a process pool and the CPU, each pool process embeds its own chunk's windows with a one-thread
    # session: the stages then spread over the cores as separate processes, with no encoder threads competing
    # with the pool (bench/audio_long.py on 2 shared cores: 68 audio seconds per second with the encoder here
    # beside the pool, 88-120 this way). On a GPU the encoder stays here, in batches; the pool does VAD and mel.
    in_pool = pool is not None and encoder.provider == CPU_PROVIDER
    task: Any = functools.partial(embedded_chunk, encoder_file) if in_pool and encoder_file else chunk_windows
    queue: asyncio.Queue[tuple[asyncio.Future[Any], float] | None] = asyncio.Queue(IN_FLIGHT)

    async def produce() -> None:
        tail = np.zeros(0, np.float32)
        while (item := await loop.run_in_executor(reader, next, chunks, None)) is not None:
            offset, samples = item
            data = np.concatenate([tail, samples]) if tail.size else samples
            lookback = tail.size
            tail = data[-LOOKBACK:].copy() if samples.size == CHUNK else tail[:0]
            end = (offset + samples.size) / SAMPLE_RATE
            await queue.put((loop.run_in_executor(features, task, offset, data, lookback), end))
        await queue.put(None)

    async def consume() -> None:
        while (item := await queue.get()) is not None:
            future, done = item
            done_chunk = await future
            if isinstance(done_chunk, tuple):  # embedded in the pool
                voices.add(*done_chunk)
            else:
                voices.add(done_chunk)
                await embed_waiting(voices, encoder, embedder)
            fraction = min(0.9, 0.9 * done / duration) if duration else 0.0
            await progress(fraction, f"{done:.0f} s of audio read")

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(produce())
            group.create_task(consume())
        await embed_waiting(voices, encoder, embedder, final=True)
    except BaseExceptionGroup as errors:  # the first failure as itself: EngineError, or the caller's cancellation
        raise errors.exceptions[0] from None
    finally:
        reader.submit(chunks.close)
        reader.shutdown(wait=False)
        if features is not pool:
            features.shutdown(wait=False)


async def embed_waiting(voices: Voices, encoder: Any, embedder: Executor, final: bool = False) -> None:
    """Embed the waiting windows a full batch at a time (and the rest when ``final``)."""
    loop = asyncio.get_running_loop()
    while (batch := voices.batch(final)) is not None:
        starts, mels = batch
        voices.vectors.append(await loop.run_in_executor(embedder, embed, encoder, mels))
        voices.starts.append(starts)


_process_encoders: dict[str, Any] = {}


def embedded_chunk(encoder_file: str, offset: int, data: np.ndarray, lookback: int) -> tuple[ChunkWindows, np.ndarray]:
    """In a pool process: a chunk's windows (chunk_windows) and their embeddings, by a one-thread CPU session
    of the encoder at ``encoder_file`` (loaded once per process; the name is its digest)."""
    from engines.runtime import get_runner

    digest = Path(encoder_file).stem
    runner = _process_encoders.get(digest)
    if runner is None:
        _process_encoders.clear()  # one encoder at a time per process
        runner = get_runner(Path(encoder_file).read_bytes(), "cpu", threads=1)
        _process_encoders[digest] = runner
    chunk = chunk_windows(offset, data, lookback)
    if not chunk.starts.size:
        return ChunkWindows(chunk.voiced, chunk.starts, chunk.mels[:0]), np.zeros((0, 256), np.float32)
    out = runner.run(chunk.mels)
    vectors = (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    return ChunkWindows(chunk.voiced, chunk.starts, chunk.mels[:0]), vectors


def embed(encoder: Any, mels: np.ndarray) -> np.ndarray:
    """Unit-length window embeddings ``[n, 256]``, run as one EMBED_BATCH (padded); blocking."""
    n = len(mels)
    padded = mels if n == EMBED_BATCH else np.concatenate([mels, np.zeros((EMBED_BATCH - n, *mels.shape[1:]), np.float32)])
    out = encoder.run(np.ascontiguousarray(padded, np.float32))[:n]
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def label_segments(voices: Voices, split: SplitArtifact, options: MediaOptions, provider: str) -> list[Segment]:
    """Cluster, smooth, cut and name: the finished segments, in start order; blocking."""
    if not voices.vectors or not sum(len(v) for v in voices.vectors):
        return []
    vectors = np.concatenate(voices.vectors)
    centres = np.concatenate(voices.starts) / SAMPLE_RATE + REACH / 2
    labels = cluster(vectors, options.speakers)
    labels = smooth(labels, centres, HOP / SAMPLE_RATE)
    pieces = cut(labels, centres, voices.voiced, REACH, MERGE_GAP)
    names = name_voices(vectors, labels, split, options, provider)
    return finish(pieces, names)


@dataclass(frozen=True, slots=True)
class Name:
    """A voice's identity: an entity of the library, or an unknown speaker."""

    label: str
    entity_id: str | None
    entity_name: str | None
    identifier_id: str | None
    confidence: float
    matches: tuple[Match, ...]


def name_voices(vectors: np.ndarray, labels: np.ndarray, split: SplitArtifact, options: MediaOptions,
                provider: str) -> dict[int, Name]:
    """Each voice matched once: its mean window embedding through the artifact's gallery head."""
    from engines.runtime import get_runner

    voices = sorted(set(labels.tolist()))
    means = np.stack([vectors[labels == v].mean(axis=0) for v in voices]).astype(np.float32)
    outputs = dict(zip(*_head_run(get_runner(split.head, provider), means), strict=True))
    meta = split.meta
    cut_at = meta.threshold if options.threshold is None else options.threshold
    best = outputs.get("best_identifier")
    names: dict[int, Name] = {}
    for row, voice in enumerate(voices):
        matches = []
        for j in range(min(options.top_k, outputs["scores"].shape[1])):
            score = float(outputs["scores"][row, j])
            if score < cut_at:
                break
            label = meta.labels[int(outputs["indices"][row, j])]
            identifier = label.identifier_ids[int(best[row, j])] if best is not None and label.identifier_ids else None
            matches.append(Match(label.entity_id, label.entity_name, identifier, score))
        top = float(outputs["scores"][row, 0]) if outputs["scores"].shape[1] else -1.0
        if matches:
            m = matches[0]
            names[voice] = Name(m.entity_id, m.entity_id, m.entity_name, m.entity_identifier_id, m.score, tuple(matches))
        else:
            names[voice] = Name("", None, None, None, top, ())
    return names


def _head_run(runner: Any, means: np.ndarray) -> tuple[list[str], list[np.ndarray]]:
    return runner.output_names, runner.run_all(means)


def finish(pieces: list[tuple[float, float, int]], names: dict[int, Name]) -> list[Segment]:
    """Segments from ``(start, end, voice)`` pieces: unknown voices numbered by first appearance, and one
    speaker's pieces (two voices may be one entity) joined across short pauses."""
    unknown: dict[int, str] = {}
    merged: list[list[Any]] = []
    for start, end, voice in pieces:
        name = names[voice]
        label = name.label or unknown.setdefault(voice, f"{UNKNOWN_SPEAKER}{len(unknown) + 1}")
        if merged and merged[-1][2] == label and start - merged[-1][1] <= MERGE_GAP:
            merged[-1][1] = end
        else:
            merged.append([start, end, label, name])
    return [
        Segment("speaker", round(a, 3), round(b, 3), label, n.entity_id, n.entity_name, n.identifier_id,
                n.confidence, n.matches)
        for a, b, label, n in merged if b - a >= MIN_SEGMENT
    ]

