"""The training data path shared by the engines: library pages in, embeddings out.

Four stages connected by bounded queues, so memory stays flat for any library size (only the
``[N, D]`` embeddings and their refs accumulate):

    pages ──(cache hits resolved)──▶ fetch ×fetchConcurrency ──▶ decode (process pool) ──▶ backbone

* refs with a stored vector of this backbone (``ctx.stored``, the worker's identifier_embeddings read in bulk
  with the pages) are neither looked up, fetched nor embedded; vectors the run computes or finds in the cache
  are handed back (``ctx.stored.store``) so the next run reads them;
* refs whose sha256 is known are looked up in the embedding cache (``ctx.cache``) per page and never fetched
  on a hit; refs stored by reference get their sha256 from the fetched bytes and are looked up
  then, per decode chunk;
* identical content (same sha256) in flight is fetched, decoded and embedded once;
* fetch failures and quality-gate failures skip the identifier with a reason; the gates also hold for vectors
  that come from the cache or from storage: they read the content's measures (``ctx.cache.content_measures``,
  what a decode recorded through ``ctx.cache.store_content_measures``), and an identifier whose measures are not known is
  fetched and decoded as if it had no vector;
* cancelling the coroutine cancels every stage; decode work not yet started in the pool is
  cancelled with it (the asyncio future chained to it cancels the pool future).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiolimiter import AsyncLimiter

from engines.backbone import BackboneSpec
from engines.decode import DEFAULT_MAX_PIXELS, decode_batch_timed, gate
from engines.embedded import EmbeddedLibrary, RowBuffer, Skipped
from engines.interface import (
    EmbeddingCache,
    FetchError,
    IdentifierRef,
    Measures,
    StoredVectors,
    TrainingContext,
)
from engines.runtime import Runner

__all__ = ["EmbeddedLibrary", "EmbeddingRun", "Skipped", "embed_library", "pipeline_kwargs"]

log = logging.getLogger(__name__)

DECODE_CHUNK = 16  # blobs per process-pool call: amortises pickling without starving the pool
DECODE_IN_FLIGHT = 8  # chunks submitted to the pool at once
PAGES_AHEAD = 2  # library pages read before they are needed
STORES_IN_FLIGHT = 2  # embedding-cache writes running beside inference
PERSIST_BATCH = 512  # vectors handed to ctx.stored.store at once
MEASURES_BATCH = 512  # content measures handed to ctx.cache.store_content_measures at once
_END = object()
# A picklable function of a chunk of blobs, run in the decode pool (see embed_library).
Decoder = Callable[[list[bytes]], tuple[list[tuple[Any, ...]], float]]


@dataclass(slots=True, eq=False)
class _Item:
    seq: int
    ref: IdentifierRef
    page: int
    sha: str | None
    late: bool = False  # sha256 learnt from the fetched bytes, so not yet looked up in the cache
    data: bytes | None = None
    array: np.ndarray | None = None
    extra: dict[str, Any] | None = None  # what a custom decoder said about the item (e.g. the face used)


class EmbeddingRun:
    """One pass of the pipeline over a context's library: the four stages, their queues and the bookkeeping."""

    def __init__(
        self,
        ctx: TrainingContext,
        spec: BackboneSpec,
        runner: Runner,
        *,
        page_size: int,
        fetch_concurrency: int,
        fetch_rate: float | None,
        batch_size: int,
        min_size: int,
        sharpness_threshold: float,
        progress_span: float,
        decoder: Decoder | None = None,
        use_cache: bool = True,
        stored: bool = True,
        parallel: int = 1,
    ) -> None:
        self.ctx, self.spec, self.runner = ctx, spec, runner
        self.parallel = max(1, parallel)
        self.decoder = decoder
        self.extras: dict[str, dict[str, Any]] = {}
        # Stored vectors are whole-image vectors of a registered model: used only when this run's backbone is
        # that model's (same digest) and the engine embeds whole images (``stored``, and no custom decoder, whose
        # rows are something else: aligned face crops).
        same = stored and decoder is None and ctx.stored is not None and ctx.stored.digest == spec.digest
        self.stored_vectors: StoredVectors | None = ctx.stored if same else None
        # The content cache; None also when the engine's rows depend on more than the bytes (``use_cache``).
        self.cache: EmbeddingCache | None = ctx.cache if use_cache else None
        self.to_persist: dict[str, np.ndarray] = {}
        # The quality gates on vectors not decoded here (cache or stored): only the plain decoder's gates, whose
        # measures are recorded per content; a custom decoder gates (and embeds) something else.
        self.gated = decoder is None and (min_size > 0 or sharpness_threshold > 0)
        self.to_measure: dict[str, Measures] = {}
        self.stored = 0
        self.page_size, self.batch_size = page_size, batch_size
        self.fetch_concurrency = fetch_concurrency
        self.limiter = AsyncLimiter(fetch_rate, 1.0) if fetch_rate else None
        self.min_size, self.sharpness_threshold = min_size, sharpness_threshold
        self.progress_span = progress_span
        self.total = ctx.total_identifiers
        self.fetch_q: asyncio.Queue[_Item | None] = asyncio.Queue(maxsize=2 * fetch_concurrency)
        self.decode_q: asyncio.Queue[_Item | None] = asyncio.Queue(maxsize=DECODE_CHUNK * DECODE_IN_FLIGHT)
        self.infer_q: asyncio.Queue[_Item | None] = asyncio.Queue(maxsize=2 * batch_size)
        self.pending: dict[str, list[_Item]] = {}  # sha256 in flight -> [leader, followers...]
        self.page_left: dict[int, int] = {}
        self.rows = RowBuffer()
        self.skipped: list[tuple[int, Skipped]] = []  # (paging seq, skip), sorted at the end
        self.done = 0
        self.cached = 0
        self.inferred = 0
        self.timings = {"fetch": 0.0, "decode": 0.0, "inference": 0.0}

    async def run(self) -> EmbeddedLibrary:
        started = time.perf_counter()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._produce())
                tg.create_task(self._fetch_stage())
                tg.create_task(self._decode_stage())
                tg.create_task(self._infer_stage())
        except BaseExceptionGroup as group:
            raise _first_error(group) from None
        await self._flush_persist()
        await self._flush_measures()
        vectors, refs = self.rows.in_paging_order()
        self.timings["total"] = time.perf_counter() - started
        skipped = [s for _, s in sorted(self.skipped, key=lambda pair: pair[0])]
        return EmbeddedLibrary(
            vectors, refs, skipped, self.timings, self.cached, self.inferred, extras=self.extras, stored=self.stored
        )

    # -- stages -----------------------------------------------------------------------------

    async def _pages_ahead(self) -> AsyncIterator[list[IdentifierRef]]:
        """The library's pages, the next ones read while this one is looked up and queued.

        Paging and the embedding-cache lookup are one round trip each per page; a retrain that finds
        everything cached does nothing else, so reading ahead halves its wall time.
        """
        ahead: asyncio.Queue[Any] = asyncio.Queue(maxsize=PAGES_AHEAD)

        async def pump() -> None:
            pages = self.ctx.pages(self.page_size)
            try:
                async for page in pages:
                    await ahead.put(page)
            except Exception as exc:  # handed to the consumer, raised there
                await ahead.put(exc)
            else:
                await ahead.put(_END)
            finally:
                if (close := getattr(pages, "aclose", None)) is not None:
                    await close()

        task = asyncio.create_task(pump())
        try:
            while (page := await ahead.get()) is not _END:
                if isinstance(page, Exception):
                    raise page
                yield page
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _produce(self) -> None:
        seq = 0
        page_no = 0
        async for page in self._pages_ahead():
            if not page:
                continue
            page_no += 1
            items = []
            for ref in page:
                items.append(_Item(seq, ref, page_no, ref.content_sha256))
                seq += 1
            self.page_left[page_no] = len(items)
            measures = await self._measures([i.sha for i in items if i.sha])
            # Rows with a stored vector first (gated on their recorded measures): only the others are looked up in
            # the content cache, so a retrain of a library whose every row has its vector makes no cache round trip
            # at all (one per page before).
            rest = []
            for item in items:
                vector = self.stored_vectors.take(item.ref) if self.stored_vectors is not None else None
                known, skip = self._gate(item.sha, measures)
                if vector is not None and known:
                    self.cached += skip is None
                    self.stored += skip is None
                    await self._complete(item, vector=vector, skip=skip, persist=False)
                else:
                    rest.append((item, known, skip))
            lookup = sorted({i.sha for i, _, _ in rest if i.sha and i.sha not in self.pending})
            hits = await self.cache.cached_embeddings(self.spec.digest, lookup) if lookup and self.cache else {}
            for item, known, skip in rest:
                if item.sha is not None and item.sha in self.pending:
                    self.pending[item.sha].append(item)
                elif item.sha is not None and item.sha in hits and known:
                    self.cached += skip is None
                    await self._complete(item, vector=hits[item.sha], skip=skip)
                else:
                    if item.sha is not None:
                        self.pending[item.sha] = [item]
                    await self.fetch_q.put(item)
        for _ in range(self.fetch_concurrency):
            await self.fetch_q.put(None)

    async def _fetch_stage(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for _ in range(self.fetch_concurrency):
                tg.create_task(self._fetch_worker())
        await self.decode_q.put(None)

    async def _fetch_worker(self) -> None:
        while (item := await self.fetch_q.get()) is not None:
            started = time.perf_counter()
            try:
                async with self.limiter or contextlib.nullcontext():
                    data = await self.ctx.fetch(item.ref)
            except FetchError as exc:
                await self._complete(item, skip=("fetch-failed", str(exc) or "fetch failed"))
                continue
            finally:
                self.timings["fetch"] += time.perf_counter() - started
            digest = hashlib.sha256(data).hexdigest()
            if item.sha is None:
                item.sha, item.late = digest, True
                if digest in self.pending:  # same bytes already on their way
                    self.pending[digest].append(item)
                    continue
                self.pending[digest] = [item]
            elif digest != item.sha:
                log.warning("identifier %s: content sha256 %s differs from the recorded %s",
                            item.ref.identifier_id, digest, item.sha)
            item.data = data
            await self.decode_q.put(item)

    async def _decode_stage(self) -> None:
        slots = asyncio.Semaphore(DECODE_IN_FLIGHT)
        async with asyncio.TaskGroup() as tg:
            finished = False
            while not finished:
                item = await self.decode_q.get()
                if item is None:
                    break
                chunk = [item]
                while len(chunk) < DECODE_CHUNK:  # take what is ready; never wait to fill a chunk
                    try:
                        nxt = self.decode_q.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    if nxt is None:
                        finished = True
                        break
                    chunk.append(nxt)
                await slots.acquire()
                tg.create_task(self._decode_chunk(chunk, slots))
        await self.infer_q.put(None)

    async def _decode_chunk(self, chunk: list[_Item], slots: asyncio.Semaphore) -> None:
        try:
            late = [i.sha for i in chunk if i.late]
            hits = await self.cache.cached_embeddings(self.spec.digest, late) if late and self.cache else {}
            measures = await self._measures([i.sha for i in chunk if i.late and i.sha in hits])
            todo = []
            for item in chunk:
                known, skip = self._gate(item.sha, measures)
                if item.late and item.sha in hits and known:
                    self.cached += skip is None
                    await self._complete(item, vector=hits[item.sha], skip=skip)
                else:
                    todo.append(item)
            if not todo:
                return
            blobs = [i.data for i in todo]
            for item in todo:
                item.data = None
            loop = asyncio.get_running_loop()
            if self.decoder is not None:
                results, seconds = await loop.run_in_executor(self.ctx.decode_pool, self.decoder, blobs)
            else:
                results, seconds = await loop.run_in_executor(
                    self.ctx.decode_pool,
                    decode_batch_timed,
                    blobs,
                    self.spec.input_size,
                    self.spec.channels,
                    self.min_size,
                    self.sharpness_threshold,
                    DEFAULT_MAX_PIXELS,
                    True,  # measure: the sizes and sharpness are kept per content (see _gate)
                )
            self.timings["decode"] += seconds
            for item, result in zip(todo, results, strict=True):
                array, skip = result[0], result[1]
                if self.decoder is not None:
                    item.extra = result[2] if len(result) > 2 else None
                elif result[2] is not None and item.sha is not None:
                    m = result[2]
                    self.to_measure[item.sha] = (m["width"], m["height"], m["sharpness"])
                if skip is not None:
                    await self._complete(item, skip=(skip["reason"], skip.get("detail", "")))
                else:
                    item.array = array
                    await self.infer_q.put(item)
            if len(self.to_measure) >= MEASURES_BATCH:
                await self._flush_measures()
        finally:
            slots.release()

    async def _infer_stage(self) -> None:
        # Cache writes run beside the next batch's inference: with a heavy backbone the model is the
        # bottleneck, and a database round trip between batches would leave it idle each time. Up to
        # ``parallel`` batches run at once (runtime.throughput_runner), each on a thread of this run's own, and
        # the next batch is gathered while they run.
        executor = concurrent.futures.ThreadPoolExecutor(self.parallel, thread_name_prefix="infer")
        try:
            async with asyncio.TaskGroup() as tasks:
                slots = asyncio.Semaphore(STORES_IN_FLIGHT)
                running = asyncio.Semaphore(self.parallel)
                batch: list[_Item] = []
                while (item := await self.infer_q.get()) is not None:
                    batch.append(item)
                    if len(batch) >= self.batch_size:
                        await running.acquire()
                        tasks.create_task(self._infer(batch, tasks, slots, executor, running))
                        batch = []
                if batch:
                    await running.acquire()
                    tasks.create_task(self._infer(batch, tasks, slots, executor, running))
        finally:
            # Not waited for: a cancelled run's batch in progress finishes on its thread, off the event loop.
            executor.shutdown(wait=False, cancel_futures=True)

    async def _infer(
        self, batch: list[_Item], stores: asyncio.TaskGroup, slots: asyncio.Semaphore,
        executor: concurrent.futures.Executor, running: asyncio.Semaphore,
    ) -> None:
        try:
            images = np.stack([i.array for i in batch])
            for item in batch:
                item.array = None
            started = time.perf_counter()
            vectors = await asyncio.get_running_loop().run_in_executor(executor, self.runner.run, images)
            # busy time: batches that run at once each count their own wall
            self.timings["inference"] += time.perf_counter() - started
        finally:
            running.release()
        vectors = np.asarray(vectors, np.float32)
        self.inferred += len(batch)
        self.ctx.count_inference(len(batch))
        if self.cache is not None:
            await slots.acquire()
            stores.create_task(self._store({i.sha: v for i, v in zip(batch, vectors) if i.sha}, slots))
        for item, vector in zip(batch, vectors, strict=True):
            await self._complete(item, vector=vector)

    async def _store(self, vectors: dict[str, np.ndarray], slots: asyncio.Semaphore) -> None:
        assert self.cache is not None
        try:
            await self.cache.store_embeddings(self.spec.digest, vectors)
        finally:
            slots.release()

    # -- bookkeeping --------------------------------------------------------------------------

    async def _complete(
        self, item: _Item, *, vector: np.ndarray | None = None, skip: tuple[str, str] | None = None,
        persist: bool = True,
    ) -> None:
        group = self.pending.get(item.sha) if item.sha is not None else None
        if group and group[0] is item:
            del self.pending[item.sha]  # type: ignore[arg-type]
            members = group
        else:
            members = [item]
        finished_pages = 0
        for member in members:
            if item.extra is not None:
                self.extras[member.ref.identifier_id] = item.extra
            if vector is not None and skip is None:
                self.rows.add(member.seq, member.ref, np.asarray(vector, np.float32).reshape(-1))
                if persist and self.stored_vectors is not None:
                    self.to_persist[member.ref.identifier_id] = vector
            else:
                assert skip is not None  # a vector from the cache or storage that the gates now refuse
                self.skipped.append((member.seq, Skipped(member.ref, skip[0], skip[1])))
            self.done += 1
            self.page_left[member.page] -= 1
            if self.page_left[member.page] == 0:
                del self.page_left[member.page]
                finished_pages += 1
        if len(self.to_persist) >= PERSIST_BATCH:
            await self._flush_persist()
        if finished_pages:
            await self._report()

    async def _measures(self, shas: list[str]) -> dict[str, Measures]:
        """The recorded measures of some contents, when the gates need them."""
        if not self.gated or self.cache is None or not shas:
            return {}
        return await self.cache.content_measures(sorted(set(shas)))

    def _gate(self, sha: str | None, measures: Mapping[str, Measures]) -> tuple[bool, tuple[str, str] | None]:
        """(whether the gates can be decided without the bytes, the skip they give): with no gate, trivially."""
        if not self.gated:
            return True, None
        found = measures.get(sha) if sha is not None else None
        if found is None:
            return False, None
        width, height, sharp = found
        skip = gate(width, height, None, self.min_size, 0.0)  # the size decides alone when it is too small
        if skip is None and self.sharpness_threshold > 0:
            if sharp is None:
                return False, None  # measured by a run without a sharpness gate
            skip = gate(width, height, sharp, self.min_size, self.sharpness_threshold)
        return True, (skip["reason"], skip["detail"]) if skip is not None else None

    async def _flush_measures(self) -> None:
        if self.to_measure and self.cache is not None:
            batch, self.to_measure = self.to_measure, {}
            await self.cache.store_content_measures(batch)

    async def _flush_persist(self) -> None:
        if self.to_persist and self.stored_vectors is not None:
            batch, self.to_persist = self.to_persist, {}
            await self.stored_vectors.store(batch)

    async def _report(self) -> None:
        message = f"{self.done} identifiers processed ({len(self.skipped)} skipped)"
        fraction = 0.0
        if self.total:
            fraction = self.progress_span * min(1.0, self.done / self.total)
        await self.ctx.progress(fraction, message)


def _first_error(group: BaseExceptionGroup) -> BaseException:
    # Siblings cancelled because one stage failed show up as CancelledError; report the cause.
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]


