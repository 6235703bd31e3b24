"""Fixtures for the engine tests: a decode process pool per module and the digits library."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections.abc import Iterator

import pytest

from tests.engines import digits


@pytest.fixture(scope="module")
def decode_pool() -> Iterator[concurrent.futures.ProcessPoolExecutor]:
    """Two decode processes, as a small worker has (spawned: forking a threaded process is unsafe)."""
    pool = concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def digit_library() -> digits.Digits:
    """1,437 training digits in 10 entities and 360 held-out ones."""
    return digits.load()
