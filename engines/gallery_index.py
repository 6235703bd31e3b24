"""The gallery head without padding: a flat [R, D] gallery, a row → entity index, and a top-k over rows.

Rows are scored at once (one MatMul, or MatMulInteger over int8 rows), the best ``C`` rows are kept, and each
entity's first (best) row among them is its score: a row whose entity already appeared earlier in the sorted
candidates is masked out with an ``[N, C, C]`` comparison, then TopK(k) picks the entities. Size and cost grow
with the rows, never with entities × the largest entity, and nothing limits the rows: the weights are written
to one file as they come (:class:`GalleryWriter`, memory bounded by the batch) and become either the
initializers of one ONNX protobuf or its external data (engines.gallery_archive).

Precision: ``float32`` keeps the rows as they are, so answers are those of exact search. ``int8`` keeps only
rows quantised per row (1 byte a dimension and a float32 scale, so 1.78M rows × 1024 fit a 2 GiB artifact):
the scan runs in integers against the query quantised to uint8, and the ``C`` best candidates are re-scored in
float32 arithmetic, the float32 query against their int8 rows times their scales, so the query's quantisation
error is gone and a score differs from the float32 one only by the row's rounding (at most half a step,
scale / 2, per dimension; ~1e-3 for a unit 1024-d row).
``C`` is large enough for k distinct entities unless k - 1 entities hold more than MAX_CANDIDATES rows; past
that an answer can name fewer than k entities (the best one is always found).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import onnx
from onnx import TensorProto, helper

__all__ = ["CANDIDATES", "FLOAT32", "INT8", "GalleryWriter", "HeadWeights", "add_flat_head", "candidates_for"]

FLOAT32, INT8 = "float32", "int8"
CANDIDATES = 256  # rows kept after the scan, before the per-entity reduction, at least
MAX_CANDIDATES = 2048  # at most: the reduction compares candidates pairwise, [N, C, C]
ALIGN = 4096  # tensors in the weights file start on page boundaries, so a runtime can map them
BLOCK_BYTES = 64 * 1024 * 1024  # the most a transpose block holds in memory
PADDING_SCORE = -10.0  # below any cosine similarity: a masked candidate never wins
WEIGHTS = "weights.bin"
_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float16): TensorProto.FLOAT16,
          np.dtype(np.int8): TensorProto.INT8, np.dtype(np.int64): TensorProto.INT64}


def candidates_for(rows: int, top_k: int, largest: int) -> int:
    """How many rows the scan keeps: enough that ``top_k`` distinct entities are among them whatever the rows
    (k - 1 entities of ``largest`` rows, then one more), up to MAX_CANDIDATES (never fewer than ``top_k``)."""
    wanted = min(MAX_CANDIDATES, max(4 * top_k, (top_k - 1) * largest + 1))
    return max(1, min(rows, max(CANDIDATES, top_k, wanted)))


@dataclass(frozen=True, slots=True)
class HeadWeights:
    """Where each tensor of a written gallery lies in ``path`` (name → dtype, shape, offset, length)."""

    path: Path
    precision: str
    rows: int
    dim: int
    tensors: dict[str, tuple[np.dtype, tuple[int, ...], int, int]]
    largest: int  # the most rows of one entity

    @property
    def nbytes(self) -> int:
        return self.path.stat().st_size

    def tensor(self, name: str, *, external: bool, location: str = WEIGHTS) -> TensorProto:
        """The initializer ``name``: its bytes inline, or a reference to ``location`` at the same offset."""
        dtype, shape, offset, length = self.tensors[name]
        t = TensorProto()
        t.name, t.data_type = f"head/{name}", _TYPES[dtype]
        t.dims.extend(shape)
        if external:
            t.data_location = TensorProto.EXTERNAL
            for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
                entry = t.external_data.add()
                entry.key, entry.value = key, value
        else:
            with open(self.path, "rb") as f:
                f.seek(offset)
                t.raw_data = f.read(length)
        return t


class GalleryWriter:
    """Gallery rows written to a weights file as they come; memory holds one batch, not the gallery.

    Give it the number of rows first (the weights file is laid out for them), then :meth:`add` unit-length rows
    with their entity index and their position in that entity's ``identifierIds``, in any batch size, then
    :meth:`finish`. ``directory`` holds the files (a temporary one by default); :meth:`close` removes them.
    ``block_bytes``: the most the transpose at :meth:`finish` holds at once.
    """

    def __init__(self, rows: int, dim: int, precision: str, directory: str | Path | None = None, *,
                 block_bytes: int = BLOCK_BYTES) -> None:
        if precision not in (FLOAT32, INT8):
            raise ValueError(f"unknown gallery precision {precision!r}")
        if rows < 1 or dim < 1:
            raise ValueError("a gallery needs at least one row and one dimension")
        self.rows, self.dim, self.precision = rows, dim, precision
        self.block_bytes = block_bytes
        self._tmp = tempfile.TemporaryDirectory(prefix="engineshed-gallery-", dir=directory)
        self.directory = Path(self._tmp.name)
        self.path = self.directory / WEIGHTS
        item = 4 if precision == FLOAT32 else 1
        layout: list[tuple[str, np.dtype, tuple[int, ...]]] = [("gallery", np.dtype(np.float32 if item == 4 else np.int8),
                                                                 (dim, rows))]
        if precision == INT8:
            layout += [("row_scale", np.dtype(np.float32), (rows,))]
        layout += [("row_entity", np.dtype(np.int64), (rows,)), ("row_slot", np.dtype(np.int64), (rows,))]
        self.tensors: dict[str, tuple[np.dtype, tuple[int, ...], int, int]] = {}
        offset = 0
        for name, dtype, shape in layout:
            length = int(np.prod(shape)) * dtype.itemsize
            self.tensors[name] = (dtype, shape, offset, length)
            offset = -(-(offset + length) // ALIGN) * ALIGN
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(self._fd, offset)
        # Rows arrive as [batch, D]; the scan wants [D, R]. They are kept row-major in a side file and transposed
        # in blocks at finish, so neither step holds more than a block.
        self._rows_path = self.directory / "rows.tmp"
        self._rows_file = open(self._rows_path, "wb")  # noqa: SIM115 - closed in finish/close
        self.written = 0
        self.largest = 1

    def add(self, vectors: np.ndarray, entities: np.ndarray, slots: np.ndarray) -> None:
        """Append unit-length rows ``vectors`` [b, D], their entity index and their slot in that entity."""
        vectors = np.asarray(vectors, np.float32)
        b = vectors.shape[0]
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(entities) != b or len(slots) != b:
            raise ValueError("rows, entities and slots must match, and rows must have the writer's dimension")
        if self.written + b > self.rows:
            raise ValueError(f"more rows than the {self.rows} the gallery was laid out for")
        r0 = self.written
        if self.precision == INT8:
            scale = np.maximum(np.abs(vectors).max(axis=1), 1e-12) / 127.0
            quantised = np.clip(np.rint(vectors / scale[:, None]), -127, 127).astype(np.int8)
            self._rows_file.write(quantised.tobytes())
            self._put("row_scale", r0, scale.astype(np.float32))
        else:
            self._rows_file.write(vectors.tobytes())
        self._put("row_entity", r0, np.asarray(entities, np.int64))
        self._put("row_slot", r0, np.asarray(slots, np.int64))
        if b:
            self.largest = max(self.largest, int(np.max(slots)) + 1)
        self.written += b

    def _put(self, name: str, first: int, array: np.ndarray) -> None:
        dtype, _, offset, _ = self.tensors[name]
        os.pwrite(self._fd, np.ascontiguousarray(array, dtype).tobytes(), offset + first * dtype.itemsize)

    def finish(self) -> HeadWeights:
        """Transpose the rows into the scan matrix and return where every tensor lies."""
        if self.written != self.rows:
            raise ValueError(f"{self.written} rows written of the {self.rows} announced")
        self._rows_file.close()
        dtype, _, base, _ = self.tensors["gallery"]
        item, rows, dim = dtype.itemsize, self.rows, self.dim
        block = max(1, self.block_bytes // (dim * item))
        with open(self._rows_path, "rb") as source:
            for r0 in range(0, rows, block):
                n = min(block, rows - r0)
                part = np.frombuffer(source.read(n * dim * item), dtype).reshape(n, dim)
                columns = np.ascontiguousarray(part.T)
                for d in range(dim):
                    os.pwrite(self._fd, columns[d].tobytes(), base + (d * rows + r0) * item)
                del part, columns
        self._rows_path.unlink()
        os.close(self._fd)
        self._fd = -1
        return HeadWeights(self.path, self.precision, rows, dim, dict(self.tensors), self.largest)

    def close(self) -> None:
        """Remove the files (the weights too: copy or package them first)."""
        if not self._rows_file.closed:
            self._rows_file.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._tmp.cleanup()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def add_flat_head(graph: onnx.GraphProto, unit: str, weights: HeadWeights, top_k: int, entities: int, *,
                  external: bool) -> int:
    """Append the flat gallery head to ``graph``, reading the unit embedding ``unit`` [N, D]; returns k
    (``top_k``, at most the entities and the candidates).

    Outputs ``scores`` [N, k] (best first), ``indices`` [N, k] (entities), ``best_identifier`` [N, k].
    """
    rows = weights.rows
    c = candidates_for(rows, top_k, weights.largest)
    nodes: list[onnx.NodeProto] = []

    def init(name: str, array: np.ndarray) -> None:
        graph.initializer.append(onnx.numpy_helper.from_array(array, f"head/{name}"))

    def node(op: str, ins: Sequence[str], outs: Sequence[str], **attrs: Any) -> None:
        names = [i if i in (unit,) or i.startswith("head/") else f"head/{i}" for i in ins]
        final = [o if o in ("scores", "indices", "best_identifier") else f"head/{o}" for o in outs]
        nodes.append(helper.make_node(op, names, final, **attrs))

    for name in weights.tensors:
        graph.initializer.append(weights.tensor(name, external=external))
    init("c", np.array([c], np.int64))
    if weights.precision == FLOAT32:
        node("MatMul", [unit, "gallery"], ["row_scores"])
        node("TopK", ["row_scores", "c"], ["cand_scores", "cand_rows"], axis=1)
    else:
        # Symmetric per-row int8 against the query quantised to uint8 (zero point from DynamicQuantizeLinear).
        node("DynamicQuantizeLinear", [unit], ["q", "q_scale", "q_zero"])
        node("MatMulInteger", ["q", "gallery", "q_zero"], ["dots"])
        node("Cast", ["dots"], ["dots_f"], to=TensorProto.FLOAT)
        node("Mul", ["dots_f", "row_scale"], ["approx_rows"])
        node("TopK", ["approx_rows", "c"], ["approx_scores", "approx_rows_idx"], axis=1)
        # Re-scoring of the candidates: the float32 query against their int8 columns of the scan matrix [D, R]
        # (Gather on axis 1: [D, N, C]), times each row's scale.
        init("query_axes", np.array([2], np.int64))
        init("sum_axes", np.array([0], np.int64))
        node("Gather", ["gallery", "approx_rows_idx"], ["cand_cols8"], axis=1)
        node("Cast", ["cand_cols8"], ["cand_cols"], to=TensorProto.FLOAT)
        node("Transpose", [unit], ["query_t"], perm=[1, 0])
        node("Unsqueeze", ["query_t", "query_axes"], ["query_t3"])
        node("Mul", ["cand_cols", "query_t3"], ["products"])
        node("ReduceSum", ["products", "sum_axes"], ["dots_c"], keepdims=0)
        node("Gather", ["row_scale", "approx_rows_idx"], ["cand_scale"], axis=0)
        node("Mul", ["dots_c", "cand_scale"], ["rescored"])
        node("TopK", ["rescored", "c"], ["cand_scores", "order"], axis=1)
        node("GatherElements", ["approx_rows_idx", "order"], ["cand_rows"], axis=1)
    # First occurrence per entity: a candidate counts when the first candidate of its entity (ArgMax of the
    # equality row returns the first maximum) is itself; the others score PADDING_SCORE.
    init("as_col", np.array([-1, c, 1], np.int64))
    init("as_row", np.array([-1, 1, c], np.int64))
    init("positions", np.arange(c, dtype=np.int64))
    init("padding", np.array(PADDING_SCORE, np.float32))
    k = max(1, min(top_k, c, entities))
    init("k", np.array([k], np.int64))
    node("Gather", ["row_entity", "cand_rows"], ["cand_entity"], axis=0)
    node("Gather", ["row_slot", "cand_rows"], ["cand_slot"], axis=0)
    node("Reshape", ["cand_entity", "as_col"], ["entity_col"])
    node("Reshape", ["cand_entity", "as_row"], ["entity_row"])
    node("Equal", ["entity_col", "entity_row"], ["same"])
    node("Cast", ["same"], ["same_f"], to=TensorProto.FLOAT)
    node("ArgMax", ["same_f"], ["first"], axis=2, keepdims=0)
    node("Equal", ["first", "positions"], ["is_first"])
    node("Where", ["is_first", "cand_scores", "padding"], ["entity_scores"])
    node("TopK", ["entity_scores", "k"], ["scores", "pos"], axis=1)
    node("GatherElements", ["cand_entity", "pos"], ["indices"], axis=1)
    node("GatherElements", ["cand_slot", "pos"], ["best_identifier"], axis=1)
    graph.node.extend(nodes)
    return k
