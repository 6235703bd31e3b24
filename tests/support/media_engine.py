"""A media engine defined in the tests (ENGINESHED_EXTRA_ENGINES), for the worker's mechanics of media tasks.

It trains in a moment (its artifact lists the library's entities) and recognizes over time at a pace the video
itself asks for: :func:`video` writes the seconds of work per second of media into the container's ``comment``
tag. Each media second yields one face segment (the entities in turn, every third second an unknown person),
so a test knows exactly which segments a complete run stores, and a slow video keeps a task reliably mid-run
for a kill or a cancel.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Executor

import numpy as np

from engines.interface import Artifact, EngineError, EngineInfo, Match, Recognition
from engines.media import FrameBox, MediaOptions, Progress, Segment

ENGINE_ID = "test-media"
SPEC = "tests.support.media_engine:MediaSleeperEngine"


def video(seconds: int, pace: float = 0.0, fps: int = 2, side: int = 32) -> bytes:
    """An MP4 of ``seconds`` (coloured frames) whose runs take ``pace`` wall seconds per media second."""
    import av

    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        container.metadata["comment"] = f"pace={pace}"
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = side, side, "yuv420p"
        for i in range(seconds * fps):
            frame = np.full((side, side, 3), (i * 7) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def expected_labels(entities: Sequence[str], seconds: int) -> list[str]:
    """The label of each media second's segment in a completed run: unknown people numbered 1, 2, ... in the
    order they first appear (the engine numbers them the other way round; the worker renumbers them)."""
    return [_label(entities, i) for i in range(seconds)]


def _label(entities: Sequence[str], i: int) -> str:
    return f"unknown-face-{i // 3 + 1}" if i % 3 == 2 or not entities else entities[i % len(entities)]


def _engine_label(entities: Sequence[str], i: int, seconds: int) -> str:
    """What the engine yields: unknowns numbered last-seen first, as an engine that judges a track when it ends
    may number them (a long-seen unknown gets a later number)."""
    label = _label(entities, i)
    if label not in entities:
        unknowns = {_label(entities, j) for j in range(seconds)} - set(entities)
        label = f"unknown-face-{len(unknowns) - i // 3}"
    return label


def _probe(path: str) -> tuple[float, float]:
    import av

    try:
        with av.open(path, metadata_errors="ignore") as container:
            comment = container.metadata.get("comment", "")
            pace = float(comment.split("=", 1)[1]) if comment.startswith("pace=") else 0.0
            return float(container.duration or 0) / av.time_base, pace
    except Exception as exc:  # noqa: BLE001 - av's errors: the media cannot be read
        raise EngineError(f"the media cannot be read: {type(exc).__name__}") from None


class MediaSleeperEngine:
    info = EngineInfo(
        id=ENGINE_ID,
        name="Media sleeper (test engine)",
        category_id="test",
        identifier_type_ids=("face",),
        library_type_ids=("people",),
        modes=("library-train", "library-run"),
        concurrency_limit=2,
    )

    async def train(self, ctx) -> Artifact:
        entities: dict[str, str] = {}
        async for page in ctx.pages(100):
            for ref in page:
                entities[ref.entity_id] = ref.entity_name
        body = json.dumps({"entities": sorted(entities.items())}).encode()
        await ctx.progress(1.0, "done")
        return Artifact(data=body, content_type="application/json", jsondata={"identifiers": len(entities)}, accuracy=None)

    async def recognize(self, artifact: bytes, images: Sequence[bytes], *, top_k: int, threshold, execution_provider: str) -> list[Recognition]:
        return [Recognition(index=i, matches=[]) for i in range(len(images))]

    async def recognize_media(
        self, artifact: bytes, path: str, options: MediaOptions, *, execution_provider: str, pool: Executor | None,
        progress: Progress,
    ) -> AsyncIterator[Segment]:
        if pool is None or not execution_provider:
            raise EngineError("the worker must hand over its decode pool and execution provider")
        names = dict(json.loads(artifact)["entities"])
        entities = sorted(names)
        duration, pace = await asyncio.to_thread(_probe, path)
        seconds = math.floor(duration + 1e-6)
        root = await asyncio.get_running_loop().run_in_executor(pool, math.sqrt, 4.0)  # the pool works
        for i in range(seconds):
            if pace:
                await asyncio.sleep(pace)
            label = _engine_label(entities, i, seconds)
            known = label in names
            match = Match(label, names[label], None, 0.9) if known else None
            yield Segment(
                kind="face", start=float(i), end=float(i + 1), label=label, entity_id=label if known else None,
                entity_name=names.get(label), identifier_id=None, confidence=0.9 if known else 0.2,
                matches=(match,) if match else (), best_time=i + 0.5,
                boxes=(FrameBox(i + 0.5, 1.0, 2.0, root, 4.0),), thumbnail=b"\xff\xd8\xff" + bytes([i % 256]) * 8,
            )
            await progress((i + 1) / seconds, f"{i + 1} of {seconds} s")
