"""ONNX Runtime: the one place that creates inference sessions.

``auto`` runs on CUDA where it works and on the CPU otherwise; ``cuda`` where CUDA does not work
raises EngineError instead of falling back, so a GPU deployment that lost its GPU is noticed.
Sessions are created once per (model digest, provider) and reused; ``Runner.run`` blocks, so
callers run it off the event loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
from cachetools import LRUCache
from onnx import TensorProto, helper

from engines.interface import EngineError

__all__ = [
    "CPU", "CUDA", "ProviderSetting", "Runner", "choose_providers", "configure_sessions", "cuda_usable", "get_runner",
    "observe_runs", "session_bytes", "session_cache_usage",
]

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
ProviderSetting = Literal["auto", "cuda", "cpu"]

# prefer_nhwc measured +22 % on an H100 for conv backbones (docs/gpu.md); EXHAUSTIVE pays once per shape.
CUDA_OPTIONS: dict[str, str] = {"prefer_nhwc": "1", "cudnn_conv_algo_search": "EXHAUSTIVE"}
MiB = 1024 * 1024
# The session cache is bounded by what its sessions hold (session_bytes) and by count: every session has its own
# thread pool, and a process recognizing with many small trained artifacts would otherwise keep hundreds of them.
SESSION_CACHE_SIZE = 16
SESSION_CACHE_BYTES = 1024 * MiB  # the default of ENGINESHED_SESSION_CACHE_BYTES (gateway/settings.py)
# Measured on the pulled face model (12 MiB, arena off): each cached session added 3× its model size to the RSS
# (the weights ORT keeps, prepacked copies, the model bytes the digest memo holds) plus a few MiB of its own.
SESSION_SIZE_FACTOR = 3
SESSION_OVERHEAD_BYTES = 4 * MiB

# Told of every batch a Runner runs: (provider, batch size, start and end in time.time_ns()). The process that
# hosts the engines sets it (for metrics and traces); None costs nothing.
RunObserver = Callable[[str, int, int, int], None]
_observer: list[RunObserver] = []


def observe_runs(observer: RunObserver | None) -> None:
    """Call ``observer`` after each batch a Runner runs, on the thread that ran it (None: stop)."""
    _observer[:] = [observer] if observer is not None else []


def cuda_usable() -> bool:
    """Whether a CUDA session actually runs on CUDA here (probed once per process with a one-node model)."""
    return _cuda_probe()[0]


@functools.cache
def _cuda_probe() -> tuple[bool, str]:
    """(usable, why not). onnxruntime-gpu lists CUDAExecutionProvider even without a GPU or CUDA libraries, logs an
    error when a session asks for it, and silently runs on the CPU; only ``get_providers()`` on a created session
    tells the truth. The probe's own session logs nothing: a machine without CUDA is no error, and
    :func:`provider_summary` says once what runs."""
    if CUDA not in ort.get_available_providers():
        return False, "this onnxruntime has no CUDA provider"
    _preload_cuda_libraries()
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    ort.set_default_logger_severity(4)  # fatal only, for the probe: the CUDA library load failure is expected here
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=[(CUDA, CUDA_OPTIONS), CPU])
    except Exception as exc:  # a broken CUDA install surfaces as any of several ORT errors
        return False, f"a CUDA session failed: {exc}"
    finally:
        ort.set_default_logger_severity(2)  # onnxruntime's default: warnings and errors
    if session.get_providers()[0] != CUDA:
        return False, "no usable GPU or CUDA/cuDNN libraries (onnxruntime fell back to the CPU)"
    return True, ""


def provider_summary(setting: str) -> str:
    """One line saying which execution provider sessions use under ``setting``, and why: logged once at start."""
    if setting == "cpu":
        return "execution provider: CPU (ENGINESHED_ONNX_PROVIDER=cpu)"
    usable, why = _cuda_probe()
    if usable:
        return f"execution provider: CUDA ({ort.get_device()}), CPU as fallback"
    return f"execution provider: CPU ({why})"


@functools.cache
def _preload_cuda_libraries() -> None:
    # onnxruntime-gpu >= 1.21 can load the CUDA/cuDNN libraries from pip wheels or torch itself.
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        # It prints each library it cannot find: on a machine without CUDA that is every one of them, and no error.
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                preload()
        except Exception as exc:
            log.debug("onnxruntime.preload_dlls failed: %s", exc)
        if printed.getvalue().strip():
            log.debug("onnxruntime.preload_dlls: %s", printed.getvalue().strip())


def choose_providers(setting: str) -> list[Any]:
    """The provider list for a session under ``setting`` ("auto" | "cuda" | "cpu").

    Raises EngineError for "cuda" when CUDA is not usable, and for an unknown setting.
    """
    if setting == "cpu":
        return [CPU]
    if setting not in ("auto", "cuda"):
        raise EngineError(f"unknown execution provider setting {setting!r} (expected auto, cuda or cpu)")
    if cuda_usable():
        return [(CUDA, dict(CUDA_OPTIONS)), CPU]
    if setting == "cuda":
        raise EngineError("execution provider 'cuda' was requested but CUDA is not usable on this worker")
    return [CPU]


class Runner:
    """One inference session and the provider it actually runs on."""

    def __init__(self, model: bytes, setting: str, threads: int = 0, *, arena: bool = False) -> None:
        providers = choose_providers(setting)
        if providers[0] != CPU:
            _preload_cuda_libraries()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No CPU memory arena: it keeps the peak of every run's activations for the session's lifetime and gives
        # nothing back when the session is dropped (the pulled face model at batch 64 grew a process from 150 MiB to
        # 950 MiB in two runs, 1.4 GiB with two runs at once; 220 MiB without the arena, at the same speed).
        # ``arena``: a session made for one job and dropped after it (a video's frames, all one size) keeps the arena,
        # since without it each run faults its activations in afresh (engines/face/video.py measures the cost).
        options.enable_cpu_mem_arena = arena
        if threads:  # decode processes run one each, side by side: one thread apiece avoids oversubscription
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(model, sess_options=options, providers=providers)
        active = self._session.get_providers()[0]
        if setting == "cuda" and active != CUDA:
            raise EngineError(f"execution provider 'cuda' was requested but the session runs on {active}")
        self._provider = active
        self.digest = hashlib.sha256(model).hexdigest()
        self.nbytes = session_bytes(len(model))
        self.input_name = self._session.get_inputs()[0].name
        self.output_names = [o.name for o in self._session.get_outputs()]
        self.metadata: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)

    @property
    def provider(self) -> str:
        """The execution provider actually in use, e.g. "CPUExecutionProvider"."""
        return self._provider

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The first output for a uint8 NHWC batch."""
        return self.run_all(batch)[0]

    def run_all(self, batch: np.ndarray, items: int | None = None) -> list[np.ndarray]:
        """Every output, in graph order, for a uint8 NHWC batch; ``items``: how many inputs it holds, for the run
        observer, where it is not the first axis (one photo, HWC)."""
        batch = np.ascontiguousarray(batch)
        if not _observer:
            return self._run(batch)
        start = time.time_ns()
        outputs = self._run(batch)
        _observer[0](self._provider, len(batch) if items is None else items, start, time.time_ns())
        return outputs

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._provider != CUDA:
            return self._session.run(self.output_names, {self.input_name: batch})
        return self._run_bound(batch, "cuda")

    def _run_bound(self, batch: np.ndarray, device: str) -> list[np.ndarray]:
        # On the GPU, numpy in/out puts host copies on the critical path (docs/gpu.md: 30-80 %):
        # copy the uint8 input to the device once and let outputs stay there until one copy back.
        binding = self._session.io_binding()
        binding.bind_ortvalue_input(self.input_name, ort.OrtValue.ortvalue_from_numpy(batch, device, 0))
        for name in self.output_names:
            binding.bind_output(name, device, 0)
        self._session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()


