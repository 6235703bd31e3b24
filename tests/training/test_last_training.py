"""A library's last training (its issues and usable counts come from it): a publish creates one model per
engine at the same moment, and the one that counts is the library's default engine's, never a random pick;
a training the user cancelled is not a library error."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from gateway.resources import open_resources
from gateway.services.training import defaults as training_defaults
from gateway.settings import Settings
from storage.queries import engine_models as model_q
from storage.queries import trainings as q
from tests.conftest import Org, Stack
from tests.engines.registered import drop_system_default

FACE, GALLERY = "engineshed-face", "engineshed-gallery"


def _with_engines(stack: Stack, fn: Any) -> Any:
    async def go() -> Any:
        async with open_resources(Settings.from_env(stack.env), role="worker", run_migrations=False) as res:
            return await fn(res)

    return asyncio.run(go())


async def _publish_pair(conn: Any, org: Org, library_id: uuid.UUID) -> tuple[Any, Any]:
    """What one publish leaves: a failed face model and a complete gallery model, created in one statement time."""
    face = await model_q.insert(conn, id=uuid.uuid4(), org_id=org.id, library_id=library_id, engine_id=FACE,
                                library_version=1, train_status="failed", jsondata={"error": "no face models"})
    gallery = await model_q.insert(conn, id=uuid.uuid4(), org_id=org.id, library_id=library_id, engine_id=GALLERY,
                                   library_version=1, train_status="complete")
    await conn.execute("UPDATE library_engine_models SET created_at = (SELECT created_at FROM library_engine_models"
                       " WHERE id = $1) WHERE id = $2", face.id, gallery.id)
    return face, gallery


def test_the_default_engines_model_is_the_last_training(stack: Stack, org: Org) -> None:
    for name in ("face-detector", "face-embedding"):
        drop_system_default(stack, name)  # offline: the gallery is the people library's default engine
    libraries = [uuid.UUID(org.create_library(f"last-{i}", "people")) for i in range(6)]

    async def go(res: Any) -> tuple[dict[uuid.UUID, str], list[str], list[str]]:
        async with res.pool.acquire() as conn:
            for lid in libraries:
                await _publish_pair(conn, org, lid)
            defaults = await training_defaults.default_engine_ids(res, org.id, libraries)
            preferred = await q.last_trainings(conn, org.id, libraries, defaults)
            unranked = await q.last_trainings(conn, org.id, libraries)
        return defaults, [preferred[lid].engine_id for lid in libraries], [unranked[lid].engine_id for lid in libraries]

    defaults, preferred, unranked = _with_engines(stack, go)
    assert set(defaults.values()) == {GALLERY} and set(defaults) == set(libraries)
    assert preferred == [GALLERY] * len(libraries)
    assert len(set(unranked)) == 1  # without a default engine known: the same rule for every library


ISSUES = 'query($id: ID!) { library(id: $id) { issues { hasError reasons { kind message } } } }'


def test_a_cancelled_training_is_not_a_library_error(stack: Stack, org: Org) -> None:
    import httpx

    from tests.reliability.conftest import png

    library_id = org.create_library("cancelled", "objects")
    for name, first in (("a", 1), ("b", 3)):
        entity = org.create_entity(library_id, name)
        for index in (first, first + 1):
            org.add_identifier(entity, png(index), type_id="image")
    with httpx.Client(base_url=org.gateway.url, headers={"Authorization": f"Bearer {org.token}"}, timeout=30) as http:
        created = http.post("/v1/trainings", json={"source_dataset_id": library_id})
        assert created.status_code == 201, created.text
        removed = http.delete(f"/v1/trainings/{created.json()['id']}")
        assert removed.status_code < 300, removed.text
    status = stack.db.fetchval("SELECT train_status FROM library_engine_models WHERE library_id = $1", uuid.UUID(library_id))
    assert status == "failed"  # the model says what happened to it
    issues = org.client.query(ISSUES, id=library_id).ok()["library"]["issues"]
    assert not issues["hasError"], issues
    assert "training-failed" not in [r["kind"] for r in issues["reasons"]]
