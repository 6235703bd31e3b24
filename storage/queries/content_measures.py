"""Per-content image measures the quality gates read (width, height, sharpness), per organization."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from uuid import UUID

import asyncpg

GET_MANY = """SELECT content_sha256, width, height, sharpness FROM content_measures
WHERE org_id = $1 AND content_sha256 = ANY($2::text[])"""

PUT_MANY = """-- a sharpness measured now fills one measured before without it; the size of given bytes never changes
INSERT INTO content_measures (org_id, content_sha256, width, height, sharpness)
SELECT $1, m.sha, m.width, m.height, m.sharpness
FROM unnest($2::text[], $3::int[], $4::int[], $5::float8[]) AS m(sha, width, height, sharpness)
ON CONFLICT (org_id, content_sha256) DO UPDATE SET sharpness = coalesce(EXCLUDED.sharpness, content_measures.sharpness)
WHERE content_measures.sharpness IS NULL AND EXCLUDED.sharpness IS NOT NULL"""


async def get_many(
    conn: asyncpg.Connection, org_id: UUID, hashes: Sequence[str]
) -> dict[str, tuple[int, int, float | None]]:
    """(width, height, sharpness or None) by content sha256, for those measured."""
    return {r["content_sha256"]: (r["width"], r["height"], r["sharpness"])
            for r in await conn.fetch(GET_MANY, org_id, list(hashes))}


async def put_many(conn: asyncpg.Connection, org_id: UUID, measures: Mapping[str, tuple[int, int, float | None]]) -> None:
    if not measures:
        return
    shas = sorted(measures)  # one order for every writer: concurrent upserts never deadlock on each other
    await conn.execute(PUT_MANY, org_id, shas, [measures[h][0] for h in shas], [measures[h][1] for h in shas],
                       [measures[h][2] for h in shas])
