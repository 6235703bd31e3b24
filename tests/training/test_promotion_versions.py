"""Promotion across library versions: a model trained on a newer library version replaces the default even
when it scores lower (on a different test set); within one version accuracy still decides; an older
version's model does not replace a newer one. Both accuracies and the reason are recorded."""

from __future__ import annotations

import uuid
from typing import Any

from gateway.services.access.principal import Principal
from gateway.services.training import engine_models
from storage.queries import engine_models as model_q
from tests.conftest import Org, Stack
from tests.engines.registered import with_resources

GALLERY = "engineshed-gallery"


def _complete_after(stack: Stack, org: Org, default: tuple[int, float], new: tuple[int, float]) -> tuple[dict, dict]:
    library_id = uuid.UUID(org.create_library("promote", "objects"))
    principal = Principal(org_id=org.id, scope="admin")

    async def go(res: Any) -> tuple[dict, dict]:
        async with res.pool.acquire() as conn:
            old = await model_q.insert(conn, id=uuid.uuid4(), org_id=org.id, library_id=library_id, engine_id=GALLERY,
                                       library_version=default[0], train_status="complete", accuracy=default[1])
            await conn.execute("UPDATE library_engine_models SET is_default = true WHERE id = $1", old.id)
            model = await model_q.insert(conn, id=uuid.uuid4(), org_id=org.id, library_id=library_id, engine_id=GALLERY,
                                         library_version=new[0], train_status="running", accuracy=new[1])
        row = await engine_models.update(res, principal, model.id, {"train_status": "complete"})
        async with res.pool.acquire() as conn:
            old_now = await model_q.by_id(conn, org.id, old.id)
        return {"is_default": row.is_default, "promotion": row.promotion}, {"is_default": old_now.is_default}

    return with_resources(stack, go)


def test_a_model_of_a_newer_library_version_is_promoted_though_it_scores_lower(stack: Stack, org: Org) -> None:
    new, old = _complete_after(stack, org, default=(1, 0.95), new=(2, 0.80))
    assert new["is_default"] and not old["is_default"]
    record = new["promotion"]
    assert record["promoted"] and record["accuracy"] == 0.80 and record["previousAccuracy"] == 0.95
    assert "newer library version" in record["reason"]


def test_within_one_version_a_lower_score_is_not_promoted(stack: Stack, org: Org) -> None:
    new, old = _complete_after(stack, org, default=(2, 0.95), new=(2, 0.80))
    assert not new["is_default"] and old["is_default"]
    assert not new["promotion"]["promoted"] and "scores worse" in new["promotion"]["reason"]


def test_a_model_of_an_older_library_version_does_not_replace_a_newer_one(stack: Stack, org: Org) -> None:
    new, old = _complete_after(stack, org, default=(3, 0.50), new=(2, 0.99))
    assert not new["is_default"] and old["is_default"]
    assert not new["promotion"]["promoted"] and "older library version" in new["promotion"]["reason"]
