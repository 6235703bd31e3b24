"""A migration that needs a PostgreSQL extension the server does not have fails start-up with a message naming
it and saying how to install it, before any of the migration runs (the test server has pgvector, so the path is
exercised with an extension name no server has)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import asyncpg
import pytest

from storage.migrate import INSTALL_HINTS, MIGRATIONS_DIR, MigrationError, load_migrations, migrate


async def _migrate(dsn: str, directory: Path) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn, directory)
    finally:
        await conn.close()


async def _fetchval(dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def test_the_embeddings_migration_declares_pgvector_and_the_hint_says_how_to_install_it() -> None:
    (embeddings,) = [m for m in load_migrations() if m.name.startswith("0009_")]
    assert embeddings.required_extensions == ["vector"]
    assert "pgvector" in INSTALL_HINTS["vector"] and "install" in INSTALL_HINTS["vector"]


async def test_a_missing_extension_is_named_and_nothing_of_its_migration_runs(stack, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    number = len(load_migrations()) + 1
    (directory / f"{number:04d}_needs_missing.sql").write_text(
        "-- requires-extension: engineshed_missing_ext\n"
        "CREATE TABLE should_not_exist (id int);\n"
        "CREATE EXTENSION engineshed_missing_ext;\n"
    )
    dsn = stack.pg.create_database(f"ext_{uuid.uuid4().hex[:12]}")
    with pytest.raises(MigrationError) as caught:
        await _migrate(dsn, directory)
    message = str(caught.value)
    assert "engineshed_missing_ext" in message and "install" in message and f"{number:04d}_needs_missing.sql" in message
    assert await _fetchval(dsn, "SELECT to_regclass('should_not_exist') IS NULL")
    # Everything before it was applied, pgvector's migration included.
    assert await _fetchval(dsn, "SELECT to_regclass('identifier_embeddings') IS NOT NULL")
    assert await _fetchval(dsn, "SELECT max(version) FROM schema_migrations") == number - 1