def session_bytes(model_size: int) -> int:
    """What a cached session of a ``model_size``-byte model is counted as holding (module constants)."""
    return SESSION_SIZE_FACTOR * model_size + SESSION_OVERHEAD_BYTES


def _runner_bytes(runner: Runner) -> int:
    return runner.nbytes


class _Sessions(LRUCache[tuple[str, str], "Runner"]):
    """The LRU of sessions; a session leaving it takes the remembered digests of its model bytes along."""

    def popitem(self) -> tuple[tuple[str, str], Runner]:
        key, runner = super().popitem()
        if not any(k[0] == key[0] for k in self.keys()):
            for ident in [i for i, (_, digest) in _digests.items() if digest == key[0]]:
                del _digests[ident]
        return key, runner


# Sessions per process: engines see no gateway resources, and an ONNX session belongs to the process that made
# it (its threads, its device memory), so the cache is this module's; open_resources sets its byte budget from
# the settings (configure_sessions). Bounded by bytes and by count; cachetools keeps the LRU order.
_cache: _Sessions = _Sessions(SESSION_CACHE_BYTES, getsizeof=_runner_bytes)
_cache_lock = threading.Lock()


# Callers pass the same bytes object for a cached artifact again and again: hashing megabytes per call
# showed in recognize latency, so the digest is remembered per object (held here, so its id stays unique),
# for at most SESSION_CACHE_SIZE objects and only while a session of those bytes is cached.
_digests: dict[int, tuple[bytes, str]] = {}


