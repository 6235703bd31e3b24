"""When training fails: an engine's own error fails at once, a crash is retried, a dead worker's task is
finished by another worker after its lease runs out."""

from __future__ import annotations

import json

from tests.support.waits import wait_for, wait_job
from tests.worker.conftest import (
    download,
    model,
    s3_keys,
    sleeper_job,
    started_lines,
    task_of,
)


def test_an_engine_error_fails_the_model_with_the_error_and_is_not_retried(org, start_worker):
    library_id = org.create_library()
    job_id, task_id, model_id = sleeper_job(org, library_id, fail="engine")
    worker = start_worker()

    done = wait_job(org, job_id)
    assert done["status"] == "failed"
    task = done["tasks"]["records"][0]
    assert task["status"] == "failed"
    assert task["attempts"] == 1
    assert task["failureMessage"] == "the sleeper was asked to fail"
    assert task["failureReason"]
    failed = model(org, model_id)
    assert failed["trainStatus"] == "failed"
    assert failed["jsondata"]["error"] == "the sleeper was asked to fail"
    assert failed["dataUrl"] is None
    assert started_lines(worker.output(), task_id) == 1


def test_a_crashing_engine_is_retried_up_to_the_attempt_limit_then_fails(org, start_worker):
    library_id = org.create_library()
    job_id, task_id, model_id = sleeper_job(org, library_id, fail="crash")
    worker = start_worker()

    done = wait_job(org, job_id)
    assert done["status"] == "failed"
    task = done["tasks"]["records"][0]
    assert task["attempts"] == 3
    assert task["failureReason"] == "internal_error"
    # Clients see that the engine failed, not its internals; the worker's log has the exception.
    assert task["failureMessage"] == "the engine failed with an internal error; see the worker log"
    assert "the sleeper crashed" not in task["failureMessage"]
    failed = model(org, model_id)
    assert failed["trainStatus"] == "failed"
    assert failed["jsondata"]["error"] == task["failureMessage"]
    assert started_lines(worker.output(), task_id) == 3
    assert "RuntimeError: the sleeper crashed" in worker.output()


def test_a_task_whose_worker_was_killed_is_finished_by_another_worker(org, start_worker):
    library_id = org.create_library()
    job_id, task_id, model_id = sleeper_job(org, library_id, seconds=30, steps=30)
    first = start_worker("doomed")
    wait_for(lambda: task_of(org, job_id)["progress"] > 0, what="the first worker to be training")
    first.kill()  # SIGKILL: no release, no cleanup; the lease must run out

    second = start_worker("survivor")
    done = wait_job(org, job_id, timeout=120)
    assert done["status"] == "complete"
    task = done["tasks"]["records"][0]
    assert task["attempts"] == 2
    assert started_lines(first.output(), task_id) == 1
    assert started_lines(second.output(), task_id) == 1

    trained = model(org, model_id)
    assert trained["trainStatus"] == "complete"
    assert json.loads(download(trained["dataUrl"]))["model"] == model_id
    key = org.stack.db.fetchval("SELECT storage_key FROM library_engine_models WHERE id = $1", model_id)
    assert s3_keys(org.stack, f"{org.id}/models/") == [key]  # the killed attempt left no artifact behind
    running = org.stack.db.fetchval("SELECT count(*) FROM tasks WHERE org_id = $1 AND status = 'running'", org.id)
    assert running == 0


def test_a_worker_stopped_with_sigterm_hands_its_task_back_at_once(org, start_worker):
    library_id = org.create_library()
    job_id, task_id, model_id = sleeper_job(org, library_id, seconds=4, steps=4)
    first = start_worker("leaving")
    wait_for(lambda: task_of(org, job_id)["progress"] > 0, what="the first worker to be training")
    first.stop()  # SIGTERM: the task goes back to the queue without waiting for its lease

    requeued = task_of(org, job_id)
    assert requeued["status"] == "queued"
    assert requeued["attempts"] == 0  # handing back does not spend an attempt
    assert model(org, model_id)["trainStatus"] == "queued"
    assert f"task {task_id} stopped: shutdown" in first.output()

    start_worker("staying")
    done = wait_job(org, job_id)
    assert done["status"] == "complete"
    assert done["tasks"]["records"][0]["attempts"] == 1
    assert model(org, model_id)["trainStatus"] == "complete"
