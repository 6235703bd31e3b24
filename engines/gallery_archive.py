"""A large gallery artifact: one zip (stored, not compressed) holding ``model.onnx`` and its external data
``weights.bin``, so no part has the 2 GB limit of one protobuf. It runs standalone with plain onnxruntime::

    import zipfile, onnxruntime as ort
    zipfile.ZipFile("model.engineshed").extractall("model")
    session = ort.InferenceSession("model/model.onnx")  # reads model/weights.bin beside it
    scores, indices, best_identifier = session.run(None, {session.get_inputs()[0].name: images})

and ``session.get_modelmeta().custom_metadata_map`` holds the ``engineshed.*`` keys (labels, threshold) as in a
single-file artifact.
"""

from __future__ import annotations

import hashlib
import io
import mmap
import shutil
import tempfile
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from engines.gallery_index import WEIGHTS
from engines.interface import EngineError
from engines.runtime import CPU, CUDA, choose_providers

__all__ = ["ARCHIVE_CONTENT_TYPE", "MODEL", "ArchiveRunner", "archive_metadata", "archive_runner", "is_archive",
           "open_archive_bytes", "write_archive"]

ARCHIVE_CONTENT_TYPE = "application/zip"
MODEL = "model.onnx"
MAGIC = b"PK\x03\x04"
ARCHIVE_SESSIONS = 2  # large galleries kept open per process: each holds its whole gallery in memory
COPY_CHUNK = 16 * 1024 * 1024


def is_archive(data: bytes) -> bool:
    """Whether an artifact is this zip form (a single-file ONNX artifact starts with a protobuf field tag)."""
    return bytes(data[:4]) == MAGIC


def write_archive(model: onnx.ModelProto, weights_path: Path, target: Path) -> Path:
    """Write the zip: ``model`` (its external initializers name ``weights.bin``) and the weights file, streamed."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr(MODEL, model.SerializeToString(deterministic=True))
        with open(weights_path, "rb") as src, zf.open(WEIGHTS, "w", force_zip64=True) as dst:
            shutil.copyfileobj(src, dst, COPY_CHUNK)
    return target


def open_archive_bytes(path: Path) -> mmap.mmap:
    """The archive file as a read-only bytes-like object that is not read into memory."""
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def archive_metadata(data: bytes) -> dict[str, str]:
    """The ``metadata_props`` of an archive's model, without reading its weights."""
    try:
        with zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data) as zf:
            model = onnx.load_from_string(zf.read(MODEL))
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise EngineError(f"the artifact is not a readable engineshed archive: {exc}") from None
    return {p.key: p.value for p in model.metadata_props}


class ArchiveRunner:
    """A session over an extracted archive (or a large single-file artifact's bytes); the members of
    engines.runtime.Runner that recognition uses."""

    def __init__(self, model: Path | bytes, setting: str, digest: str) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = False
        source = str(model / MODEL) if isinstance(model, Path) else model
        self._session = ort.InferenceSession(source, sess_options=options, providers=choose_providers(setting))
        self.provider = self._session.get_providers()[0]
        self.digest = digest
        self.input_name = self._session.get_inputs()[0].name
        self.output_names = [o.name for o in self._session.get_outputs()]
        self.metadata: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)

    def run_all(self, batch: np.ndarray) -> list[np.ndarray]:
        """Every output, in graph order (the batch stays on the host: a gallery's answers are small)."""
        return self._session.run(self.output_names, {self.input_name: np.ascontiguousarray(batch)})

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.run_all(batch)[0]


_runners: OrderedDict[tuple[str, str], ArchiveRunner] = OrderedDict()
_digests: dict[int, tuple[object, str]] = {}
_lock = threading.Lock()
_ROOT = Path(tempfile.gettempdir()) / "engineshed-archives"


def _digest(data: bytes) -> str:
    with _lock:
        known = _digests.get(id(data))
        if known is not None and known[0] is data:
            return known[1]
    h = hashlib.sha256()
    view = memoryview(data)
    for start in range(0, len(view), COPY_CHUNK):
        h.update(view[start:start + COPY_CHUNK])
    digest = h.hexdigest()
    with _lock:
        while len(_digests) >= 4 * ARCHIVE_SESSIONS:
            del _digests[next(iter(_digests))]
        _digests[id(data)] = (data, digest)
    return digest


def archive_runner(data: bytes, setting: str) -> ArchiveRunner:
    """A session for an archive artifact or a large single-file one, created once per (digest, provider) and
    kept among the last ARCHIVE_SESSIONS whatever engines.runtime's byte budget (a gallery of hundreds of MB
    would pass it and be rebuilt for every recognition). An archive is extracted to a private temporary
    directory, removed once the session has read it."""
    providers = choose_providers(setting)
    provider = providers[0] if isinstance(providers[0], str) else providers[0][0]
    digest = _digest(data)
    key = (digest, provider if provider in (CPU, CUDA) else str(provider))
    with _lock:
        runner = _runners.get(key)
        if runner is not None:
            _runners.move_to_end(key)
            return runner
    if not is_archive(data):
        return _keep(key, ArchiveRunner(bytes(data), setting, digest))
    _ROOT.mkdir(mode=0o700, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix=digest[:16] + "-", dir=_ROOT))
    try:
        with zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data) as zf:
            names = set(zf.namelist())
            if MODEL not in names or not names <= {MODEL, WEIGHTS}:
                raise EngineError(f"the archive must hold {MODEL} (and {WEIGHTS}), found {sorted(names)}")
            for name in names:
                with zf.open(name) as src, open(directory / name, "wb") as dst:
                    shutil.copyfileobj(src, dst, COPY_CHUNK)
        runner = ArchiveRunner(directory, setting, digest)
    except zipfile.BadZipFile as exc:
        shutil.rmtree(directory, ignore_errors=True)
        raise EngineError(f"the artifact is not a readable engineshed archive: {exc}") from None
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    # The session has read the weights (or mapped them): the extracted files are not needed any longer.
    shutil.rmtree(directory, ignore_errors=True)
    return _keep(key, runner)


def _keep(key: tuple[str, str], runner: ArchiveRunner) -> ArchiveRunner:
    with _lock:
        cached = _runners.get(key)
        if cached is not None:
            return cached
        while len(_runners) >= ARCHIVE_SESSIONS:
            _runners.popitem(last=False)
        _runners[key] = runner
    return runner

