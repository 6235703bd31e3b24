"""The face engine on video: faces over time as segments (engines.media), in bounded memory.

::

    probe -> frames sampled every ``frame_interval`` s (engines.media.video, decoded in processes)
      -> per frame, the artifact's detect + align + embed (the frame graph below), ``parallel`` frames at once
      -> tracks (engines.face.tracks), in time order
      -> per ended track: the artifact's gallery head on the mean of its best faces' embeddings -> a Segment

Both graphs are cut from the trained artifact itself, at its per-face embedding (``emb/embedding``), once
per artifact digest; the artifact is not changed. The frame graph is the artifact up to that embedding, with
outputs ``boxes``, ``detection_scores``, ``landmarks`` as the artifact gives them and ``embeddings`` [K, D]
(sliced to the K faces like those); the track head is the rest (normalise, best cosine per entity, top k,
best identifier), fed one embedding per track. Matching per track rather than per frame: a track is
recognized once (the issue's rule), and the mean of its best faces' unit embeddings cancels a frame's pose
and blur before the one comparison, while scores stay on the artifact's own calibrated scale (the same head,
the same threshold). Scores aggregated over frames would need every entity's score in every frame, which
the artifact's top-k does not give.

A segment spans from half a sampling interval before its first sighting to half one after its last
(clipped to the media): the face came into view somewhere between two samples, and the midpoint is off by
at most half an interval either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper
from PIL import Image

from engines.artifact import ArtifactMeta
from engines.backbone import OUTPUT
from engines.face.artifact import face_settings
from engines.face.tracks import Detection, Track, Tracker, Unknowns, track_gap
from engines.interface import EngineError, Match
from engines.media import UNKNOWN_FACE, MediaOptions, Progress, Segment
from engines.media.video import MediaInfo, VideoFrame, probe, sample_frames
from engines.runtime import CPU, Runner, choose_providers, get_runner, throughput_runner

__all__ = ["FRAME_OUTPUTS", "derived_graphs", "frame_runner", "recognize_media", "run_frame"]

EMBEDDING = "emb/" + OUTPUT  # the artifact's per-face embedding, [max(K, 1), D] (engines.face.artifact)
HEAD_OUTPUTS = ("head/all_scores", "head/all_indices", "head/all_best_identifier")
FRAME_OUTPUTS = ("boxes", "detection_scores", "landmarks", "embeddings")
THUMB = 96  # px, the thumbnail's side
THUMB_CONTEXT = 1.3  # the thumbnail shows the face box's longer side times this
PROGRESS_EVERY = 2.0  # seconds of work between progress reports


_DERIVED: OrderedDict[str, tuple[bytes, bytes]] = OrderedDict()  # by artifact sha256, the newest last
_DERIVED_KEPT = 2
_derived_lock = threading.Lock()


def derived_graphs(artifact: bytes) -> tuple[bytes, bytes]:
    """(frame graph, track head) of a face artifact (module docstring), built once per artifact digest.

    Raises EngineError when ``artifact`` is not a face engine artifact."""
    digest = hashlib.sha256(artifact).hexdigest()
    with _derived_lock:
        if digest in _DERIVED:
            _DERIVED.move_to_end(digest)
            return _DERIVED[digest]
    try:
        model = onnx.load_from_string(artifact)
        graphs = _frame_graph(model), _head_graph(model)
    except Exception as exc:  # noqa: BLE001 - ours (ValueError), the checker's, protobuf's DecodeError: all say "not one"
        raise EngineError(f"not a face engine artifact: {type(exc).__name__}: {exc}") from None
    with _derived_lock:
        _DERIVED[digest] = graphs
        while len(_DERIVED) > _DERIVED_KEPT:
            _DERIVED.popitem(last=False)
    return graphs


def _needed(graph: onnx.GraphProto, outputs: list[str], stop: set[str]) -> list[onnx.NodeProto]:
    """The nodes ``outputs`` depend on, in graph order, not looking past the tensors in ``stop``."""
    producer = {o: i for i, n in enumerate(graph.node) for o in n.output}
    keep: set[int] = set()
    todo = [o for o in outputs if o not in stop]
    while todo:
        name = todo.pop()
        i = producer.get(name)
        if i is None or i in keep:
            continue
        keep.add(i)
        todo.extend(x for x in _inputs(graph.node[i]) if x and x not in stop)
    return [graph.node[i] for i in sorted(keep)]


def _inputs(node: onnx.NodeProto) -> list[str]:
    """A node's inputs and what its subgraphs (If, Loop, Scan) read from the outer scope."""
    names = list(node.input)
    for attr in node.attribute:
        for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)):
            for inner in sub.node:
                names.extend(_inputs(inner))
    return names


