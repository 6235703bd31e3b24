"""Auto-grouping a people library groups the faces in the photos, not the photos.

Real faces composited onto cluttered backgrounds (sampledata/face_scenes.py): three photos of each person (two
enrolment scenes and a query scene: other background, position, scale, mirrored), uploaded unassigned to a people
library. The pulled ``face-detector`` and ``face-embedding`` are the system models. Grouping by the face in each
photo is compared with grouping the same photos whole with the same face model (what a people library got before:
one group mixed three people)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from sampledata.face_scenes import SceneSet
from tests.conftest import Gateway, Org, Process, Stack, make_org
from tests.engines import api_helpers as api
from tests.engines import face_fixtures, registered
from tests.support.waits import wait_job

PEOPLE = 12  # people grouped (three photos each)
UNASSIGNED = """mutation($l: ID!, $t: ID!) { createEntityIdentifier(input: {libraryId: $l, identifierTypeId: $t}) { id } }"""
GROUP = "mutation($l: ID!, $k: Int, $m: String) { autoGroup(input: {libraryId: $l, nClusters: $k, modelId: $m}) { id } }"
GROUPS = "query($j: ID!) { identifierGroups(jobId: $j, limit: 100) { records { members(limit: 100) { records { id } } } } }"


@pytest.fixture(scope="module")
def cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return face_fixtures.package_cache(request, tmp_path_factory)


@pytest.fixture(scope="module")
def system_models(stack: Stack, cache: Path) -> Iterator[bytes]:
    pulled = {name: face_fixtures.pulled(cache, name) for name in ("face-detector", "face-embedding")}
    for model in pulled.values():
        registered.register_pulled(stack, model)
    yield pulled["face-detector"].model_bytes
    for name in pulled:  # later modules of the session expect no face defaults
        registered.drop_system_default(stack, name)


@pytest.fixture(scope="module")
def scenes(cache: Path, system_models: bytes) -> SceneSet:
    return face_fixtures.scenes(cache, system_models)


@pytest.fixture(scope="module")
def org(stack: Stack, gateway: Gateway) -> Iterator[Org]:
    org = make_org(stack, gateway, "grouping-faces")
    yield org
    org.close()


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    process = api.start_worker_process(stack, tmp_path_factory.mktemp("grouping-faces"), "grouping-faces-worker")
    yield process
    process.stop()


def photos(scenes: SceneSet) -> list[tuple[str, bytes]]:
    people = sorted(p for p in scenes.enrolled if p in scenes.queries)[:PEOPLE]
    return [(p, s.data) for p in people for s in (*scenes.enrolled[p], scenes.queries[p])]


def unassigned_library(org: Org, name: str, library_type: str, identifier_type: str, items: list[tuple[str, bytes]]) -> tuple[str, dict[str, str]]:
    library_id = org.create_library(name, library_type)

    def upload(item: tuple[str, bytes]) -> tuple[str, str]:
        reply = org.client.upload_form(UNASSIGNED, item[1], "image/jpeg", filename="photo.jpg",
                                       variables={"l": library_id, "t": identifier_type})
        return reply.ok()["createEntityIdentifier"]["id"], item[0]

    with ThreadPoolExecutor(api.UPLOAD_THREADS) as pool:
        return library_id, dict(pool.map(upload, items))


def grouped(org: Org, worker: Process, library_id: str, model: str | None = None) -> tuple[dict[str, Any], list[list[str]]]:
    job_id = org.client.query(GROUP, l=library_id, k=PEOPLE, m=model).ok()["autoGroup"]["id"]
    job = wait_job(org, job_id, worker=worker, timeout=300)
    assert job["status"] == "complete", (job, worker.output()[-3000:])
    records = org.client.query(GROUPS, j=job_id).ok()["identifierGroups"]["records"]
    return job["tasks"]["records"][0]["output"], [[m["id"] for m in g["members"]["records"]] for g in records]


def pure(groups: list[list[str]], truth: dict[str, str]) -> int:
    """Groups whose members are all one person."""
    return sum(1 for g in groups if len({truth[i] for i in g}) == 1)


def purity(groups: list[list[str]], truth: dict[str, str]) -> float:
    """Share of photos in their group's majority person."""
    return sum(Counter(truth[i] for i in g).most_common(1)[0][1] for g in groups) / sum(len(g) for g in groups)


def test_grouping_a_people_library_groups_the_faces_in_the_photos_not_the_whole_photos(
    org: Org, worker: Process, scenes: SceneSet, capsys: pytest.CaptureFixture[str]
) -> None:
    items = photos(scenes)
    people_library, truth = unassigned_library(org, "people-grouping", "people", "face", items)
    output, faces = grouped(org, worker, people_library)
    assert output["groupedBy"] == "faces" and output["model"].startswith("face-embedding@"), output
    assert output["grouped"] == len(items) and output["skippedByReason"] == {}, output
    # The same photos grouped whole by the same face model: what a people library got before.
    whole_library, whole_truth = unassigned_library(org, "whole-photos", "objects", "image", items)
    whole_output, whole = grouped(org, worker, whole_library, model="face-embedding")
    assert whole_output["groupedBy"] == "whole images"
    api.say(capsys, f"auto-grouping {len(items)} photos of {PEOPLE} people into {PEOPLE} groups: "
                    f"faces {pure(faces, truth)}/{len(faces)} groups pure (purity {purity(faces, truth):.3f}); "
                    f"whole photos {pure(whole, whole_truth)}/{len(whole)} pure (purity {purity(whole, whole_truth):.3f})")
    assert purity(faces, truth) >= 0.9
    assert pure(faces, truth) > pure(whole, whole_truth)
