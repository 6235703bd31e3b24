"""A training that completes while the current default model is deleted, made the default again, or has an
alias moved onto the completing model: the real service functions on real connections, forced into the
interleaving that used to deadlock (each waits behind a third transaction that holds the (library, engine)
default lock, then both are let go in order). No deadlock, and exactly one default afterwards."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from gateway.services.access.principal import Principal
from gateway.services.training import engine_models, promotion
from gateway.services.training import versions as model_versions
from storage.queries import engine_models as model_q
from storage.queries import trainings as training_q
from tests.conftest import Org, Stack
from tests.engines.registered import with_resources

GALLERY = "engineshed-gallery"
WAITING = "SELECT count(*) FROM pg_locks WHERE NOT granted"


async def _until_waiting(res: Any, n: int) -> None:
    """Poll (bounded) until ``n`` lock requests wait: the transactions are where the test wants them."""
    async with res.pool.acquire() as conn:
        for _ in range(600):
            if await conn.fetchval(WAITING) >= n:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"{n} lock waits never appeared")


def _race(stack: Stack, org: Org, other: str) -> tuple[list[Any], list[Any], uuid.UUID, uuid.UUID]:
    library_id = uuid.UUID(org.create_library(f"locks-{other}", "objects"))
    principal = Principal(org_id=org.id, scope="admin")

    async def go(res: Any) -> tuple[list[Any], list[Any], uuid.UUID, uuid.UUID]:
        async with res.pool.acquire() as conn:
            old = await model_q.insert(conn, id=uuid.uuid4(), org_id=org.id, library_id=library_id, engine_id=GALLERY,
                                       library_version=1, train_status="complete", accuracy=0.5)
            await conn.execute("UPDATE library_engine_models SET is_default = true, aliases = '{stable}' WHERE id = $1", old.id)
            new = await model_q.insert(conn, id=uuid.uuid4(), org_id=org.id, library_id=library_id, engine_id=GALLERY,
                                       library_version=1, train_status="running", accuracy=0.9)
        blocker = await res.pool.acquire()
        hold = blocker.transaction()
        await hold.start()
        await training_q.lock_default(blocker, library_id, GALLERY)
        finishing = asyncio.ensure_future(engine_models.update(res, principal, new.id, {"train_status": "complete"}))
        await _until_waiting(res, 1)
        if other == "delete":
            second = engine_models.delete(res, principal, old.id)
        elif other == "set_default":
            second = promotion.set_default(res, principal, old.id)
        else:  # the old default's alias moves onto the completing model
            second = model_versions.update_version(res, principal, new.id, {"aliases": ["stable"]})
        racing = asyncio.ensure_future(second)
        await _until_waiting(res, 2)
        await hold.rollback()
        await res.pool.release(blocker)
        results = await asyncio.gather(finishing, racing, return_exceptions=True)
        async with res.pool.acquire() as conn:
            rows = await conn.fetch("SELECT id, is_default, aliases, train_status FROM library_engine_models"
                                    " WHERE library_id = $1 ORDER BY created_at", library_id)
        return results, [dict(r) for r in rows], old.id, new.id

    return with_resources(stack, go)


@pytest.mark.parametrize("other", ["delete", "set_default", "alias"])
def test_completion_races_a_change_to_the_default(stack: Stack, org: Org, other: str) -> None:
    results, rows, old, new = _race(stack, org, other)
    assert [type(r).__name__ for r in results if isinstance(r, BaseException)] == []
    by_id = {r["id"]: r for r in rows}
    assert by_id[new]["train_status"] == "complete"
    assert sum(1 for r in rows if r["is_default"]) == 1
    if other == "delete":
        assert old not in by_id and by_id[new]["is_default"]
    elif other == "set_default":
        # the completion promoted the new model first, then the rollback took effect
        assert by_id[old]["is_default"] and not by_id[new]["is_default"]
    else:
        assert by_id[new]["is_default"] and by_id[new]["aliases"] == ["stable"] and by_id[old]["aliases"] == []
