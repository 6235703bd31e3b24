"""Helpers for the job, dispatch and worker tests: training jobs built through the public API, their state
read back as clients read it, and a clean queue after every test (the database is shared by the session)."""

from __future__ import annotations

import io
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from storage.blobs import connect_blobs
from tests.conftest import Org, Stack
from tests.graphql_client import GraphQLClient
from tests.support.requirements import shared_file
from tests.support.waits import JOB_FIELDS

SLEEPER = "test-sleeper"
MODEL_FIELDS = "id engineId libraryId libraryVersion trainJobId trainStatus dataUrl contentType jsondata modifiedDateTime"


def seed(name: str) -> str:
    """The text of one of the established API's published operations, as its users send it."""
    operations = shared_file("data", "veritone-ops")
    matches = sorted(operations.glob(f"{name}*.graphql"))
    assert matches, f"no seed operation {name} in {operations}"
    return matches[0].read_text()


def png(seed_value: int = 0) -> bytes:
    image = Image.new("RGB", (8, 8), (seed_value * 40 % 256, 90, 160))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def library_with_faces(org: Org, people: int = 1, name: str = "faces") -> str:
    library_id = org.create_library(name)
    for i in range(people):
        entity_id = org.create_entity(library_id, f"person {i}")
        org.add_identifier(entity_id, png(i))
    return library_id


def create_model(org: Org, library_id: str, engine_id: str = SLEEPER, client: GraphQLClient | None = None) -> str:
    reply = (client or org.client).query(
        "mutation($e: ID!, $l: ID!) { createLibraryEngineModel(input: {engineId: $e, libraryId: $l}) { id trainStatus } }",
        e=engine_id, l=library_id,
    )
    data = reply.ok()["createLibraryEngineModel"]
    assert data["trainStatus"] == "pending"
    return data["id"]


def create_train_job(org: Org, library_id: str, model_id: str, engine_id: str = SLEEPER, **config: Any) -> dict[str, Any]:
    """A library-train job through createJob; returns the job with its one task."""
    payload: dict[str, Any] = {"mode": "library-train", "libraryId": library_id, "libraryEngineModelId": model_id}
    if config:
        payload["config"] = config
    reply = org.client.query(
        f"mutation($t: [CreateTask!]) {{ createJob(input: {{tasks: $t}}) {{ {JOB_FIELDS} }} }}",
        t=[{"engineId": engine_id, "payload": payload}],
    )
    return reply.ok()["createJob"]


def sleeper_job(org: Org, library_id: str, **config: Any) -> tuple[str, str, str]:
    """A new model and its train job for the test engine: (job id, task id, model id)."""
    model_id = create_model(org, library_id)
    job = create_train_job(org, library_id, model_id, **config)
    return job["id"], job["tasks"]["records"][0]["id"], model_id


def job(org: Org, job_id: str, client: GraphQLClient | None = None) -> dict[str, Any]:
    return (client or org.client).query(f"query($id: ID!) {{ job(id: $id) {{ {JOB_FIELDS} }} }}", id=job_id).ok()["job"]


def task_of(org: Org, job_id: str) -> dict[str, Any]:
    return job(org, job_id)["tasks"]["records"][0]


def model(org: Org, model_id: str, client: GraphQLClient | None = None) -> dict[str, Any]:
    reply = (client or org.client).query(f"query($id: ID!) {{ libraryEngineModel(id: $id) {{ {MODEL_FIELDS} }} }}", id=model_id)
    return reply.ok()["libraryEngineModel"]


def download(url: str) -> bytes:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, (response.status_code, response.text[:300])
    return response.content


def count_jobs(org: Org) -> int:
    return org.stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1", org.id)


def s3_keys(stack: Stack, prefix: str) -> list[str]:
    """The object keys under ``prefix`` in the test bucket."""

    async def go() -> list[str]:
        async with connect_blobs(
            endpoint_url=stack.env["S3_ENDPOINT_URL"], bucket=stack.env["S3_BUCKET"], region="us-east-1",
            access_key=stack.env["AWS_ACCESS_KEY_ID"], secret_key=stack.env["AWS_SECRET_ACCESS_KEY"],
        ) as blobs:
            return sorted(await blobs.list_keys(prefix))

    return stack.db.run(go())


def stop_together(workers: list) -> None:
    """SIGTERM every worker first, then wait for each: they shut down side by side."""
    for worker in workers:
        if worker.alive():
            worker.proc.send_signal(signal.SIGTERM)
    for worker in workers:
        worker.stop()


def started_lines(log: str, task_id: str) -> int:
    return sum(1 for line in log.splitlines() if f"task {task_id}" in line and " started" in line)


@pytest.fixture(autouse=True)
def quiet_queue_after(stack: Stack) -> Iterator[None]:
    """Work a test leaves queued or running must not reach the next test's workers or engine limits
    (autouse: torn down after the test's worker processes have stopped)."""
    yield
    stack.db.execute(
        """UPDATE tasks SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, completed_at = now()
        WHERE status IN ('queued', 'pending', 'running')"""
    )
