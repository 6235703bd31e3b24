"""The ONNX session cache of a process stays within its byte budget and its count, whatever the models' sizes,
and sessions give back their activations after each run (no CPU memory arena)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from engines import runtime
from gateway.resources import Caches
from gateway.settings import Settings, SettingsError
from sampledata.onnx_models import conv_net


@pytest.fixture
def budget() -> Iterator[None]:
    yield
    runtime.configure_sessions(runtime.SESSION_CACHE_BYTES)


def models(count: int) -> list[bytes]:
    return [conv_net(dimension=32, seed=100 + i) for i in range(count)]


def test_the_session_cache_never_holds_more_than_its_byte_budget(budget: None) -> None:
    nets = models(6)
    one = runtime.session_bytes(len(nets[0]))
    runtime.configure_sessions(3 * one)
    batch = np.zeros((2, 3, 32, 32), np.float32)  # the conv net takes NCHW floats
    for net in nets:
        runtime.get_runner(net, "cpu").run(batch)
        sessions, used, limit = runtime.session_cache_usage()
        assert used <= limit == 3 * one and sessions <= 3
    assert runtime.session_cache_usage()[0] == 3
    # The newest sessions are the ones kept: asking again gives the same session, the oldest is made anew.
    assert runtime.get_runner(nets[-1], "cpu") is runtime.get_runner(nets[-1], "cpu")
    # Model bytes are remembered (for their digest) only while a session of them is cached.
    cached = {key[0] for key in runtime._cache.keys()}
    assert {digest for _, digest in runtime._digests.values()} <= cached


def test_a_model_larger_than_the_whole_budget_runs_but_is_not_kept(budget: None) -> None:
    net = models(1)[0]
    runtime.configure_sessions(runtime.session_bytes(len(net)) - 1)
    runner = runtime.get_runner(net, "cpu")
    assert runner.run(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 32)
    assert runtime.session_cache_usage()[:2] == (0, 0)
    assert not runtime._digests


def test_many_small_sessions_are_bounded_by_count_too(budget: None) -> None:
    runtime.configure_sessions(10 * 1024**3)  # bytes would allow thousands; each session has its own threads
    for net in models(runtime.SESSION_CACHE_SIZE + 4):
        runtime.get_runner(net, "cpu")
    assert runtime.session_cache_usage()[0] == runtime.SESSION_CACHE_SIZE
    assert len(runtime._digests) <= runtime.SESSION_CACHE_SIZE


def test_sessions_run_without_a_cpu_memory_arena(budget: None) -> None:
    # The arena keeps each session's peak activations for its lifetime (a 12 MiB face model at batch 64: +800 MiB).
    runner = runtime.get_runner(models(1)[0], "cpu")
    assert runner._session.get_session_options().enable_cpu_mem_arena is False


def test_process_caches_are_bounded_by_the_bytes_the_settings_give() -> None:
    caches = Caches.of(Settings(artifact_cache_bytes=1000, model_file_cache_bytes=500))
    for i in range(5):
        caches.artifacts[f"a{i}"] = b"x" * 400
        caches.model_files[f"m{i}"] = b"x" * 200
    assert caches.artifacts.currsize <= 1000 and len(caches.artifacts) == 2
    assert caches.model_files.currsize <= 500 and len(caches.model_files) == 2
    with pytest.raises(ValueError):  # larger than the whole budget: callers use it once, uncached
        caches.model_files["big"] = b"x" * 501


@pytest.mark.parametrize("name", ["ENGINESHED_SESSION_CACHE_BYTES", "ENGINESHED_ARTIFACT_CACHE_BYTES",
                                  "ENGINESHED_MODEL_FILE_CACHE_BYTES", "ENGINESHED_MALLOC_ARENAS"])
def test_a_cache_budget_that_is_not_positive_is_refused_naming_its_variable(name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: "-1"})


def test_the_settings_set_the_session_budget_of_the_process(budget: None) -> None:
    runtime.configure_sessions(Settings.from_env({"ENGINESHED_SESSION_CACHE_BYTES": "12345678"}).session_cache_bytes)
    assert runtime.session_cache_usage()[2] == 12345678