async def embed_library(
    ctx: TrainingContext,
    spec: BackboneSpec,
    runner: Runner,
    *,
    page_size: int,
    fetch_concurrency: int,
    batch_size: int,
    min_size: int,
    sharpness_threshold: float,
    fetch_rate: float | None = None,
    progress_span: float = 0.9,
    decoder: Decoder | None = None,
    use_cache: bool = True,
    stored: bool = True,
    parallel: int = 1,
) -> EmbeddedLibrary:
    """Embed every identifier ``ctx.pages`` yields with the backbone ``spec`` run by ``runner``.

    ``fetch_rate`` caps fetches started per second (None or 0: no cap). Progress is reported as
    pages complete, as a fraction of ``ctx.total_identifiers`` scaled to ``progress_span`` (the
    rest is left to the engine's fitting); when the total is unknown the fraction stays 0 and
    only the message moves.

    ``decoder`` replaces the decode stage's function: called in the decode pool with a chunk of
    blobs, it returns ``([(array | None, skip | None, extra | None), ...], seconds)``; each item's
    ``extra`` ends in ``EmbeddedLibrary.extras`` by identifier ID. ``use_cache`` False neither reads
    nor writes the embedding cache (for engines whose rows depend on more than the bytes).
    ``stored``: whether the context's stored whole-image vectors may stand in for embedding (they are used
    only when ``spec`` is the backbone that made them); an engine that embeds something other than the whole
    image (face crops) passes False. ``parallel``: batches run at once (see runtime.throughput_runner).
    """
    run = EmbeddingRun(
        ctx,
        spec,
        runner,
        page_size=page_size,
        fetch_concurrency=fetch_concurrency,
        fetch_rate=fetch_rate,
        batch_size=batch_size,
        min_size=min_size,
        sharpness_threshold=sharpness_threshold,
        progress_span=progress_span,
        decoder=decoder,
        use_cache=use_cache,
        stored=stored,
        parallel=parallel,
    )
    return await run.run()


def pipeline_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """embed_library's keyword arguments from a validated config holding PIPELINE_OPTIONS."""
    return {
        "page_size": config["pageSize"],
        "fetch_concurrency": config["fetchConcurrency"],
        "fetch_rate": config["fetchRate"] or None,
        "batch_size": config["batchSize"],
        "min_size": config["minSize"],
        "sharpness_threshold": config["sharpnessThreshold"],
    }
