"""Cached backbone outputs per (organization, backbone digest, content hash)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from uuid import UUID

import asyncpg

GET_MANY = """SELECT content_sha256, vector FROM embeddings
WHERE org_id = $1 AND backbone_digest = $2 AND content_sha256 = ANY($3::text[])"""

PUT = """INSERT INTO embeddings (org_id, backbone_digest, content_sha256, vector) VALUES ($1, $2, $3, $4)
ON CONFLICT (org_id, backbone_digest, content_sha256) DO NOTHING"""


async def get_many(conn: asyncpg.Connection, org_id: UUID, digest: str, hashes: Sequence[str]) -> dict[str, bytes]:
    return {r["content_sha256"]: r["vector"] for r in await conn.fetch(GET_MANY, org_id, digest, list(hashes))}


async def put_many(conn: asyncpg.Connection, org_id: UUID, digest: str, vectors: Mapping[str, bytes]) -> None:
    await conn.executemany(PUT, [(org_id, digest, h, v) for h, v in vectors.items()])
