"""Read the tensors of a PyTorch checkpoint (``torch.save``) without torch and without running its pickle.

A checkpoint is a pickle plus raw tensor bytes. ``pickle.load`` / ``torch.load`` of one runs whatever
callables the pickle names (``os.system`` via ``__reduce__`` is the classic): a checkpoint is code. This
reader unpickles with ``find_class`` limited to the handful of globals a tensor state dict needs, each
mapped to a stand-in of ours (never the real torch object), and refuses every other global with
``CheckpointError`` before anything is called. Extension codes (EXT1/2/4) go through ``find_class`` too.

Two container formats exist and both are read:

* zip (``torch.save`` since 1.6): ``<root>/data.pkl`` with persistent ids
  ``('storage', StorageType, key, location, numel)`` and each storage in ``<root>/data/<key>``;
* legacy (before 1.6; torchvision's own MobileNetV2 file is one): five concatenated pickles and raw
  blobs: magic number, protocol version 1001, system info, the object pickle (persistent ids
  ``('storage', StorageType, key, location, numel, view)``), the list of storage keys, then per key an
  int64 element count and the little-endian bytes.

The result is ``dict[str, np.ndarray]`` (nested dicts flattened with ``.``); non-tensor leaves are dropped.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CheckpointError", "read_checkpoint"]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
MAX_MEMBERS = 100_000


class CheckpointError(ValueError):
    """The file is not a checkpoint this reader accepts (or it names code to run)."""


@dataclass(frozen=True, slots=True)
class _StorageType:
    name: str
    dtype: np.dtype


_STORAGE_TYPES = {
    name: _StorageType(name, np.dtype(dt))
    for name, dt in {
        "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "<u2",
        "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
        "ByteStorage": "u1", "BoolStorage": "?",
    }.items()
}


@dataclass(slots=True)
class _Storage:
    type: _StorageType
    key: str
    numel: int
    data: np.ndarray | None = None  # filled from the zip member or the legacy blob


@dataclass(slots=True)
class _Tensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    def array(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise CheckpointError(f"storage {self.storage.key!r} has no data in the file")
        if len(self.size) != len(self.stride) or any(s < 0 for s in self.size) or any(s < 0 for s in self.stride):
            raise CheckpointError(f"tensor with size {self.size} and stride {self.stride} is malformed")
        if 0 in self.size:
            return np.zeros(self.size, dtype=_np_dtype(self.storage.type))
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if self.offset < 0 or last >= data.size:
            raise CheckpointError(f"tensor reads past the end of storage {self.storage.key!r}")
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:], shape=self.size, strides=[s * item for s in self.stride], writeable=False)
        out = np.array(view)  # a copy: the result never aliases the file buffer
        if self.storage.type.name == "BFloat16Storage":
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out.astype(_np_dtype(self.storage.type).newbyteorder("="), copy=False)


def _np_dtype(t: _StorageType) -> np.dtype:
    return np.dtype(np.float32) if t.name == "BFloat16Storage" else t.dtype


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> _Tensor:
    if not isinstance(storage, _Storage):
        raise CheckpointError("a tensor's storage is not a storage")
    try:
        return _Tensor(storage, int(offset), tuple(int(v) for v in size), tuple(int(v) for v in stride))
    except (TypeError, ValueError):
        raise CheckpointError("a tensor's offset, size or stride is not integers") from None


def _rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None, *rest: Any) -> Any:
    if not isinstance(data, _Tensor):
        raise CheckpointError("a parameter does not hold a tensor")
    return data


class _OrderedDict(OrderedDict):
    """collections.OrderedDict, the container of state dicts (its ``_metadata`` arrives via BUILD)."""


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): _OrderedDict,
    **{("torch", name): t for name, t in _STORAGE_TYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, storages: dict[str, _Storage], legacy: bool):
        super().__init__(file, encoding="utf-8")
        self._storages = storages
        self._legacy = legacy

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"the checkpoint's pickle names {module}.{name}, which is not a tensor-rebuild global; "
                "refusing it (a pickle can run any code it names)") from None

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or pid[0] not in ("storage", b"storage"):
            raise CheckpointError(f"unsupported persistent id {str(pid)[:80]!r}")
        if len(pid) not in (5, 6):
            raise CheckpointError("malformed storage reference")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError("a storage reference names no storage type")
        if isinstance(key, bytes):
            key = key.decode("ascii", "replace")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise CheckpointError("malformed storage reference")
        if len(pid) == 6 and pid[5] is not None:
            raise CheckpointError("storage views (legacy view_metadata) are not supported")
        existing = self._storages.get(key)
        if existing is None:
            existing = self._storages[key] = _Storage(storage_type, key, numel)
        elif existing.type != storage_type:
            raise CheckpointError(f"storage {key!r} is used with two dtypes")
        return existing


def _flatten(obj: Any, prefix: str, out: dict[str, np.ndarray]) -> None:
    if isinstance(obj, _Tensor):
        out[prefix] = obj.array()
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _flatten(v, f"{prefix}.{i}" if prefix else str(i), out)


def _read_zip(data: bytes) -> dict[str, np.ndarray]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise CheckpointError(f"not a PyTorch zip checkpoint: {exc}") from None
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise CheckpointError("too many members")
    pickles = [i.filename for i in infos if i.filename.count("/") == 1 and i.filename.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise CheckpointError("a PyTorch zip checkpoint holds exactly one <root>/data.pkl")
    root = pickles[0][: -len("data.pkl")]
    names = {i.filename: i for i in infos}
    order = names.get(root + "byteorder")
    if order is not None and archive.read(order).strip() not in (b"little", b""):
        raise CheckpointError("big-endian checkpoints are not supported")
    storages: dict[str, _Storage] = {}
    obj = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), storages, legacy=False).load()
    for key, storage in storages.items():
        info = names.get(f"{root}data/{key}")
        if info is None:
            raise CheckpointError(f"storage {key!r} is missing from the archive")
        need = storage.numel * storage.type.dtype.itemsize
        if info.file_size < need:
            raise CheckpointError(f"storage {key!r} holds {info.file_size} bytes, needs {need}")
        storage.data = np.frombuffer(archive.read(info)[:need], dtype=storage.type.dtype)
    out: dict[str, np.ndarray] = {}
    _flatten(obj, "", out)
    return out


def _read_legacy(data: bytes) -> dict[str, np.ndarray]:
    f = io.BytesIO(data)
    storages: dict[str, _Storage] = {}

    def header() -> Any:
        return _RestrictedUnpickler(f, storages, legacy=True).load()

    try:
        if header() != LEGACY_MAGIC:
            raise CheckpointError("not a PyTorch checkpoint (no legacy magic number)")
        if header() != LEGACY_PROTOCOL:
            raise CheckpointError("unsupported legacy checkpoint protocol")
        header()  # system info: {protocol_version, little_endian, type_sizes}
        obj = header()
        keys = header()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, struct.error) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"not a readable PyTorch checkpoint: {exc}") from None
    if not isinstance(keys, list) or set(map(str, keys)) != set(storages):
        raise CheckpointError("the storage key list does not match the storages the pickle uses")
    pos = f.tell()
    for key in keys:
        storage = storages[str(key)]
        if pos + 8 > len(data):
            raise CheckpointError("the file ends inside a storage header")
        (numel,) = struct.unpack_from("<q", data, pos)
        pos += 8
        if numel != storage.numel:
            raise CheckpointError(f"storage {key!r} holds {numel} elements, the pickle says {storage.numel}")
        size = numel * storage.type.dtype.itemsize
        if pos + size > len(data):
            raise CheckpointError("the file ends inside a storage")
        storage.data = np.frombuffer(data, dtype=storage.type.dtype, count=numel, offset=pos)
        pos += size
    out: dict[str, np.ndarray] = {}
    _flatten(obj, "", out)
    return out


def read_checkpoint(source: bytes | str | Path) -> dict[str, np.ndarray]:
    """The tensors of a ``torch.save`` file (zip or legacy), by state-dict name, as numpy arrays."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    try:
        if data[:4] == b"PK\x03\x04":
            return _read_zip(data)
        if data[:1] == b"\x80":  # a pickle protocol opcode: the legacy layout
            return _read_legacy(data)
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, struct.error,
            zipfile.BadZipFile) as exc:
        raise CheckpointError(f"not a readable PyTorch checkpoint: {type(exc).__name__}: {exc}") from None
    raise CheckpointError("not a PyTorch checkpoint (neither a zip archive nor a legacy pickle)")
