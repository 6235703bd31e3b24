"""Applies ``storage/migrations/NNNN_name.sql`` in order, once each, under an advisory lock.

Every gateway and worker process runs this at start-up; the lock makes concurrent starts safe. A file
that was applied and then edited is refused: migrations are history, a change is a new file.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x656E6773  # "engs": one advisory lock id for the whole schema
# A migration's first lines may say `-- requires-extension: NAME`: checked before it runs (see _check_extensions).
_REQUIRES = re.compile(r"^--\s*requires-extension:\s*([a-z0-9_]+)\s*$", re.MULTILINE)
INSTALL_HINTS = {
    "vector": (
        "install pgvector on the PostgreSQL server (https://github.com/pgvector/pgvector#installation: e.g. the "
        "postgresql-NN-pgvector package, or `make install` from its source), or use a managed PostgreSQL that "
        "offers it; the embedded development database ships it"
    ),
}


class MigrationError(RuntimeError):
    """The database's migration history does not match the files, or the server lacks what a migration needs."""


async def _check_extensions(conn: asyncpg.Connection, migration: Migration) -> None:
    """Fail with what to install when the server cannot provide an extension the migration needs.

    CREATE EXTENSION on a server without the extension's files fails with a path to a .control file; an
    operator upgrading engineshed should instead read which extension is missing and how to get it.
    """
    for name in migration.required_extensions:
        available = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = $1)", name)
        if not available:
            hint = INSTALL_HINTS.get(name, f"install the {name} extension on the PostgreSQL server")
            raise MigrationError(
                f"migration {migration.name} needs the PostgreSQL extension {name!r}, which this server does not "
                f"have: {hint}; then start engineshed again"
            )


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def required_extensions(self) -> list[str]:
        return _REQUIRES.findall(self.sql)

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"migration file name {path.name!r} is not NNNN_name.sql")
        found.append(Migration(int(match.group(1)), path.name, path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a number")
    return found


async def migrate(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; returns the names applied now."""
    migrations = load_migrations(directory)
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        done = {r["version"]: r for r in rows}
        for m in migrations:
            row = done.get(m.version)
            if row is not None:
                if row["checksum"] != m.checksum:
                    raise MigrationError(
                        f"migration {m.name} was applied and has been edited since; add a new migration instead"
                    )
                continue
            await _check_extensions(conn, m)
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            log.info("applied migration %s", m.name)
            applied_now.append(m.name)
        unknown = set(done) - {m.version for m in migrations}
        if unknown:
            # A newer release migrated first (a rolling upgrade): keep running, but say so.
            log.warning("the database has migrations this code does not know: %s", sorted(unknown))
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now
