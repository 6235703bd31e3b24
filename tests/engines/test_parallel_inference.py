"""Batches embedded several at once (runtime.throughput_runner on the CPU) give the rows one at a time gives,
in the same order, and a failing batch fails the run without leaving it hanging."""

from __future__ import annotations

import asyncio
import os
import threading

import numpy as np
import pytest

from engines.backbone import default_backbone
from engines.gallery import GalleryEngine
from engines.pipeline import embed_library, pipeline_kwargs
from engines.runtime import CPU, get_runner, throughput_runner
from tests.engines.memory_context import MemoryContext

ENGINE = GalleryEngine()
# Small batches, so that 90 identifiers make 12 batches and several are in flight at once.
CONFIG = ENGINE.info.validate_config({"pageSize": 20, "batchSize": 8})


class CountsConcurrency:
    """Wraps a Runner: records how many of its runs overlapped, and can fail one of them."""

    def __init__(self, runner, fail_on: int | None = None) -> None:
        self.runner, self.fail_on = runner, fail_on
        self.calls = self.active = self.most = 0
        self.lock = threading.Lock()

    @property
    def provider(self) -> str:
        return self.runner.provider

    def run(self, batch: np.ndarray) -> np.ndarray:
        with self.lock:
            self.calls += 1
            call = self.calls
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            if call == self.fail_on:
                raise RuntimeError("the session failed on this batch")
            return self.runner.run(batch)
        finally:
            with self.lock:
                self.active -= 1


def test_on_the_cpu_the_throughput_layout_is_single_threaded_runs_one_per_core():
    spec = default_backbone(CONFIG["imageSize"], 1)
    runner, parallel = throughput_runner(spec.model, "cpu")
    assert runner.provider == CPU
    assert runner is get_runner(spec.model, "cpu", threads=1)  # cached like any session
    assert parallel == len(os.sched_getaffinity(0))


async def test_batches_run_at_once_give_the_same_rows_in_the_same_order(decode_pool, digit_library):
    entries = digit_library.train[:90]
    spec = default_backbone(CONFIG["imageSize"], 1)
    one = await embed_library(MemoryContext(entries, config=CONFIG, decode_pool=decode_pool), spec,
                              get_runner(spec.model, "cpu"), parallel=1, **pipeline_kwargs(CONFIG))
    counting = CountsConcurrency(get_runner(spec.model, "cpu", threads=1))
    many = await embed_library(MemoryContext(entries, config=CONFIG, decode_pool=decode_pool), spec, counting,
                               parallel=3, **pipeline_kwargs(CONFIG))
    assert counting.calls == 12 and 1 <= counting.most <= 3
    assert [r.identifier_id for r in many.refs] == [r.identifier_id for r in one.refs]
    assert [r.identifier_id for r in one.refs] == [e.identifier_id for e in entries]
    np.testing.assert_allclose(many.embeddings, one.embeddings, atol=1e-5)


async def test_a_batch_that_fails_among_several_fails_the_run_with_its_error(decode_pool, digit_library):
    spec = default_backbone(CONFIG["imageSize"], 1)
    failing = CountsConcurrency(get_runner(spec.model, "cpu", threads=1), fail_on=3)
    ctx = MemoryContext(digit_library.train[:90], config=CONFIG, decode_pool=decode_pool)
    with pytest.raises(RuntimeError, match="failed on this batch"):
        await asyncio.wait_for(embed_library(ctx, spec, failing, parallel=3, **pipeline_kwargs(CONFIG)), 60)
    assert failing.calls >= 3
