"""Media tasks under faults: a worker SIGKILLed mid-video, a worker frozen past its lease (it wakes up to find
the task taken over), PostgreSQL stopped mid-run and S3 away when the upload is read. Each time the task ends
complete with exactly the segments of one whole run: one per media second, none twice, every row written by
the attempt that completed (tests/support/media_engine.py yields one face segment per media second)."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.services.recognition import media
from tests.conftest import Org
from tests.reliability.conftest import HeldLock, task_row
from tests.support import media_stack as ms
from tests.support.media_engine import expected_labels, video
from tests.support.waits import (
    wait_for,
    wait_job_finished,
    wait_task_row,
    wait_worker_ready,
)

SECONDS = 40  # media seconds, so segments, of each run


@pytest.fixture(scope="module")
def files() -> Iterator[ms.FileServer]:
    with ms.file_server() as server:
        yield server


def _trained(org: Org) -> dict[str, Any]:
    library_id, entities = ms.people_library(org)
    return {"library": library_id, "model": ms.train_media_model(org, library_id), "ids": sorted(entities.values())}


def _job(org: Org, trained: dict[str, Any], url: str) -> tuple[str, str]:
    job = ms.run_job(org, {"mode": "library-run", "libraryId": trained["library"],
                           "libraryEngineModelId": trained["model"], "url": url})
    return job["id"], job["tasks"]["records"][0]["id"]


def _stored(db: Any, task_id: str) -> int:
    return db.fetchval("SELECT count(*) FROM media_segments WHERE task_id = $1", uuid.UUID(task_id))


def _one_whole_run(db: Any, task_id: str, trained: dict[str, Any]) -> None:
    """The task's rows are one complete run's: every media second once, all of the completing attempt."""
    task = task_row(db, task_id)
    rows = ms.segment_rows(db, task_id)
    assert [r["start_s"] for r in rows] == [float(i) for i in range(SECONDS)], "segments missing or stored twice"
    assert [r["label"] for r in rows] == expected_labels(trained["ids"], SECONDS)
    assert {r["attempt"] for r in rows} == {task["attempts"]}
    assert sorted(r["seq"] for r in rows) == list(range(SECONDS))
    assert task["output"]["segments"] == SECONDS


def test_a_worker_killed_mid_video_is_retried_by_another_without_duplicate_segments(org, stack, start_worker, files):
    victim = start_worker("victim", **ms.WORKER_ENV)
    wait_worker_ready(victim)
    trained = _trained(org)
    url = files.add(f"/kill-{uuid.uuid4().hex}.mp4", video(SECONDS, pace=0.3))  # 12 s of work
    job_id, task_id = _job(org, trained, url)
    wait_task_row(stack.db, task_id, lambda r: r["status"] == "running" and r["lease_owner"] == "victim",
                  "the victim to claim the task", timeout=60)
    rescuer = start_worker("rescuer", **ms.WORKER_ENV)
    wait_for(lambda: _stored(stack.db, task_id) >= 5, timeout=60, interval=0.05, what="the victim to store segments")
    assert task_row(stack.db, task_id)["lease_owner"] == "victim"
    victim.kill()
    partial = _stored(stack.db, task_id)
    assert 5 <= partial < SECONDS

    assert wait_job_finished(stack.db, job_id, timeout=120) == "complete", (dict(task_row(stack.db, task_id)),
                                                                           rescuer.output()[-3000:])
    task = task_row(stack.db, task_id)
    assert task["attempts"] >= 2 and f"task {task_id}" in rescuer.output()
    _one_whole_run(stack.db, task_id, trained)
    rows, total = ms.call(stack.env, lambda res: media.segments(res, ms.admin(org), job_id=job_id, limit=100))
    assert total == SECONDS and len({(r.start_s, r.label) for r in rows}) == SECONDS


def test_a_frozen_worker_that_lost_its_lease_stores_nothing_after_another_took_over(org, stack, start_worker, files):
    frozen = start_worker("frozen", **ms.WORKER_ENV)
    wait_worker_ready(frozen)
    trained = _trained(org)
    url = files.add(f"/freeze-{uuid.uuid4().hex}.mp4", video(SECONDS, pace=0.2))  # 8 s of work
    job_id, task_id = _job(org, trained, url)
    wait_for(lambda: _stored(stack.db, task_id) >= 3, timeout=60, interval=0.05, what="the first worker to store segments")
    os.killpg(frozen.pid, signal.SIGSTOP)  # alive, holding its segments in memory, but silent: its lease runs out
    try:
        rescuer = start_worker("rescuer", **ms.WORKER_ENV)
        assert wait_job_finished(stack.db, job_id, timeout=120) == "complete", rescuer.output()[-3000:]
    finally:
        os.killpg(frozen.pid, signal.SIGCONT)
    # The woken worker finds the lease gone at its next heartbeat or insert, and stops without writing.
    wait_for(lambda: f"task {task_id} stopped: lost" in frozen.output() or f"task {task_id}: lease lost" in frozen.output(),
             timeout=30, what="the woken worker to notice it lost the lease", worker=frozen)
    _one_whole_run(stack.db, task_id, trained)
    assert task_row(stack.db, task_id)["status"] == "complete"


def test_postgresql_stopped_mid_video_the_task_runs_again_and_completes_once(private, private_workers, files):
    org = private.org()
    worker = private_workers("pg-media", **ms.WORKER_ENV)
    wait_worker_ready(worker)
    trained = _trained(org)
    url = files.add(f"/pg-{uuid.uuid4().hex}.mp4", video(SECONDS, pace=0.2))
    job_id, task_id = _job(org, trained, url)
    wait_for(lambda: _stored(private.db, task_id) >= 5, timeout=60, interval=0.05, what="segments to be stored")
    private.stack.pg.stop()
    try:
        # The next batch of segments cannot be stored, nor the failure recorded: the attempt ends, and the task
        # runs again once its lease has expired.
        wait_for(lambda: f"task {task_id}: its outcome could not be recorded" in worker.output(), timeout=30,
                 what="the attempt to end while PostgreSQL is away", worker=worker)
    finally:
        private.stack.pg.start()
    assert wait_job_finished(private.db, job_id, timeout=150) == "complete", worker.output()[-3000:]
    assert task_row(private.db, task_id)["attempts"] >= 2, "the interrupted attempt should have been run again"
    _one_whole_run(private.db, task_id, trained)


def test_an_upload_read_while_s3_is_away_is_retried_and_completes(private, private_workers):
    org = private.org()
    worker = private_workers("s3-media", **ms.WORKER_ENV, ENGINESHED_RETRY_BACKOFF_SECONDS="2")
    wait_worker_ready(worker)
    trained = _trained(org)
    keys_before = private.bucket.keys(f"{org.id}/media/")
    # The worker's next claim of the engine's tasks waits behind this lock until S3 is down.
    hold = HeldLock(private.db, "SELECT pg_advisory_xact_lock(hashtext('engineshed-claim'), hashtext($1))", "test-media")
    try:
        job = ms.call(private.stack.env, lambda res: media.start(res, ms.admin(org), model_id=trained["model"],
                                                                 upload=ms.Upload(video(SECONDS))))
        (key,) = private.bucket.keys(f"{org.id}/media/") - keys_before
        private.stack.s3.stop()
        hold.release()
        task_id = str(private.db.fetchval("SELECT id FROM tasks WHERE job_id = $1", job.id))
        failed_once = wait_task_row(
            private.db, task_id, lambda r: r["failure_reason"] is not None or r["status"] in ("complete", "failed", "cancelled"),
            "the read of the upload to fail while S3 is away", timeout=60)
    finally:
        hold.release()
        private.stack.s3.start()
    assert (failed_once["status"], failed_once["failure_reason"]) == ("queued", "system_error"), dict(failed_once)
    assert "unavailable" in failed_once["failure_message"] and _stored(private.db, task_id) == 0
    assert wait_job_finished(private.db, str(job.id), timeout=90) == "complete", worker.output()[-3000:]
    _one_whole_run(private.db, task_id, trained)
    assert private.bucket.exists(key)
