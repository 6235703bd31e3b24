"""Faults during the labeling loop's jobs (autoTag, autoGroup; gateway/worker/labeling.py), on the real stack.

A labeling task writes everything it found in one transaction with its completion. So:

* a worker SIGKILLed in the middle of that write (the test holds a lock that stops it there, after part of
  the set is inserted) leaves nothing; another worker finishes the task once the lease (6 s here) expires,
  and the job's suggestions or groups exist exactly once;
* PostgreSQL cutting the worker's connections, or restarting, in the middle of the write is a transient
  failure: retried, the job completes, nothing written twice, and the engine is not blamed;
* S3 away when an autoTag job reads its identifiers is retried and the job completes once S3 is back, or it
  fails with a clear reason when S3 stays away, having written nothing.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest

from tests.conftest import Org, Process
from tests.engines import api_helpers as api
from tests.reliability.conftest import (
    HeldLock,
    _try,
    assert_clean,
    cut_connections,
    task_row,
)
from tests.support.waits import (
    wait_for,
    wait_job_finished,
    wait_task_row,
    wait_worker_ready,
)

UNASSIGNED = 'mutation($l: ID!) { createEntityIdentifier(input: {libraryId: $l, identifierTypeId: "image"}) { id } }'
# Threshold 0: every raw identifier gets a suggestion, so the expected set is known exactly.
AUTO_TAG = """mutation($l: ID!, $m: ID!) { autoTag(input: {libraryId: $l, libraryEngineModelId: $m, confidenceThreshold: 0,
  filter: {annotationTypes: [raw]}}) { id } }"""
AUTO_GROUP = "mutation($l: ID!) { autoGroup(input: {libraryId: $l, nClusters: 2, feature: brightness}) { id } }"
# What the worker runs, inside its results transaction, once the suggestions are inserted.
MARK_MACHINE = "SET annotation_type = 'machine'"
# The write's first statement: the identifiers it touches, locked in id order (storage/queries/labeling.py LOCK).
LOCK_IN_ORDER = "identifiers before their suggestions, in id order"


def in_write(lock: HeldLock) -> bool:
    """The worker is blocked inside its results transaction, at the identifier locks or at marking them."""
    return lock.waiters(LOCK_IN_ORDER) + lock.waiters(MARK_MACHINE) >= 1
UNASSIGNED_COUNT = 6
# Backoff 2 s, doubling: the attempts after an S3 failure come 2 s and 4 s later, time for S3 to come back.
RETRY_ENV = {"ENGINESHED_RETRY_BACKOFF_SECONDS": "2", "ENGINESHED_MAX_ATTEMPTS": "3"}


def labeling_library(org: Org, seed: int) -> tuple[str, list[str]]:
    """Two entities of five noise images each, and UNASSIGNED_COUNT raw identifiers beside them."""
    library_id, _ = api.small_library(org, f"labeling-faults-{seed}", entities=2, per_entity=5, seed=seed)
    unassigned = [
        org.client.upload_form(UNASSIGNED, api.png(32, seed * 10_000 + 5_000 + i), "image/png", filename="u.png",
                               variables={"l": library_id}).ok()["createEntityIdentifier"]["id"]
        for i in range(UNASSIGNED_COUNT)
    ]
    return library_id, unassigned


def trained_model(org: Org, library_id: str, worker: Process) -> str:
    model, _ = api.trained(org, api.CLASSIFIER, library_id, worker=worker)
    assert model["trainStatus"] == "complete", model["jsondata"]
    return model["id"]


def start_job(org: Org, document: str, **variables: Any) -> tuple[str, str]:
    """(job id, its one task's id)."""
    job = org.client.query(document, **variables).ok()
    job_id = next(iter(job.values()))["id"]
    task = org.client.query("query($id: ID!) { job(id: $id) { tasks { records { id } } } }", id=job_id).ok()
    return job_id, task["job"]["tasks"]["records"][0]["id"]


def suggestions_of(db: Any, job_id: str) -> list[Any]:
    return db.fetch("SELECT identifier_id FROM identifier_suggestions WHERE job_id = $1", uuid.UUID(job_id))


def members_of(db: Any, job_id: str) -> list[Any]:
    return db.fetch(
        """SELECT m.identifier_id, m.group_id FROM identifier_group_members m JOIN identifier_groups g ON g.id = m.group_id
        WHERE g.job_id = $1""",
        uuid.UUID(job_id),
    )


def groups_of(db: Any, job_id: str) -> list[Any]:
    return db.fetch("SELECT id, representative_id FROM identifier_groups WHERE job_id = $1", uuid.UUID(job_id))


def assert_suggested_once(db: Any, job_id: str, task_id: str, unassigned: list[str]) -> None:
    """Exactly one suggestion per raw identifier, every one of them now machine-annotated."""
    rows = suggestions_of(db, job_id)
    assert sorted(str(r["identifier_id"]) for r in rows) == sorted(unassigned), rows
    assert task_row(db, task_id)["output"]["suggested"] == len(unassigned)
    types = db.fetch("SELECT annotation_type FROM entity_identifiers WHERE id = ANY($1::uuid[])", [uuid.UUID(i) for i in unassigned])
    assert [r["annotation_type"] for r in types] == ["machine"] * len(unassigned)


def assert_grouped_once(db: Any, job_id: str, unassigned: list[str]) -> None:
    """Two groups; every unassigned identifier a member of exactly one; each representative one of its members."""
    groups = groups_of(db, job_id)
    members = members_of(db, job_id)
    assert len(groups) == 2, groups
    assert sorted(str(m["identifier_id"]) for m in members) == sorted(unassigned), members
    by_group = {g["id"]: {m["identifier_id"] for m in members if m["group_id"] == g["id"]} for g in groups}
    assert all(g["representative_id"] in by_group[g["id"]] for g in groups), (groups, by_group)


def assert_nothing_running(db: Any, org: Org) -> None:
    assert db.fetchval("SELECT count(*) FROM tasks WHERE org_id = $1 AND status IN ('running', 'queued', 'pending')", org.id) == 0


# ------------------------------------------------------------------------------------ worker crashes


def test_a_worker_killed_mid_write_of_an_auto_tag_job_is_finished_once_by_another(org, stack, start_worker):
    db = stack.db
    library_id, unassigned = labeling_library(org, seed=41)
    victim = start_worker("lab-tag-victim")
    model_id = trained_model(org, library_id, victim)
    # The victim opens its results transaction, then waits here for the identifiers it marks machine-annotated.
    lock = HeldLock(db, "SELECT 1 FROM entity_identifiers WHERE id = $1 FOR NO KEY UPDATE", uuid.UUID(unassigned[0]))
    try:
        job_id, task_id = start_job(org, AUTO_TAG, l=library_id, m=model_id)
        wait_for(lambda: in_write(lock), timeout=90, interval=0.05, what="the victim to be in its write")
        assert task_row(db, task_id)["lease_owner"] == "lab-tag-victim"
        assert suggestions_of(db, job_id) == [], "nothing is visible before the write commits"
        rescuer = start_worker("lab-tag-rescuer")
        victim.kill()
    finally:
        lock.release()

    assert wait_job_finished(db, job_id, timeout=120) == "complete", (dict(task_row(db, task_id)), rescuer.output()[-3000:])
    task = task_row(db, task_id)
    assert task["attempts"] >= 2 and task["lease_owner"] in (None, "lab-tag-rescuer"), dict(task)
    assert f"task {task_id}" in rescuer.output()
    assert_suggested_once(db, job_id, task_id, unassigned)
    assert_nothing_running(db, org)


def test_a_worker_killed_mid_write_of_an_auto_group_job_is_finished_once_by_another(org, stack, start_worker):
    db = stack.db
    library_id, unassigned = labeling_library(org, seed=42)
    # The victim inserts its groups, then waits here to insert their members.
    lock = HeldLock(db, "LOCK TABLE identifier_group_members IN EXCLUSIVE MODE")
    try:
        job_id, task_id = start_job(org, AUTO_GROUP, l=library_id)
        victim = start_worker("lab-group-victim")
        wait_for(lambda: lock.waiters("identifier_group_members") >= 1, timeout=90, interval=0.05,
                 what="the victim to be in its write")
        assert task_row(db, task_id)["lease_owner"] == "lab-group-victim"
        assert groups_of(db, job_id) == [], "nothing is visible before the write commits"
        rescuer = start_worker("lab-group-rescuer")
        victim.kill()
    finally:
        lock.release()

    assert wait_job_finished(db, job_id, timeout=120) == "complete", (dict(task_row(db, task_id)), rescuer.output()[-3000:])
    task = task_row(db, task_id)
    assert task["attempts"] >= 2 and task["lease_owner"] in (None, "lab-group-rescuer"), dict(task)
    assert task["output"]["groups"] == 2 and task["output"]["grouped"] == UNASSIGNED_COUNT, task["output"]
    assert_grouped_once(db, job_id, unassigned)
    # Listed through the API as well: two groups, their sizes adding up to the identifiers grouped.
    groups = org.client.query("query($j: ID!) { identifierGroups(jobId: $j) { totalCount records { size } } }", j=job_id).ok()
    listed = groups["identifierGroups"]
    assert listed["totalCount"] == 2 and sum(g["size"] for g in listed["records"]) == UNASSIGNED_COUNT, listed
    assert_nothing_running(db, org)


# ------------------------------------------------------------------------------------ PostgreSQL


def test_worker_connections_cut_mid_write_of_a_labeling_job_are_retried_and_it_completes_once(private, private_workers):
    db = private.db
    org = private.org("lab-pg")
    library_id, unassigned = labeling_library(org, seed=43)
    worker = private_workers("lab-pg-worker")
    wait_worker_ready(worker)
    model_id = trained_model(org, library_id, worker)
    lock = HeldLock(db, "SELECT 1 FROM entity_identifiers WHERE id = $1 FOR NO KEY UPDATE", uuid.UUID(unassigned[0]))
    try:
        job_id, task_id = start_job(org, AUTO_TAG, l=library_id, m=model_id)
        wait_for(lambda: in_write(lock), timeout=90, interval=0.05, what="the worker to be in its write")
        assert cut_connections(private, "engineshed-worker") >= 1
        # The failed attempt is seen either as its failure record or, when the retry (0.5 s backoff here) has
        # already claimed the task again and cleared that record, as the second attempt.
        failed_once = wait_task_row(
            db, task_id,
            lambda r: r["failure_message"] is not None or r["status"] != "running" or r["attempts"] >= 2,
            "the cut write to fail the attempt", timeout=60)
        assert suggestions_of(db, job_id) == [], "the cut transaction wrote nothing"
    finally:
        lock.release()
    assert failed_once["status"] in ("queued", "running"), f"the task was not retried: {dict(failed_once)}"
    if failed_once["failure_message"] is not None:
        assert failed_once["failure_reason"] == "system_error", dict(failed_once)
        assert_clean(failed_once["failure_message"])

    assert wait_job_finished(db, job_id, timeout=120) == "complete", (dict(task_row(db, task_id)), worker.output()[-3000:])
    assert task_row(db, task_id)["attempts"] >= 2
    assert_suggested_once(db, job_id, task_id, unassigned)
    assert worker.alive()
    # A dropped connection is the database's doing: retried as a system error, never logged as an engine bug.
    assert " raised" not in worker.output(), worker.output()[-3000:]
    assert_nothing_running(db, org)


def test_a_postgresql_restart_mid_write_of_an_auto_group_job_completes_it_once(private, private_workers):
    db = private.db
    org = private.org("lab-pg-restart")
    library_id, unassigned = labeling_library(org, seed=46)
    worker = private_workers("lab-pg-restart-worker")
    wait_worker_ready(worker)
    lock = HeldLock(db, "LOCK TABLE identifier_group_members IN EXCLUSIVE MODE")
    try:
        job_id, task_id = start_job(org, AUTO_GROUP, l=library_id)
        wait_for(lambda: lock.waiters("identifier_group_members") >= 1, timeout=90, interval=0.05,
                 what="the worker to be in its write")
        private.stack.pg.restart()
    finally:
        with contextlib.suppress(Exception):  # the restart ended the lock's session too
            lock.release()
        lock.tr = None
    wait_for(lambda: _try(lambda: db.fetchval("SELECT 1")), timeout=60, what="PostgreSQL to answer again")

    assert wait_job_finished(db, job_id, timeout=120) == "complete", (dict(task_row(db, task_id)), worker.output()[-3000:])
    assert task_row(db, task_id)["attempts"] >= 2
    assert_grouped_once(db, job_id, unassigned)
    assert worker.alive()
    assert " raised" not in worker.output(), worker.output()[-3000:]
    # The attempt's failure could not be recorded while PostgreSQL was down: the worker says so and leaves
    # the task to its lease, rather than dropping an error on the floor.
    assert "exception was never retrieved" not in worker.output(), worker.output()[-6000:]
    assert_nothing_running(db, org)


# ------------------------------------------------------------------------------------ S3


def test_an_auto_tag_job_retries_while_s3_is_away_and_completes_once_it_returns(private, private_workers):
    db = private.db
    org = private.org("lab-s3")
    library_id, unassigned = labeling_library(org, seed=44)
    worker = private_workers("lab-s3-worker", **RETRY_ENV)
    wait_worker_ready(worker)
    model_id = trained_model(org, library_id, worker)
    private.stack.s3.stop()
    try:
        job_id, task_id = start_job(org, AUTO_TAG, l=library_id, m=model_id)
        failed_once = wait_task_row(db, task_id, lambda r: r["failure_message"] is not None or r["status"] in ("complete", "failed"),
                                "the first attempt to fail while S3 is away", timeout=60)
    finally:
        private.stack.s3.start()
    assert failed_once["status"] in ("queued", "running"), f"the task was not retried: {dict(failed_once)}"
    assert failed_once["failure_reason"] == "system_error", dict(failed_once)
    assert suggestions_of(db, job_id) == []
    assert wait_job_finished(db, job_id, timeout=90) == "complete", (dict(task_row(db, task_id)), worker.output()[-3000:])
    assert_suggested_once(db, job_id, task_id, unassigned)
    assert " raised" not in worker.output(), worker.output()[-3000:]


def test_an_auto_tag_job_fails_clearly_when_s3_stays_away_and_writes_nothing(private, private_workers):
    db = private.db
    org = private.org("lab-s3-down")
    library_id, unassigned = labeling_library(org, seed=45)
    worker = private_workers("lab-s3-down-worker", ENGINESHED_RETRY_BACKOFF_SECONDS="0.3")
    wait_worker_ready(worker)
    model_id = trained_model(org, library_id, worker)
    private.stack.s3.stop()
    try:
        job_id, task_id = start_job(org, AUTO_TAG, l=library_id, m=model_id)
        assert wait_job_finished(db, job_id, timeout=90) == "failed", dict(task_row(db, task_id))
        job = org.client.query(
            "query($id: ID!) { job(id: $id) { status tasks { records { status failureReason failureMessage } } } }", id=job_id
        ).ok()["job"]
    finally:
        private.stack.s3.start()
    task = task_row(db, task_id)
    assert task["status"] == "failed" and task["failure_reason"] == "system_error", dict(task)
    assert task["attempts"] == 3, "ENGINESHED_MAX_ATTEMPTS (3 on the private stack) bounds the retries"
    message = task["failure_message"]
    assert "S3" in message or "storage" in message.lower(), message
    assert job["tasks"]["records"][0]["failureMessage"] == message
    assert_clean(job)
    assert suggestions_of(db, job_id) == []
    types = db.fetch("SELECT annotation_type FROM entity_identifiers WHERE id = ANY($1::uuid[])", [uuid.UUID(i) for i in unassigned])
    assert [r["annotation_type"] for r in types] == ["raw"] * len(unassigned)
    assert " raised" not in worker.output(), worker.output()[-3000:]


# Where each job waits, after reading its selection and before reading any identifier: autoTag looks up its
# model (library_engine_models), autoGroup by embeddings the system's default embedding model (model_aliases).
DELETE_POINTS = {
    "autoTag": ("library_engine_models", "FROM library_engine_models"),
    "autoGroup": ("model_aliases", "a.alias = $3"),
}


@pytest.mark.parametrize("job", list(DELETE_POINTS))
def test_an_identifier_deleted_while_a_job_runs_is_skipped_not_taken_for_an_s3_outage(job, org, stack, start_worker, session_bucket):
    """Deleting an identifier removes its object at once; a job that selected it before then finds no object.
    That is not S3 being away: the job skips the identifier and completes in its first attempt."""
    db = stack.db
    library_id, unassigned = labeling_library(org, seed=47 if job == "autoTag" else 48)
    if job == "autoTag":
        trainer = start_worker("lab-delete-trainer")
        model_id = trained_model(org, library_id, trainer)
        trainer.stop()
        job_id, task_id = start_job(org, AUTO_TAG, l=library_id, m=model_id)
    else:
        job_id, task_id = start_job(org, "mutation($l: ID!) { autoGroup(input: {libraryId: $l, nClusters: 2}) { id } }", l=library_id)
    table, waiting_on = DELETE_POINTS[job]
    lock = HeldLock(db, f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    try:
        worker = start_worker(f"lab-delete-{job}")
        wait_for(lambda: lock.waiters(waiting_on) >= 1, timeout=90, interval=0.05, what="the worker to have read its selection")
        gone = unassigned[0]
        key = db.fetchval("SELECT storage_key FROM entity_identifiers WHERE id = $1", uuid.UUID(gone))
        org.client.query("mutation($i: ID!) { deleteEntityIdentifier(id: $i) { id } }", i=gone).ok()
        assert not session_bucket.exists(key)
    finally:
        lock.release()

    assert wait_job_finished(db, job_id, timeout=120) == "complete", (dict(task_row(db, task_id)), worker.output()[-3000:])
    task = task_row(db, task_id)
    assert task["attempts"] == 1 and task["failure_message"] is None, (dict(task), worker.output()[-3000:])
    assert task["output"]["skipped"] == 1, task["output"]
    if job == "autoTag":
        assert task["output"]["suggested"] == UNASSIGNED_COUNT - 1, task["output"]
        assert sorted(str(r["identifier_id"]) for r in suggestions_of(db, job_id)) == sorted(unassigned[1:])
    else:
        assert task["output"]["grouped"] == UNASSIGNED_COUNT - 1, task["output"]
        assert sorted(str(m["identifier_id"]) for m in members_of(db, job_id)) == sorted(unassigned[1:])
