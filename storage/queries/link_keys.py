"""The secrets that sign download links served through the gateway (migration 0018)."""

from __future__ import annotations

import asyncpg

ALL_KEYS = "SELECT id, secret FROM link_signing_keys ORDER BY id DESC"

# One transaction-scoped lock around "create the first key unless there is one": two gateways starting on an
# empty table would otherwise each insert a key and sign with different ones until they reloaded.
FIRST_KEY_LOCK = "SELECT pg_advisory_xact_lock(hashtext('engineshed-link-signing-keys'))"

INSERT_FIRST = """INSERT INTO link_signing_keys (secret)
SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM link_signing_keys)"""


async def all_keys(conn: asyncpg.Connection) -> list[tuple[int, bytes]]:
    """Every key, newest first."""
    return [(row["id"], bytes(row["secret"])) for row in await conn.fetch(ALL_KEYS)]


async def ensure_first(conn: asyncpg.Connection, secret: bytes) -> None:
    """Store ``secret`` as the first key when there is none (call inside a transaction)."""
    await conn.execute(FIRST_KEY_LOCK)
    await conn.execute(INSERT_FIRST, secret)