def _subset(model: onnx.ModelProto, nodes: list[Any], inputs: list[Any], outputs: list[Any],
            name: str) -> bytes:
    used = {x for n in nodes for x in _inputs(n)}
    graph = helper.make_graph(nodes, name, inputs, outputs,
                              initializer=[t for t in model.graph.initializer if t.name in used])
    graph.sparse_initializer.extend(t for t in model.graph.sparse_initializer if t.values.name in used)
    out = helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version,
                            producer_name="engineshed")
    out.functions.extend(model.functions)
    out.metadata_props.extend(model.metadata_props)
    data = out.SerializeToString(deterministic=True)
    onnx.checker.check_model(data)
    return data


def _frame_graph(model: onnx.ModelProto) -> bytes:
    g = model.graph
    names = {o for n in g.node for o in n.output}
    if EMBEDDING not in names or "face/k_vec" not in names:
        raise ValueError(f"it has no {EMBEDDING} per face")
    slicer = helper.make_node("Slice", [EMBEDDING, "face/slice0", "face/k_vec", "face/slice_axis"], ["embeddings"],
                              name="face/video_embeddings")
    nodes = _needed(g, ["boxes", "detection_scores", "landmarks", EMBEDDING, "face/k_vec"], set()) + [slicer]
    outputs = [o for o in g.output if o.name in FRAME_OUTPUTS[:3]]
    outputs.append(helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["K", None]))
    return _subset(model, nodes, list(g.input), outputs, "engineshed-face-frames")


def _head_graph(model: onnx.ModelProto) -> bytes:
    g = model.graph
    nodes = _needed(g, list(HEAD_OUTPUTS), {EMBEDDING})
    inputs = [helper.make_tensor_value_info(EMBEDDING, TensorProto.FLOAT, ["N", None])]
    outputs = [helper.make_tensor_value_info(n, TensorProto.INT64 if "indices" in n or "best" in n else TensorProto.FLOAT,
                                             ["N", None]) for n in HEAD_OUTPUTS]
    return _subset(model, nodes, inputs, outputs, "engineshed-face-track-head")


# The CPU frame session of one video: one intra-op thread per run, runs side by side (as
# engines.runtime.throughput_runner gives), with onnxruntime's memory arena on, unlike the shared sessions. Without
# the arena every run allocates its activations afresh and glibc hands the large ones back to the system when
# freed, so each frame faults ~34 MB of pages in again: on the bench video (640×360 frames, 2 runs at once) 8,300
# page faults and 17 ms of system time per frame on top of 37 ms of user time; with the arena, none after the first
# frames. The arena keeps the peak of the runs in flight (one frame size per video: ~100 MiB for two runs) and is
# freed with the session when the video ends; the session costs ~80 ms to create, nothing beside a video's decoding.


def frame_runner(model: bytes, setting: str) -> tuple[Runner, int]:
    """The frame graph's session for one video and how many frames to run on it at once."""
    if choose_providers(setting)[0] != CPU:
        return throughput_runner(model, setting)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return Runner(model, "cpu", threads=1, arena=True), cores


def run_frame(runner: Runner, image: np.ndarray) -> dict[str, np.ndarray]:
    """The frame graph's outputs for one upright uint8 RGB frame (blocking)."""
    return dict(zip(runner.output_names, runner.run_all(image, items=1), strict=True))


def detections(outputs: dict[str, np.ndarray], frame: VideoFrame) -> list[Detection]:
    """The frame's faces in display pixels, boxes clipped to the frame, embeddings normalised."""
    h, w = frame.image.shape[:2]
    found = []
    embs = outputs["embeddings"]
    norms = np.maximum(np.linalg.norm(embs, axis=1, keepdims=True), 1e-12) if len(embs) else embs
    for box, score, emb in zip(outputs["boxes"], outputs["detection_scores"], embs / norms if len(embs) else embs,
                               strict=True):
        x1, x2 = (min(max(float(v), 0.0), w) for v in (box[0], box[2]))
        y1, y2 = (min(max(float(v), 0.0), h) for v in (box[1], box[3]))
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        s = frame.scale
        found.append(Detection((x1 * s, y1 * s, x2 * s, y2 * s), float(score), emb.astype(np.float32)))
    return found


def _thumb_crop(frame: VideoFrame, box: tuple[float, float, float, float]) -> np.ndarray:
    x1, y1, x2, y2 = (v / frame.scale for v in box)
    cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * THUMB_CONTEXT / 2
    image = Image.fromarray(frame.image).crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))
    return np.asarray(image.resize((THUMB, THUMB), Image.Resampling.BILINEAR))


