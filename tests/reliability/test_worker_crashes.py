"""A worker SIGKILLed in the middle of a training: another worker finishes the task once the lease (6 s in
the test environment) expires, the model ends ``complete`` with exactly one artifact that exists in S3,
and nothing stays ``running``.

The kill lands at four points: while the gallery engine fetches identifiers, while the sleeper engine
works, just before the artifact upload (the test holds a lock that stops the worker at the insert into
``blob_deletions`` which precedes every upload), and just after it (the test holds the model row, so the
worker has uploaded its artifact and waits to record it)."""

from __future__ import annotations

import uuid

import pytest

from tests.reliability.conftest import (
    GALLERY,
    SLEEPER,
    Bucket,
    HeldLock,
    library_with_images,
    model_row,
    pending_deletions,
    task_row,
    train,
)
from tests.support.waits import wait_for, wait_job_finished, wait_task_row

POINTS = {
    # point: (engine, identifiers, config)
    "during-fetch": (GALLERY, 60, {"fetchConcurrency": 1, "fetchRate": 5}),  # about 12 s of fetching
    "during-engine-work": (SLEEPER, 3, {"seconds": 20, "steps": 20}),
    "just-before-artifact-upload": (SLEEPER, 3, {"seconds": 1, "steps": 2}),
    "after-upload-before-commit": (SLEEPER, 3, {"seconds": 3, "steps": 3}),
}


@pytest.mark.parametrize("point", list(POINTS))
def test_a_worker_killed_mid_training_is_finished_by_another_worker_with_one_artifact(point, org, stack, start_worker, session_bucket: Bucket):
    engine, identifiers, config = POINTS[point]
    db = stack.db
    library_id = library_with_images(org, identifiers)
    models_prefix = f"{org.id}/models/{library_id}/"
    lock: HeldLock | None = None
    if point == "just-before-artifact-upload":
        # Inserts into blob_deletions (store() records the key there before any upload) wait behind this.
        lock = HeldLock(db, "LOCK TABLE blob_deletions IN EXCLUSIVE MODE")
    job_id, task_id, model_id = train(org.client, library_id, engine, **config)
    victim = start_worker("victim")
    try:
        wait_task_row(db, task_id, lambda r: r["status"] == "running" and r["lease_owner"] == "victim", "the victim to claim the task", timeout=90)
        if point == "after-upload-before-commit":
            # Taken after the claim (which updates the model row) and during the engine's 3 s: the worker
            # uploads its artifact, then waits here to lock the model row and record it.
            lock = HeldLock(db, "SELECT 1 FROM library_engine_models WHERE id = $1 FOR UPDATE", uuid.UUID(model_id))
            assert task_row(db, task_id)["status"] == "running"
        rescuer = start_worker("rescuer")  # starts now; the task is leased to the victim until it stops renewing
        if point == "during-fetch":
            # Fetching is the bottleneck (5 identifiers a second, about 12 s for 60); the gallery reports no
            # progress while it fetches, so the kill lands 3 s after the claim, well inside the fetch.
            wait_for(
                lambda: db.fetchval("SELECT now() - started_at > interval '3 seconds' FROM tasks WHERE id = $1", uuid.UUID(task_id)),
                timeout=30, interval=0.05, what="3 s of fetching",
            )
            row = task_row(db, task_id)
            assert row["status"] == "running" and row["lease_owner"] == "victim" and row["progress"] < 0.9, dict(row)
        elif point == "during-engine-work":
            wait_task_row(db, task_id, lambda r: 0.1 <= r["progress"] < 0.9, "the sleeper to be working", timeout=60)
        elif point == "just-before-artifact-upload":
            wait_for(lambda: lock.waiters("blob_deletions") >= 1, timeout=60, interval=0.05, what="the victim to wait before its upload")
            assert models_prefix and not session_bucket.keys(models_prefix)
        else:
            wait_for(lambda: lock.waiters("library_engine_models") >= 1, timeout=60, interval=0.05,
                     what="the victim to wait to record its uploaded artifact")
        assert task_row(db, task_id)["lease_owner"] == "victim"
        victim.kill()
        faults_before = session_bucket.keys(models_prefix)
    finally:
        if lock is not None:
            lock.release()

    status = wait_job_finished(db, job_id, timeout=150)
    task = task_row(db, task_id)
    model = model_row(db, model_id)
    assert (status, task["status"], model["train_status"]) == ("complete", "complete", "complete"), (
        dict(task), rescuer.output()[-3000:]
    )
    assert task["lease_owner"] is None or task["lease_owner"] == "rescuer"
    assert task["attempts"] >= 2, "the rescuer should have run the task again"
    assert f"task {task_id}" in rescuer.output()

    # Exactly one artifact is referenced, it exists, and any other object under the model's prefix is one
    # the victim left behind that is recorded for deletion (the sweeper removes it after its grace period).
    key = model["storage_key"]
    assert key and key.startswith(models_prefix), key
    assert session_bucket.exists(key)
    keys = session_bucket.keys(models_prefix)
    assert key in keys
    leftovers = keys - {key}
    assert leftovers <= pending_deletions(db, models_prefix), (leftovers, pending_deletions(db, models_prefix))
    if point == "after-upload-before-commit":
        assert len(faults_before) == 1 and faults_before != {key}, "the victim's upload should have been in S3 before the kill"
    assert key not in pending_deletions(db, models_prefix)

    # The artifact is the rescuer's, whole, and readable through the API.
    data = org.client.query("query($id: ID!) { libraryEngineModel(id: $id) { trainStatus dataUrl } }", id=model_id).ok()
    assert data["libraryEngineModel"]["trainStatus"] == "complete"
    assert data["libraryEngineModel"]["dataUrl"]

    # Nothing of this org stays running.
    running = db.fetchval("SELECT count(*) FROM tasks WHERE org_id = $1 AND status = 'running'", org.id)
    running_models = db.fetchval("SELECT count(*) FROM library_engine_models WHERE org_id = $1 AND train_status = 'running'", org.id)
    assert (running, running_models) == (0, 0)