def configure_sessions(max_bytes: int) -> None:
    """Set the session cache's byte budget (ENGINESHED_SESSION_CACHE_BYTES); sessions over it are dropped, oldest first."""
    global _cache
    if max_bytes < 1:
        raise ValueError("the session cache's byte budget must be positive")
    with _cache_lock:
        old, _cache = _cache, _Sessions(max_bytes, getsizeof=_runner_bytes)
        for key in list(old.keys()):  # oldest first, so the newest stay when the budget is smaller
            runner = old[key] if key in old else None
            if runner is not None and runner.nbytes <= max_bytes:
                _cache[key] = runner
        for ident in [i for i, (_, d) in _digests.items() if not any(k[0] == d for k in _cache.keys())]:
            del _digests[ident]


def session_cache_usage() -> tuple[int, int, int]:
    """(sessions cached, bytes they are counted as, the byte budget)."""
    with _cache_lock:
        return len(_cache), int(_cache.currsize), int(_cache.maxsize)


def _digest(model: bytes) -> str:
    with _cache_lock:
        known = _digests.get(id(model))
        if known is not None and known[0] is model:
            return known[1]
    return hashlib.sha256(model).hexdigest()


def _remember(model: bytes, digest: str) -> None:
    # Under _cache_lock. The oldest remembered object goes first (dicts keep insertion order).
    _digests.pop(id(model), None)
    while len(_digests) >= SESSION_CACHE_SIZE:
        del _digests[next(iter(_digests))]
    _digests[id(model)] = (model, digest)


def throughput_runner(model: bytes, setting: str) -> tuple[Runner, int]:
    """A session for embedding a whole library, and how many batches to run on it at once.

    On the CPU: one intra-op thread per run and as many runs at once as this process has cores. Independent
    single-threaded runs do not wait at every operator for the slowest of their threads, which a decode process
    or an S3 fetch on the same core makes slow: on the pulled face model, 2 cores, 2×1 thread gave 128 and 122
    batches/s of 32 where 1×2 threads gave 121 and 110 (idle; one core 30 % busy elsewhere). On CUDA: the
    default session, one batch at a time (the device is the bottleneck and queues its own work).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    first = choose_providers(setting)[0]
    if first == CPU and cores > 1:
        return get_runner(model, setting, threads=1), cores
    return get_runner(model, setting), 1


def get_runner(model: bytes, setting: str, threads: int = 0) -> Runner:
    """A Runner for ``model`` under ``setting``, created once per (model digest, provider, threads).

    ``threads`` > 0 caps the session's intra-op threads (0: onnxruntime's default, every core).
    """
    providers = choose_providers(setting)
    provider = providers[0] if isinstance(providers[0], str) else providers[0][0]
    key = (_digest(model), provider if not threads else f"{provider}/{threads}")
    with _cache_lock:
        runner = _cache.get(key)
        if runner is not None:
            _remember(model, key[0])
            return runner
    runner = Runner(model, setting, threads)
    with _cache_lock:
        # Two threads may have built the same session; keep the first so callers share one.
        cached = _cache.get(key)
        if cached is not None:
            runner = cached
        elif runner.nbytes <= _cache.maxsize:  # a session larger than the whole budget is used once, not kept
            while len(_cache) >= SESSION_CACHE_SIZE:
                _cache.popitem()
            _cache[key] = runner
        if key in _cache:
            _remember(model, key[0])
    return runner
