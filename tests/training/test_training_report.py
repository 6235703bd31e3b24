"""Nothing dropped without a visible reason: a training reports the identifiers it used, those it skipped by reason,
and the entities it left with no usable identifier, in GraphQL (``trainingReport``) and in the REST training's
``issues``; the lists stay bounded for huge libraries while the counts stay whole."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from gateway.services.training.report import SKIPPED_LIST_CAP, _skip_reasons
from sampledata.digits import Digits, png
from tests.conftest import Gateway, Org, Process, Stack, make_org
from tests.engines import api_helpers as api
from tests.support.waits import wait_model

REPORT = """query($id: ID!) { libraryEngineModel(id: $id) { trainStatus trainingReport {
  recorded identifiersUsed identifiersSkipped entitiesUsed
  skipped { reason count message capped identifiers { identifierId entityId detail } }
  entitiesWithoutIdentifiers { id name reason message } entitiesWithoutIdentifiersCount entitiesWithoutIdentifiersCapped } } }"""


@pytest.fixture(scope="module")
def report_org(stack: Stack, gateway: Gateway) -> Iterator[Org]:
    org = make_org(stack, gateway, "training-report")
    yield org
    org.close()


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = api.start_worker_process(stack, tmp_path_factory.mktemp("training-report"), "training-report-worker")
    yield process
    process.stop()


def _sized(data: bytes, side: int) -> bytes:
    grey = np.asarray(Image.open(io.BytesIO(data)).convert("L").resize((8, 8), Image.Resampling.BILINEAR), np.float64)
    return png(grey * (16.0 / 255.0), side)


def test_a_training_names_every_entity_it_left_without_a_usable_identifier(
    report_org: Org, worker: Process, digit_library: Digits,
) -> None:
    org = report_org
    library_id = api.create_library(org, "digits with small ones")
    entities: dict[int, str] = {}
    items = []
    for digit in range(10):
        entities[digit] = org.create_entity(library_id, f"digit-{digit}")
        side = 24 if digit < 4 else 48  # digits 0-3 are all under minSize 32
        items += [(entities[digit], _sized(e.data, side))
                  for e in [e for e in digit_library.train if e.entity_id == f"digit-{digit}"][:4]]
    small_ids = set(api.add_identifiers(org, items)[:16])
    nobody = org.create_entity(library_id, "no photos yet")

    model_id, job_id = api.train(org, api.GALLERY, library_id, {"minSize": 32})
    wait_model(org, model_id, worker=worker, timeout=180)
    model = org.client.query(REPORT, id=model_id).ok()["libraryEngineModel"]
    assert model["trainStatus"] == "complete"
    report = model["trainingReport"]
    assert report["recorded"] is True
    assert (report["identifiersUsed"], report["identifiersSkipped"], report["entitiesUsed"]) == (24, 16, 6)
    [too_small] = report["skipped"]
    assert (too_small["reason"], too_small["count"], too_small["capped"]) == ("too-small", 16, False)
    assert "minSize" in too_small["message"] and "under minSize 32" in too_small["message"]
    assert {i["identifierId"] for i in too_small["identifiers"]} == small_ids
    assert {i["entityId"] for i in too_small["identifiers"]} == {entities[d] for d in range(4)}

    missing = {e["name"]: e for e in report["entitiesWithoutIdentifiers"]}
    assert set(missing) == {"digit-0", "digit-1", "digit-2", "digit-3", "no photos yet"}
    assert report["entitiesWithoutIdentifiersCount"] == 5 and report["entitiesWithoutIdentifiersCapped"] is False
    assert missing["digit-2"]["id"] == entities[2] and missing["digit-2"]["reason"] == "all-skipped"
    assert "4 too-small" in missing["digit-2"]["message"]
    assert (missing["no photos yet"]["id"], missing["no photos yet"]["reason"]) == (nobody, "no-identifier")

    # The REST training shows the same: a warning per entity left out and per skip reason.
    with httpx.Client(base_url=org.gateway.url, headers={"Authorization": f"Bearer {org.token}"}, timeout=60) as http:
        training = http.get(f"/v1/trainings/{job_id}").json()
    issues = training["source_dataset"]["issues"]
    assert issues["has_warning"] is True and issues["has_error"] is False
    left_out = [r for r in issues["reasons"] if r["kind"] == "entity-without-identifiers"]
    assert {r["entity_name"] for r in left_out} == set(missing) and all(r["severity"] == "warning" for r in left_out)
    assert any("no usable identifier" in r["message"] and "digit-0" in r["message"] for r in left_out)
    [skips] = [r for r in issues["reasons"] if r["kind"] == "too-small"]
    assert skips["count"] == 16 and set(skips["identifier_ids"]) == small_ids
    assert issues["report"]["entitiesWithoutIdentifiersCount"] == 5


def test_a_training_that_used_everyone_reports_no_entity_left_out(report_org: Org, worker: Process, digit_library: Digits) -> None:
    org = report_org
    library_id = api.create_library(org, "all digits")
    items = []
    for digit in (5, 6, 7):
        entity = org.create_entity(library_id, f"digit-{digit}")
        items += [(entity, e.data) for e in [e for e in digit_library.train if e.entity_id == f"digit-{digit}"][:3]]
    api.add_identifiers(org, items)
    model_id, _ = api.train(org, api.GALLERY, library_id)
    wait_model(org, model_id, worker=worker, timeout=180)
    report = org.client.query(REPORT, id=model_id).ok()["libraryEngineModel"]["trainingReport"]
    assert (report["identifiersUsed"], report["identifiersSkipped"], report["entitiesUsed"]) == (9, 0, 3)
    assert report["skipped"] == [] and report["entitiesWithoutIdentifiers"] == []
    assert report["entitiesWithoutIdentifiersCount"] == 0


def test_skip_lists_are_capped_and_say_so_while_counts_stay_whole() -> None:
    data: dict[str, Any] = {"skipped": [{"identifierId": f"i{n}", "entityId": "e", "reason": "blurry",
                                         "detail": f"sharpness {n}"} for n in range(SKIPPED_LIST_CAP + 25)]
                            + [{"identifierId": "x", "reason": "corrupt", "detail": "truncated"}]}
    reasons, total = _skip_reasons(data)
    assert total == SKIPPED_LIST_CAP + 26
    blurry, corrupt = reasons
    assert (blurry.reason, blurry.count, len(blurry.identifiers), blurry.capped) == ("blurry", SKIPPED_LIST_CAP + 25, SKIPPED_LIST_CAP, True)
    assert (corrupt.reason, corrupt.count, corrupt.capped) == ("corrupt", 1, False)
    assert "upload the file again" in corrupt.message and "truncated" in corrupt.message
