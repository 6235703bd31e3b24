"""Fixtures for the engine tests: a decode process pool per module."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def decode_pool() -> Iterator[concurrent.futures.ProcessPoolExecutor]:
    """Two decode processes, as a small worker has (spawned: forking a threaded process is unsafe)."""
    pool = concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)