def _jpeg(crop: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(crop).save(out, "JPEG", quality=85)
    return out.getvalue()


class _Judge:
    """Ended tracks to segments: the track head on each track's embedding, unknowns numbered."""

    def __init__(self, head: Runner, meta: ArtifactMeta, options: MediaOptions, info: MediaInfo) -> None:
        self.head, self.meta, self.info = head, meta, info
        self.cut = meta.threshold if options.threshold is None else options.threshold
        self.top_k = options.top_k
        self.half = options.frame_interval / 2
        self.unknowns = Unknowns()

    def segment(self, track: Track, thumbnail: np.ndarray | None) -> Segment:
        scores, indices, best_ids = self.head.run_all(track.embedding()[None])
        matches = []
        for j in range(min(self.top_k, scores.shape[1])):
            score = float(scores[0, j])
            if score < self.cut:
                break
            label = self.meta.labels[int(indices[0, j])]
            identifier = label.identifier_ids[int(best_ids[0, j])] if label.identifier_ids else None
            matches.append(Match(label.entity_id, label.entity_name, identifier, score))
        confidence = min(1.0, float(scores[0, 0])) if scores.shape[1] else 0.0
        start = max(0.0, track.first - self.half)
        end = min(self.info.duration, track.last + self.half)
        if matches:
            top = matches[0]
            who: tuple[str, str | None, str | None, str | None] = (
                top.entity_id, top.entity_id, top.entity_name, top.entity_identifier_id)
        else:
            who = (f"{UNKNOWN_FACE}{self.unknowns.number(track.embedding())}", None, None, None)
        return Segment(
            kind="face", start=round(start, 3), end=round(max(end, start), 3), label=who[0], entity_id=who[1],
            entity_name=who[2], identifier_id=who[3], confidence=round(confidence, 4), matches=tuple(matches),
            best_time=round(track.best_time, 3), boxes=tuple(track.boxes),
            thumbnail=_jpeg(thumbnail) if thumbnail is not None else None,
        )


async def recognize_media(
    artifact: bytes, path: str, options: MediaOptions, *, execution_provider: str, pool: Executor | None,
    progress: Progress,
) -> AsyncIterator[Segment]:
    """Faces over time in the video at ``path`` as segments, each yielded when its track ends (module docstring)."""
    if not options.frame_interval > 0:
        raise EngineError("frame_interval must be a positive number of seconds")
    if options.top_k < 1:
        raise EngineError("top_k must be at least 1")
    info = await asyncio.to_thread(probe, path, max_seconds=options.max_seconds)
    frame_bytes, head_bytes = await asyncio.to_thread(derived_graphs, artifact)
    runner, parallel = await asyncio.to_thread(frame_runner, frame_bytes, execution_provider)
    head = await asyncio.to_thread(get_runner, head_bytes, execution_provider)
    try:
        max_side, _ = face_settings(runner.metadata)
    except ValueError as exc:
        raise EngineError(str(exc)) from None
    meta = ArtifactMeta.from_metadata(head.metadata)  # the artifact's own metadata, copied into both graphs
    judge = _Judge(head, meta, options, info)
    tracker = Tracker(track_gap(options.frame_interval))
    thumbs: dict[int, np.ndarray] = {}  # per open track, its best face's thumbnail pixels
    inflight: deque[tuple[VideoFrame, asyncio.Future[dict[str, np.ndarray]]]] = deque()
    reported = time.monotonic()
    sampled = 0
    loop = asyncio.get_running_loop()
    # ``parallel`` single-threaded runs at once (engines.runtime.throughput_runner), and as many frames queued
    # behind them, so a run starts the moment one ends.
    inference = ThreadPoolExecutor(parallel, thread_name_prefix="face-video")

    def ended(tracks: list[Track]) -> list[Segment]:
        return [judge.segment(tr, thumbs.pop(tr.id, None)) for tr in tracks]

    async def settle(frame: VideoFrame, job: asyncio.Future[dict[str, np.ndarray]]) -> list[Segment]:
        found = detections(await job, frame)
        joined, closed = tracker.update(frame.time, found)
        for tr in joined:
            if tr.best_changed:
                thumbs[tr.id] = _thumb_crop(frame, tr.best_box)
        return await asyncio.to_thread(ended, closed) if closed else []

    await progress(0.0, f"video {info.duration:.0f} s, {info.width}×{info.height}")
    try:
        async with contextlib.aclosing(sample_frames(path, info, options.frame_interval, max_side, pool)) as frames:
            async for frame in frames:
                sampled += 1
                inflight.append((frame, loop.run_in_executor(inference, run_frame, runner, frame.image)))
                if len(inflight) < 2 * parallel:
                    continue
                for segment in await settle(*inflight.popleft()):
                    yield segment
                if time.monotonic() - reported >= PROGRESS_EVERY:
                    reported = time.monotonic()
                    await progress(min(1.0, frame.time / info.duration), f"{frame.time:.0f} of {info.duration:.0f} s")
        while inflight:
            for segment in await settle(*inflight.popleft()):
                yield segment
        for segment in await asyncio.to_thread(ended, tracker.finish()):
            yield segment
    finally:
        for _, job in inflight:
            job.cancel()
        inference.shutdown(wait=False, cancel_futures=True)  # a run in progress ends on its own, within a frame
    await progress(1.0, f"{sampled} frames sampled")
