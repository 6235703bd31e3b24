"""storage.migrate on fresh databases of the test PostgreSQL: once each, in order, history never rewritten."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

import asyncpg
import pytest

from storage.migrate import MIGRATIONS_DIR, MigrationError, load_migrations, migrate

ALL_NAMES = [m.name for m in load_migrations()]


@pytest.fixture
def fresh_dsn(stack) -> str:
    return stack.pg.create_database(f"migrate_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, target)
    return target


async def history(dsn: str) -> list[tuple[int, str]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [(r["version"], r["name"]) for r in await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")]
    finally:
        await conn.close()


async def migrate_once(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn, directory)
    finally:
        await conn.close()


async def table_exists(dsn: str, table: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
    finally:
        await conn.close()


def test_the_migration_files_are_numbered_without_gaps():
    versions = [m.version for m in load_migrations()]
    assert versions == list(range(1, len(versions) + 1))
    assert len(versions) >= 3


async def test_a_fresh_database_gets_every_migration_in_order_and_a_second_run_applies_nothing(fresh_dsn):
    assert await migrate_once(fresh_dsn) == ALL_NAMES
    assert await migrate_once(fresh_dsn) == []
    assert [name for _, name in await history(fresh_dsn)] == ALL_NAMES
    for table in ("organizations", "api_tokens", "libraries", "entities", "entity_identifiers", "blob_deletions"):
        assert await table_exists(fresh_dsn, table), table


async def test_a_new_file_is_applied_alone_after_the_rest(fresh_dsn, migrations_copy):
    await migrate_once(fresh_dsn, migrations_copy)
    number = len(ALL_NAMES) + 1
    (migrations_copy / f"{number:04d}_add_a_table.sql").write_text("CREATE TABLE migration_probe (id int);\n")
    assert await migrate_once(fresh_dsn, migrations_copy) == [f"{number:04d}_add_a_table.sql"]
    assert await table_exists(fresh_dsn, "migration_probe")
    assert await migrate_once(fresh_dsn, migrations_copy) == []


async def test_an_applied_migration_that_was_edited_is_refused_and_nothing_after_it_runs(fresh_dsn, migrations_copy):
    await migrate_once(fresh_dsn, migrations_copy)
    edited = migrations_copy / ALL_NAMES[1]
    edited.write_text(edited.read_text() + "\n-- a harmless-looking edit\n")
    number = len(ALL_NAMES) + 1
    (migrations_copy / f"{number:04d}_after_the_edit.sql").write_text("CREATE TABLE after_the_edit (id int);\n")
    with pytest.raises(MigrationError, match=ALL_NAMES[1]):
        await migrate_once(fresh_dsn, migrations_copy)
    assert not await table_exists(fresh_dsn, "after_the_edit")
    assert [name for _, name in await history(fresh_dsn)] == ALL_NAMES


async def test_a_failing_migration_leaves_no_trace_and_releases_the_lock(fresh_dsn, migrations_copy):
    await migrate_once(fresh_dsn, migrations_copy)
    number = len(ALL_NAMES) + 1
    broken = migrations_copy / f"{number:04d}_broken.sql"
    broken.write_text("CREATE TABLE half_done (id int);\nSELECT * FROM no_such_table;\n")
    with pytest.raises(asyncpg.UndefinedTableError):
        await migrate_once(fresh_dsn, migrations_copy)
    assert not await table_exists(fresh_dsn, "half_done")
    assert len(await history(fresh_dsn)) == len(ALL_NAMES)
    # Another connection can take the lock (a leaked lock would block here; the guard only stops a hang).
    broken.write_text("CREATE TABLE half_done (id int);\n")
    applied = await asyncio.wait_for(migrate_once(fresh_dsn, migrations_copy), timeout=60)
    assert applied == [broken.name]


def test_a_badly_named_migration_file_is_refused(migrations_copy):
    (migrations_copy / "5_no_padding.sql").write_text("SELECT 1;\n")
    with pytest.raises(MigrationError, match="5_no_padding.sql"):
        load_migrations(migrations_copy)


def test_two_files_with_one_number_are_refused(migrations_copy):
    (migrations_copy / "0001_a_twin.sql").write_text("SELECT 1;\n")
    with pytest.raises(MigrationError):
        load_migrations(migrations_copy)


async def test_concurrent_migrations_on_a_fresh_database_both_succeed_and_apply_each_file_once(fresh_dsn):
    results = await asyncio.gather(*(migrate_once(fresh_dsn) for _ in range(4)))
    applied = [name for result in results for name in result]
    assert sorted(applied) == sorted(ALL_NAMES)  # each file once, across all callers
    assert any(result == ALL_NAMES for result in results)
    assert [name for _, name in await history(fresh_dsn)] == ALL_NAMES
