"""POST /v1/trainings checks and pins the registered models its config names, as createJob does: an unknown
modelId is not_found with nothing written; a registered one is pinned in the task and on the job."""

from __future__ import annotations

import json
import uuid

import httpx

from sampledata.onnx_models import conv_net, normalised_manifest
from tests.conftest import Org, Stack
from tests.engines import registered
from tests.reliability.conftest import LEAK, png


def _library(org: Org) -> str:
    library_id = org.create_library("rest-models", "objects")
    org.add_identifier(org.create_entity(library_id, "one"), png(1), type_id="image")
    return library_id


def _written(stack: Stack, org: Org) -> tuple[int, int]:
    return (stack.db.fetchval("SELECT count(*) FROM library_engine_models WHERE org_id = $1", org.id),
            stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1", org.id))


def test_an_unknown_model_id_is_not_found_and_writes_nothing(stack: Stack, org: Org) -> None:
    library_id = _library(org)
    before = _written(stack, org)
    with httpx.Client(base_url=org.gateway.url, headers={"Authorization": f"Bearer {org.token}"}, timeout=30) as http:
        reply = http.post("/v1/trainings", json={"source_dataset_id": library_id, "config": {"modelId": "no-such-model"}})
    assert reply.status_code == 404, reply.text
    body = reply.json()
    assert body["error"]["code"] == "not_found", body
    assert not LEAK.search(reply.text)
    assert _written(stack, org) == before


def test_a_registered_model_id_is_pinned(stack: Stack, org: Org) -> None:
    version = registered.register_org_model(org, "rest-pinned", "embedding", conv_net(dimension=8, seed=5), normalised_manifest())
    library_id = _library(org)
    with httpx.Client(base_url=org.gateway.url, headers={"Authorization": f"Bearer {org.token}"}, timeout=30) as http:
        reply = http.post("/v1/trainings", json={"source_dataset_id": library_id, "config": {"modelId": "rest-pinned"}})
    assert reply.status_code == 201, reply.text
    job_id = uuid.UUID(reply.json()["id"])
    assert stack.db.fetchval("SELECT model_version_id FROM jobs WHERE id = $1", job_id) == version.id
    payload = stack.db.fetchval("SELECT payload FROM tasks WHERE job_id = $1", job_id)
    payload = payload if isinstance(payload, dict) else json.loads(payload)
    assert payload["modelVersionId"] == str(version.id)
