"""Time-coded segments of media tasks: written page by page under the task's lease, read in time order.

A worker writes only while it holds the task's lease (``owned``, which locks the task row against a claim
until the write commits), and a new attempt first deletes what earlier attempts wrote: a worker that lost its
lease, or was killed, can never add a row after another worker took the task over. Reads show the rows of
complete tasks and of running tasks' current attempt only, always filtered by organization.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg

from storage.queries.paging import fetch_page, fetch_pages_by_parent
from storage.rows import SegmentRow

OWNED = """-- the task's current attempt while $2 holds its lease; the row stays locked against a claim until commit
SELECT attempts FROM tasks WHERE id = $1 AND lease_owner = $2 AND status = 'running' FOR SHARE"""

CLEAR = "DELETE FROM media_segments WHERE task_id = $1"

INSERT = """INSERT INTO media_segments (task_id, job_id, org_id, seq, attempt, kind, start_s, end_s, label, entity_id,
    entity_name, identifier_id, confidence, best_s, matches, boxes, thumbnail)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"""

_COLUMNS = """s.task_id, s.job_id, s.seq, s.kind, s.start_s, s.end_s, s.label, s.entity_id, s.entity_name,
    s.identifier_id, s.confidence, s.best_s, s.matches, s.boxes, s.thumbnail IS NOT NULL AS has_thumbnail"""

# A complete task's rows, or a running task's of its current attempt (see the module's docstring).
_VISIBLE = "(t.status = 'complete' OR (t.status = 'running' AND s.attempt = t.attempts))"

PAGE = f"""-- one page of an organization's segments in time order, those overlapping [$6, $7) when given
SELECT {_COLUMNS}, count(*) OVER () AS total
FROM media_segments s JOIN tasks t ON t.id = s.task_id
WHERE s.org_id = $1 AND ($2::uuid IS NULL OR s.job_id = $2) AND ($3::uuid IS NULL OR s.task_id = $3)
  AND ($4::text IS NULL OR s.kind = $4) AND ($5::text IS NULL OR s.entity_id = $5)
  AND ($6::float8 IS NULL OR s.end_s > $6) AND ($7::float8 IS NULL OR s.start_s < $7)
  AND {_VISIBLE}
ORDER BY s.start_s, s.task_id, s.seq
OFFSET $8 LIMIT $9"""

PAGES_BY_TASK = f"""-- the same page of segments for many tasks at once (a DataLoader's one query)
SELECT * FROM (
    SELECT {_COLUMNS}, row_number() OVER (PARTITION BY s.task_id ORDER BY s.start_s, s.seq) AS rn,
           count(*) OVER (PARTITION BY s.task_id) AS total
    FROM media_segments s JOIN tasks t ON t.id = s.task_id
    WHERE s.org_id = $1 AND s.task_id = ANY($2::uuid[]) AND ($3::text IS NULL OR s.kind = $3) AND {_VISIBLE}
) ranked WHERE rn > $4 AND rn <= $4 + $5 ORDER BY task_id, rn"""

THUMBNAIL = f"""SELECT s.thumbnail FROM media_segments s JOIN tasks t ON t.id = s.task_id
WHERE s.org_id = $1 AND s.task_id = $2 AND s.seq = $3 AND {_VISIBLE}"""

COUNT_OF_TASK = "SELECT count(*) FROM media_segments WHERE task_id = $1"

RENUMBER_UNKNOWNS = """-- unknown people numbered 1, 2, ... per kind in the order they first appear ($2: the face label prefix,
-- $3: the speaker one); an engine numbers them as it judges them, which is when their track or voice ends
WITH firsts AS (
    SELECT kind, label, min(start_s) AS first_s, min(seq) AS first_seq
    FROM media_segments
    WHERE task_id = $1 AND entity_id IS NULL
      AND ((kind = 'face' AND starts_with(label, $2)) OR (kind = 'speaker' AND starts_with(label, $3)))
    GROUP BY kind, label
), numbered AS (
    SELECT kind, label, CASE kind WHEN 'face' THEN $2 ELSE $3 END
        || row_number() OVER (PARTITION BY kind ORDER BY first_s, first_seq) AS renamed
    FROM firsts
)
UPDATE media_segments s SET label = n.renamed
FROM numbered n
WHERE s.task_id = $1 AND s.kind = n.kind AND s.label = n.label AND s.entity_id IS NULL AND s.label <> n.renamed"""


async def owned(conn: asyncpg.Connection, task_id: UUID, owner: str) -> int | None:
    """The attempt ``owner`` runs, locking the task row until the transaction ends; None: not its lease.
    Must run inside a transaction."""
    return await conn.fetchval(OWNED, task_id, owner)


async def clear(conn: asyncpg.Connection, task_id: UUID) -> None:
    """Delete every segment of the task (call after ``owned``, in its transaction)."""
    await conn.execute(CLEAR, task_id)


async def insert_many(conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Rows in INSERT's column order (call after ``owned``, in its transaction)."""
    if rows:
        await conn.executemany(INSERT, rows)


async def page(
    conn: asyncpg.Connection, org_id: UUID, *, job_id: UUID | None, task_id: UUID | None, kind: str | None,
    entity_id: str | None, start: float | None, stop: float | None, offset: int, limit: int,
) -> tuple[list[SegmentRow], int]:
    args = (org_id, job_id, task_id, kind, entity_id, start, stop)
    records, total = await fetch_page(conn, PAGE, args, offset, limit)
    return [SegmentRow.of(r) for r in records], total


async def pages_by_task(
    conn: asyncpg.Connection, org_id: UUID, task_ids: Sequence[UUID], kind: str | None, offset: int, limit: int,
) -> tuple[dict[UUID, list[SegmentRow]], dict[UUID, int]]:
    return await fetch_pages_by_parent(conn, PAGES_BY_TASK, org_id, task_ids, (kind,), offset, limit,
                                       parent="task_id", row=SegmentRow.of)


async def thumbnail(conn: asyncpg.Connection, org_id: UUID, task_id: UUID, seq: int) -> bytes | None:
    return await conn.fetchval(THUMBNAIL, org_id, task_id, seq)


async def count_of_task(conn: asyncpg.Connection, task_id: UUID) -> int:
    """Every row of the task, whichever attempt wrote it (tests and diagnostics)."""
    return await conn.fetchval(COUNT_OF_TASK, task_id)


async def renumber_unknowns(conn: asyncpg.Connection, task_id: UUID, face_prefix: str, speaker_prefix: str) -> None:
    """Number the task's unknown people in order of first appearance (call after ``owned``, in its transaction)."""
    await conn.execute(RENUMBER_UNKNOWNS, task_id, face_prefix, speaker_prefix)
