"""Promotion that cannot lose people: a candidate replaces the default only if it knows every entity the default
knows (that the library still holds) and uses as many identifiers, and scores at least as well on the entities both
evaluated. The first test trains real gallery models over HTTP; the others complete models recorded by hand."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.services.access.principal import Principal
from gateway.services.training import engine_models
from sampledata.digits import Digits, png
from storage.queries import engine_models as model_q
from tests.conftest import Gateway, Org, Process, Stack, make_org
from tests.engines import api_helpers as api
from tests.engines.registered import with_resources
from tests.support.waits import wait_model

GALLERY = api.GALLERY
FIELDS = "id trainStatus accuracy isDefault promotion trainingReport { entitiesUsed identifiersUsed entitiesWithoutIdentifiersCount }"


@pytest.fixture(scope="module")
def coverage_org(stack: Stack, gateway: Gateway) -> Iterator[Org]:
    org = make_org(stack, gateway, "coverage")
    yield org
    org.close()


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = api.start_worker_process(stack, tmp_path_factory.mktemp("coverage"), "coverage-worker")
    yield process
    process.stop()


def _train(org: Org, library_id: str, worker: Process, config: dict[str, Any]) -> dict[str, Any]:
    model_id, _ = api.train(org, GALLERY, library_id, config)
    wait_model(org, model_id, worker=worker, timeout=180)
    return org.client.query(f"query($id: ID!) {{ libraryEngineModel(id: $id) {{ {FIELDS} }} }}", id=model_id).ok()[
        "libraryEngineModel"]


def test_a_model_that_knows_6_of_10_digits_does_not_replace_one_that_knows_all_10(
    coverage_org: Org, worker: Process, digit_library: Digits,
) -> None:
    org = coverage_org
    library_id = api.create_library(org, "ten digits")
    # Digits 0-3 are 24 px images, the others 48 px: a minSize of 32 leaves 0-3 with nothing to train on.
    items = []
    for digit in range(10):
        entity = org.create_entity(library_id, f"digit-{digit}")
        side = 24 if digit < 4 else 48
        pixels = [e for e in digit_library.train if e.entity_id == f"digit-{digit}"][:5]
        items += [(entity, _resized(e.data, side)) for e in pixels]
    api.add_identifiers(org, items)

    everyone = _train(org, library_id, worker, {"minSize": 16})
    assert everyone["trainStatus"] == "complete" and everyone["isDefault"]
    assert everyone["trainingReport"]["entitiesUsed"] == 10

    fewer = _train(org, library_id, worker, {"minSize": 32})
    assert fewer["trainStatus"] == "complete"
    assert fewer["trainingReport"]["entitiesUsed"] == 6 and fewer["trainingReport"]["entitiesWithoutIdentifiersCount"] == 4
    # It scores at least as well (fewer classes to confuse), which alone promoted it before.
    assert fewer["accuracy"] >= everyone["accuracy"]
    assert fewer["isDefault"] is False
    promotion = fewer["promotion"]
    assert promotion["promoted"] is False and promotion["lostEntities"] == 4
    assert promotion["coverage"] == {"candidate": {"entities": 6, "identifiers": 30},
                                     "default": {"entities": 10, "identifiers": 50}}
    reason = promotion["reason"]
    assert "candidate knows 6 entities and 30 identifiers, the default 10 entities and 50 identifiers" in reason
    assert "would lose 4 entities" in reason and "both evaluated" in reason and "setDefaultModel" in reason
    assert _is_default(org, everyone["id"])

    # The same coverage again, scoring the same: it replaces the default.
    again = _train(org, library_id, worker, {"minSize": 16})
    assert again["isDefault"] is True, again["promotion"]
    assert "covers the default and scores at least as well" in again["promotion"]["reason"]


def _resized(data: bytes, side: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    grey = np.asarray(Image.open(io.BytesIO(data)).convert("L").resize((8, 8), Image.Resampling.BILINEAR), np.float64)
    return png(grey * (16.0 / 255.0), side)


def _is_default(org: Org, model_id: str) -> bool:
    return org.client.query("query($id: ID!) { libraryEngineModel(id: $id) { isDefault } }", id=model_id).ok()[
        "libraryEngineModel"]["isDefault"]


# -- models completed by hand: the rule on recorded coverage and per-entity tallies ---------------------------------


def _jsondata(entities: list[uuid.UUID], identifiers: int, tallies: dict[uuid.UUID, tuple[int, int]]) -> dict[str, Any]:
    return {"entityIds": [str(e) for e in entities], "identifiers": identifiers,
            "evaluation": {"perEntity": {str(e): {"correct": c, "count": n} for e, (c, n) in tallies.items()}}}


def _complete(stack: Stack, org: Org, default: dict[str, Any], candidate: dict[str, Any], *,
              keep: int | None = None, identifiers: int = 0) -> dict[str, Any]:
    """Record ``default`` (the default model) and complete ``candidate``; ``keep``: entities left in the library;
    ``identifiers``: images uploaded per entity."""
    library_id = uuid.UUID(org.create_library("promote-coverage", "objects"))
    names = [org.create_entity(str(library_id), f"p{i:02d}") for i in range(10)]
    api.add_identifiers(org, [(n, api.png(40, 1000 * e + k)) for e, n in enumerate(names) for k in range(identifiers)])
    principal = Principal(org_id=org.id, scope="admin")

    async def go(res: Any) -> dict[str, Any]:
        async with res.pool.acquire() as conn:
            if keep is not None:
                await conn.execute("DELETE FROM entities WHERE id = ANY($1::uuid[])", [uuid.UUID(n) for n in names[keep:]])
            old = await model_q.insert(conn, id=uuid.uuid4(), org_id=org.id, library_id=library_id, engine_id=GALLERY,
                                       library_version=0, train_status="complete", accuracy=default["accuracy"],
                                       jsondata=default["jsondata"](names))
            await conn.execute("UPDATE library_engine_models SET is_default = true WHERE id = $1", old.id)
            new = await model_q.insert(conn, id=uuid.uuid4(), org_id=org.id, library_id=library_id, engine_id=GALLERY,
                                       library_version=0, train_status="running", accuracy=candidate["accuracy"],
                                       jsondata=candidate["jsondata"](names))
        row = await engine_models.update(res, principal, new.id, {"train_status": "complete"})
        return {"is_default": row.is_default, "promotion": row.promotion}

    return with_resources(stack, go)


def _model(count: int, per: int, accuracy: float, correct: int | None = None) -> dict[str, Any]:
    def jsondata(names: list[str]) -> dict[str, Any]:
        ids = [uuid.UUID(n) for n in names[:count]]
        return _jsondata(ids, count * per, {e: (per if correct is None else correct, per) for e in ids})
    return {"accuracy": accuracy, "jsondata": jsondata}


def test_a_candidate_that_loses_people_is_not_promoted_though_it_scores_as_well(stack: Stack, org: Org) -> None:
    done = _complete(stack, org, default=_model(10, 3, 1.0), candidate=_model(6, 3, 1.0))
    assert done["is_default"] is False
    record = done["promotion"]
    assert record["promoted"] is False and record["lostEntities"] == 4 and len(record["lostEntityIds"]) == 4
    assert record["commonEvaluation"] == {"entities": 6, "candidate": 1.0, "default": 1.0}
    assert "candidate knows 6 entities and 18 identifiers, the default 10 entities and 30 identifiers" in record["reason"]
    assert "loses coverage" in record["reason"]


def test_entities_deleted_from_the_library_are_not_counted_as_lost(stack: Stack, org: Org) -> None:
    done = _complete(stack, org, default=_model(10, 3, 1.0), candidate=_model(6, 3, 1.0), keep=6)
    assert done["is_default"] is True, done["promotion"]
    assert done["promotion"]["lostEntities"] == 0


def test_a_candidate_that_covers_everyone_but_scores_worse_on_the_shared_entities_is_not_promoted(stack: Stack, org: Org) -> None:
    done = _complete(stack, org, default=_model(10, 4, 1.0), candidate=_model(10, 4, 0.75, correct=3))
    assert done["is_default"] is False
    record = done["promotion"]
    assert record["commonEvaluation"] == {"entities": 10, "candidate": 0.75, "default": 1.0}
    assert "scores worse" in record["reason"] and "the candidate scores 0.750, the default 1.000" in record["reason"]


def test_a_candidate_that_uses_fewer_identifiers_than_the_default_is_not_promoted(stack: Stack, org: Org) -> None:
    done = _complete(stack, org, default=_model(10, 4, 1.0), candidate=_model(10, 3, 1.0), identifiers=4)
    assert done["is_default"] is False
    assert done["promotion"]["missingIdentifiers"] == 10 and "10 identifier(s) fewer" in done["promotion"]["reason"]


def test_identifiers_deleted_since_the_default_was_trained_do_not_hold_a_candidate_back(stack: Stack, org: Org) -> None:
    # The library holds 3 identifiers per entity now; the default used 4 per entity before some were deleted.
    done = _complete(stack, org, default=_model(10, 4, 1.0), candidate=_model(10, 3, 1.0), identifiers=3)
    assert done["is_default"] is True, done["promotion"]
    assert done["promotion"]["missingIdentifiers"] == 0
