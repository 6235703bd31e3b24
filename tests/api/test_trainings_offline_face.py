"""A people library on an install that pulled no face models (offline): the face engine, default for ``face``,
cannot run, so REST trainings and publishLibrary use the gallery and start nothing that can only fail, and
recognize(libraryId) without engineId answers with the default model that exists."""

from __future__ import annotations

import uuid

import httpx
import pytest

from gateway.errors import InvalidInput
from gateway.resources import open_resources
from gateway.services.access.principal import Principal
from gateway.services.training import defaults
from gateway.settings import Settings
from storage.queries import engine_models as model_q
from tests.conftest import Org, Stack
from tests.engines.registered import drop_system_default
from tests.reliability.conftest import png

FACE, GALLERY = "engineshed-face", "engineshed-gallery"


@pytest.fixture(autouse=True)
def offline(stack: Stack) -> None:
    for name in ("face-detector", "face-embedding"):
        drop_system_default(stack, name)


def _people(org: Org, name: str) -> str:
    library_id = org.create_library(name, "people")
    org.add_identifier(org.create_entity(library_id, "ada"), png(3), type_id="face")
    return library_id


def _engines(stack: Stack, library_id: str) -> list[str]:
    return [r["engine_id"] for r in stack.db.fetch(
        "SELECT engine_id FROM library_engine_models WHERE library_id = $1 ORDER BY engine_id", uuid.UUID(library_id))]


def test_a_rest_training_of_a_people_library_offline_uses_the_gallery(stack: Stack, org: Org) -> None:
    library_id = _people(org, "offline-rest")
    with httpx.Client(base_url=org.gateway.url, headers={"Authorization": f"Bearer {org.token}"}, timeout=30) as http:
        created = http.post("/v1/trainings", json={"source_dataset_id": library_id})
    assert created.status_code == 201, created.text
    assert _engines(stack, library_id) == [GALLERY]
    task_engines = stack.db.fetch("SELECT engine_id FROM tasks WHERE job_id = $1", uuid.UUID(created.json()["id"]))
    assert [r["engine_id"] for r in task_engines] == [GALLERY]


def test_publish_offline_starts_no_face_job(stack: Stack, org: Org) -> None:
    library_id = _people(org, "offline-publish")
    org.client.query("mutation($l: ID!) { publishLibrary(id: $l) { id } }", l=library_id).ok()
    engines = _engines(stack, library_id)
    assert GALLERY in engines and FACE not in engines
    tasks = stack.db.fetch("SELECT t.engine_id FROM tasks t JOIN jobs j ON j.id = t.job_id WHERE j.library_id = $1",
                           uuid.UUID(library_id))
    assert FACE not in [r["engine_id"] for r in tasks] and tasks


def _with_engines(stack: Stack, fn):  # type: ignore[no-untyped-def]
    """``fn(res)`` with the engines loaded, as the gateway has them (the default engine depends on them)."""
    import asyncio

    async def go():  # type: ignore[no-untyped-def]
        settings = Settings.from_env(stack.env)
        async with open_resources(settings, role="worker", run_migrations=False) as res:
            return await fn(res)

    return asyncio.run(go())


def test_recognize_by_library_falls_back_to_the_default_model_that_exists(stack: Stack, org: Org) -> None:
    library_id = uuid.UUID(_people(org, "offline-recognize"))
    principal = Principal(org_id=org.id, scope="admin")

    async def go(res):  # type: ignore[no-untyped-def]
        async with res.pool.acquire() as conn:
            none_yet = None
            try:
                await defaults.default_model_of(res, principal, library_id, None)
            except InvalidInput as exc:
                none_yet = exc.message
            # a default model of an engine that is not the library's default engine (the gallery, offline): the
            # face engine's, trained while its models were pulled
            face = await model_q.insert(conn, id=uuid.uuid4(), org_id=org.id, library_id=library_id, engine_id=FACE,
                                        library_version=1, train_status="complete")
            await conn.execute("UPDATE library_engine_models SET is_default = true WHERE id = $1", face.id)
            fallback = await defaults.default_model_of(res, principal, library_id, None)
            # the gallery's default, older than a newer default of a third engine: the default engine's comes first
            gallery = await model_q.insert(conn, id=uuid.uuid4(), org_id=org.id, library_id=library_id, engine_id=GALLERY,
                                           library_version=1, train_status="complete")
            await conn.execute("UPDATE library_engine_models SET is_default = true WHERE id = $1", gallery.id)
            other = await model_q.insert(conn, id=uuid.uuid4(), org_id=org.id, library_id=library_id,
                                         engine_id="engineshed-classifier", library_version=1, train_status="complete")
            await conn.execute("UPDATE library_engine_models SET is_default = true WHERE id = $1", other.id)
            chosen = await defaults.default_model_of(res, principal, library_id, None)
            named = await defaults.default_model_of(res, principal, library_id, FACE)
        return none_yet, fallback.id, face.id, chosen.id, gallery.id, named.id

    none_yet, fallback, face, chosen, gallery, named = _with_engines(stack, go)
    assert none_yet is not None and "train it first" in none_yet
    assert fallback == face  # no gallery default yet: the newest default of any engine
    assert chosen == gallery  # the default engine's (offline: the gallery's) default model comes first
    assert named == face
