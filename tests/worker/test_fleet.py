"""Several worker processes on one queue: no task runs twice, and an engine's concurrencyLimit holds
across all of them."""

from __future__ import annotations

import time

from tests.support.waits import wait_for
from tests.worker.conftest import (
    SLEEPER,
    job,
    s3_keys,
    sleeper_job,
    started_lines,
    stop_together,
)


def all_finished(org, job_ids):
    return all(job(org, j)["status"] in ("complete", "failed", "cancelled") for j in job_ids)


def test_two_workers_never_run_the_same_task(org, start_worker):
    library_id = org.create_library()
    jobs = [sleeper_job(org, library_id) for _ in range(20)]
    workers = [start_worker("left"), start_worker("right")]

    wait_for(lambda: all_finished(org, [j for j, _, _ in jobs]), timeout=120, what="all 20 jobs to finish")
    logs = [w.output() for w in workers]
    for job_id, task_id, _ in jobs:
        read = job(org, job_id)
        assert read["status"] == "complete"
        assert read["tasks"]["records"][0]["attempts"] == 1
        assert sum(started_lines(log, task_id) for log in logs) == 1, f"task {task_id} started more than once"
    keys = org.stack.db.fetch("SELECT storage_key FROM library_engine_models WHERE org_id = $1", org.id)
    assert len(keys) == 20 and all(k["storage_key"] for k in keys)
    assert s3_keys(org.stack, f"{org.id}/models/") == sorted(k["storage_key"] for k in keys)  # one artifact each
    print("tasks per worker:", [sum(started_lines(log, t) for _, t, _ in jobs) for log in logs])
    stop_together(workers)


def test_the_engine_concurrency_limit_holds_across_the_fleet(org, start_worker):
    limit = org.client.query('{ engine(id: "test-sleeper") { concurrencyLimit } }').ok()["engine"]["concurrencyLimit"]
    assert limit == 2
    library_id = org.create_library()
    job_ids = [sleeper_job(org, library_id, seconds=3, steps=3)[0] for _ in range(8)]
    workers = [start_worker(name, ENGINESHED_WORKER_CONCURRENCY="4") for name in ("one", "two", "three")]

    most = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        running = org.stack.db.fetchval("SELECT count(*) FROM tasks WHERE engine_id = $1 AND status = 'running'", SLEEPER)
        most = max(most, running)
        if running == 0 and all_finished(org, job_ids):
            break
        time.sleep(0.1)
    assert most <= limit
    assert most == limit  # the limit is used, not merely respected
    assert [job(org, j)["status"] for j in job_ids] == ["complete"] * 8
    stop_together(workers)
