"""A library's stored vectors for a training, read in bulk: one binary COPY of fixed-width rows parsed straight
into numpy (no Python object per row), and the library's entities in the order a gallery ranks them.

Every row of the COPY has the same width (identifier and entity IDs as 16 bytes, the content digest padded to
64 bytes, the vector in pgvector's send form), so a block of rows is one ``np.frombuffer`` with a structured
dtype whose fields skip the COPY's length words.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from uuid import UUID

import asyncpg
import numpy as np

# The training's identifiers (engines.gallery_stream) as storage.queries.identifiers' FOR_TRAINING_WITH_VECTORS
# selects them: of the types, with an entity, not marked as not their entity.
_TRAINING = """FROM entity_identifiers i
{join} identifier_embeddings v ON v.identifier_id = i.id AND v.model_version_id = $4
WHERE i.org_id = $1 AND i.library_id = $2 AND i.identifier_type_id = ANY($3::text[]) AND i.entity_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM identifier_negatives n WHERE n.identifier_id = i.id AND n.entity_id = i.entity_id)"""

WITHOUT_VECTOR = """-- whether a training identifier has no stored vector of the model version (then it needs the images)
SELECT EXISTS (SELECT 1 """ + _TRAINING.format(join="LEFT JOIN") + " AND v.identifier_id IS NULL)"

# Binary COPY of fixed-width rows: the digest padded to 64 characters (a missing one sorts first, as '' does).
VECTORS = """SELECT i.id, i.entity_id, rpad(coalesce(i.content_sha256, ''), 64) AS sha, v.embedding
""" + _TRAINING.format(join="JOIN")

ENTITIES = """-- the library's entities by name (code point order, as Python sorts str) then ID
SELECT id, coalesce(name, '') AS name FROM entities WHERE org_id = $1 AND library_id = $2
ORDER BY coalesce(name, '') COLLATE "C", id"""

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_FIXED = 2 + (4 + 16) + (4 + 16) + (4 + 64) + 4  # field count, two UUIDs, the digest, the vector's length word
BLOCK_ROWS = 16384
# One COPY reads the whole library, so it lasts as long as the library is large (minutes at millions of rows):
# the pool's per-command timeout would cut it, and a retried training would meet the same end.
READ_TIMEOUT = 6 * 3600.0

Sink = Callable[[np.ndarray], Awaitable[None]]


def row_dtype(vector_bytes: int) -> np.dtype:
    """A COPY row: ``identifier_id`` and ``entity_id`` (16 bytes, UUID order), ``content_sha256`` (S64, space
    padded), ``dimension`` and ``vector`` (big-endian float32, pgvector's send form after its 4-byte header)."""
    dim = (vector_bytes - 4) // 4
    return np.dtype({
        "names": ["fields", "identifier_id", "entity_id", "content_sha256", "length", "dimension", "vector"],
        "formats": [">i2", "V16", "V16", "S64", ">i4", ">i2", (">f4", (dim,))],
        "offsets": [0, 6, 26, 46, 110, 114, 118],
        "itemsize": _FIXED + vector_bytes,
    })


class _Rows:
    """Cuts the COPY stream into blocks of whole rows for ``sink``."""

    def __init__(self, sink: Sink, block_rows: int) -> None:
        self.sink, self.block_rows = sink, block_rows
        self.buffer = bytearray()
        self.dtype: np.dtype | None = None
        self.header_done = False
        self.rows = 0

    async def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        if not self.header_done:
            if len(self.buffer) < 19 + _FIXED:
                return
            if bytes(self.buffer[:11]) != _SIGNATURE:
                raise ValueError("not a binary COPY stream")
            extension = struct.unpack(">i", self.buffer[15:19])[0]
            del self.buffer[: 19 + extension]
            self.header_done = True
        if self.dtype is None:
            if len(self.buffer) < _FIXED:
                return
            self.dtype = row_dtype(struct.unpack(">i", self.buffer[_FIXED - 4:_FIXED])[0])
        if len(self.buffer) >= self.block_rows * self.dtype.itemsize:
            await self._flush(len(self.buffer) // self.dtype.itemsize)

    async def _flush(self, n: int) -> None:
        assert self.dtype is not None
        size = n * self.dtype.itemsize
        block = np.frombuffer(bytes(self.buffer[:size]), self.dtype)
        del self.buffer[:size]
        if (block["fields"] != 4).any() or (block["length"] != self.dtype.itemsize - _FIXED).any():
            raise ValueError("stored vectors of different dimensions in one model version")
        self.rows += n
        await self.sink(block)

    async def finish(self) -> None:
        if self.dtype is not None and len(self.buffer) > 2:
            await self._flush((len(self.buffer) - 2) // self.dtype.itemsize)
        if bytes(self.buffer[-2:]) != b"\xff\xff" or (self.dtype is not None and len(self.buffer) != 2):
            raise ValueError("the binary COPY stream ended inside a row")


async def without_vector(conn: asyncpg.Connection, org_id: UUID, library_id: UUID, type_ids: list[str],
                         version_id: UUID) -> bool:
    return bool(await conn.fetchval(WITHOUT_VECTOR, org_id, library_id, type_ids, version_id, timeout=READ_TIMEOUT))


async def copy_vectors(conn: asyncpg.Connection, org_id: UUID, library_id: UUID, type_ids: list[str],
                       version_id: UUID, sink: Sink, block_rows: int = BLOCK_ROWS) -> int:
    """Every training identifier's stored vector (identifiers without one are left out: ask
    :func:`without_vector` first), ``sink`` called with blocks of :func:`row_dtype` rows; returns the rows."""
    rows = _Rows(sink, block_rows)
    await conn.copy_from_query(VECTORS, org_id, library_id, type_ids, version_id, output=rows.feed, format="binary",
                               timeout=READ_TIMEOUT)
    await rows.finish()
    return rows.rows


async def entities(conn: asyncpg.Connection, org_id: UUID, library_id: UUID) -> tuple[np.ndarray, list[str]]:
    """The library's entities in ranking order: their IDs ([E] V16) and names."""
    records = await conn.fetch(ENTITIES, org_id, library_id, timeout=READ_TIMEOUT)
    ids = np.frombuffer(b"".join(r[0].bytes for r in records), "V16") if records else np.zeros(0, "V16")
    return ids, [r[1] for r in records]
