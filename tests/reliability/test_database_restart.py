"""PostgreSQL restarted under a busy gateway and worker (a private stack): both recover without being
restarted, no accepted job is lost, requests during the outage fail cleanly and later ones succeed."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from tests.graphql_client import GraphQLClient, Reply
from tests.reliability.conftest import (
    assert_clean,
    create_model,
    cut_connections,
    library_with_images,
    train,
)
from tests.support.waits import wait_for, wait_job_finished, wait_worker_ready

CLIENT_TIMEOUT = 15.0
CREATE_JOB = "mutation($t: [CreateTask!]) { createJob(input: {tasks: $t}) { id } }"


@dataclass
class Tally:
    """Replies counted by kind, and what a client must never get: a reply that is not JSON, one with
    neither data nor errors, a leaked trace, or (``only_unavailable``) any error but service_unavailable."""

    only_unavailable: bool = False
    outcomes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def add(self, reply: Reply) -> None:
        if "_text" in reply.body:
            self.outcomes[f"HTTP {reply.status} text"] += 1
            self.problems.append(f"a reply that is not JSON: {reply.status} {reply.body['_text'][:80]!r}")
        elif reply.errors:
            self.outcomes[f"HTTP {reply.status} {reply.error_code}"] += 1
            if self.only_unavailable and (reply.error_code != "service_unavailable" or reply.status not in (200, 503)):
                self.problems.append(f"HTTP {reply.status}: {reply.body}")
            try:
                assert_clean(reply.body)
            except AssertionError as exc:
                self.problems.append(str(exc))
        elif reply.status == 200 and reply.data:
            self.outcomes["ok"] += 1
        else:
            self.outcomes[f"HTTP {reply.status} without errors"] += 1
            self.problems.append(f"a reply without data or errors: {reply.status} {reply.body}")


def test_a_postgresql_restart_loses_no_accepted_job_and_both_processes_recover(private, private_workers):
    org = private.org()
    library_id = library_with_images(org, 2)
    worker = private_workers("pg-worker")
    wait_worker_ready(worker)
    gateway_pid, worker_pid = private.gateway.process.pid, worker.pid
    accepted = [train(org.client, library_id, seconds=2, steps=4)[0] for _ in range(4)]
    # Models for the jobs the background client creates while the database restarts.
    spare_models = [create_model(org.client, library_id) for _ in range(40)]
    wait_for(lambda: private.db.fetchval("SELECT count(*) FROM tasks WHERE org_id = $1 AND status = 'running'", org.id),
             timeout=60, what="the worker to be busy")

    tally = Tally()
    stop = threading.Event()

    def hammer() -> None:
        client = GraphQLClient(private.gateway.url, org.token, timeout=CLIENT_TIMEOUT)
        try:
            for i in range(2000):
                if stop.is_set():
                    return
                try:
                    if i % 3 == 0 and spare_models:
                        model_id = spare_models.pop()
                        payload = {"mode": "library-train", "libraryId": library_id, "libraryEngineModelId": model_id,
                                   "config": {"seconds": 0.2, "steps": 1}}
                        reply = client.query(CREATE_JOB, t=[{"engineId": "test-sleeper", "payload": payload}])
                        if not reply.errors and reply.status == 200:
                            accepted.append(reply.data["createJob"]["id"])
                    else:
                        reply = client.query("query { libraries { count } jobs(limit: 5) { count } }")
                except httpx.TimeoutException as exc:
                    tally.problems.append(f"a request hung past the client timeout: {exc!r}")
                    tally.outcomes["timeout"] += 1
                    continue
                except httpx.TransportError:
                    tally.outcomes["connection error"] += 1
                    continue
                tally.add(reply)
                time.sleep(0.02)
        finally:
            client.close()

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    time.sleep(0.5)
    private.stack.pg.restart()
    ok_before = tally.outcomes["ok"]
    # Requests succeed again, from the same gateway process.
    wait_for(lambda: tally.outcomes["ok"] > ok_before + 5, timeout=60, what="requests to succeed after the restart")
    stop.set()
    thread.join(CLIENT_TIMEOUT * 2)
    assert not thread.is_alive()
    print(f"\nrequests around the PostgreSQL restart: {dict(tally.outcomes)}; jobs accepted: {len(accepted)}")
    assert tally.problems == []

    # Every job that createJob accepted ends complete; nothing was lost or left running.
    for job_id in accepted:
        assert wait_job_finished(private.db, job_id, timeout=120) == "complete", job_id
    reply = org.client.query("query { jobs(limit: 200) { records { id status } } }").ok()
    listed = {j["id"]: j["status"] for j in reply["jobs"]["records"]}
    assert all(listed[j] == "complete" for j in accepted)
    # A job created after the restart runs on the same worker.
    job_id, _, _ = train(org.client, library_id, seconds=0, steps=1)
    assert wait_job_finished(private.db, job_id, timeout=60) == "complete"
    assert private.gateway.process.alive() and private.gateway.process.pid == gateway_pid
    assert worker.alive() and worker.pid == worker_pid
    assert httpx.get(private.gateway.url + "/readyz", timeout=10).status_code == 200


def test_requests_while_postgresql_is_down_get_a_json_service_unavailable_error(private):
    org = private.org()
    client = GraphQLClient(private.gateway.url, org.token, timeout=CLIENT_TIMEOUT)
    org.client.query("query { libraries { count } }").ok()
    private.stack.pg.stop()
    try:
        replies = []
        for query in ("query { libraries { count } }", 'mutation { createLibrary(input: {name: "x", libraryTypeId: "people"}) { id } }'):
            replies.append(client.query(query))
        with httpx.Client(base_url=private.gateway.url, headers={"Authorization": f"Bearer {org.token}"},
                          timeout=CLIENT_TIMEOUT) as http:  # the REST façade too
            rest = [http.get("/v1/trainings/"), http.post("/v1/trainings/", json={"source_dataset_id": str(uuid.uuid4())})]
    finally:
        private.stack.pg.start()
        client.close()
    for response in rest:
        assert_clean(response.text)
        assert response.status_code == 503 and response.json()["error"]["code"] == "service_unavailable", response.text
    for reply in replies:
        assert_clean(reply.body)
        assert reply.errors, f"HTTP {reply.status}: {reply.body}"
        assert reply.error_code == "service_unavailable" and reply.status in (200, 503), reply.body
    wait_for(lambda: org.client.query("query { libraries { count } }").status == 200, timeout=60, what="the gateway to recover")


def test_connections_cut_under_a_busy_gateway_get_json_replies_and_the_next_requests_succeed(private):
    """The server ending the gateway's connections (a failover, an idle-session killer, an operator's
    pg_terminate_backend) while requests are in flight: those requests fail as service_unavailable, in
    JSON, the pool replaces the connections, and later requests succeed."""
    org = private.org()
    query = "query { libraries { count } jobs(limit: 5) { count } }"
    tally = Tally(only_unavailable=True)
    stop = threading.Event()

    def hammer() -> None:
        client = GraphQLClient(private.gateway.url, org.token, timeout=CLIENT_TIMEOUT)
        try:
            while not stop.is_set():
                try:
                    reply = client.query(query)
                except httpx.TransportError as exc:  # the gateway's HTTP side must not suffer from a cut
                    tally.problems.append(f"the request itself failed: {exc!r}")
                    continue
                tally.add(reply)
        finally:
            client.close()

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(6)]
    for thread in threads:
        thread.start()
    cut = 0
    try:
        wait_for(lambda: tally.outcomes["ok"] > 20, timeout=30, what="the first requests")
        for _ in range(15):
            cut += cut_connections(private, "engineshed-gateway")
            time.sleep(0.15)
        ok_before = tally.outcomes["ok"]
        wait_for(lambda: tally.outcomes["ok"] > ok_before + 20, timeout=30, what="requests to succeed again")
    finally:
        stop.set()
        for thread in threads:
            thread.join(CLIENT_TIMEOUT * 2)
    print(f"\nrequests while {cut} gateway connections were cut: {dict(tally.outcomes)}")
    assert cut >= 15, "the gateway's connections are named in pg_stat_activity"
    assert tally.problems == []
    assert private.gateway.process.alive()


def test_connections_cut_under_a_busy_worker_do_not_fail_its_jobs_or_blame_the_engine(private, private_workers):
    org = private.org()
    library_id = library_with_images(org, 2)
    worker = private_workers("cut-worker")
    wait_worker_ready(worker)
    jobs = [train(org.client, library_id, seconds=2, steps=8)[0] for _ in range(3)]
    wait_for(lambda: private.db.fetchval("SELECT count(*) FROM tasks WHERE org_id = $1 AND status = 'running'", org.id),
             timeout=60, what="the worker to be busy")
    cut = 0
    for _ in range(12):
        cut += cut_connections(private, "engineshed-worker")
        time.sleep(0.3)
    assert cut >= 12, "the worker's connections are named in pg_stat_activity"
    for job_id in jobs:
        assert wait_job_finished(private.db, job_id, timeout=120) == "complete", job_id
    assert worker.alive()
    # A dropped connection is the database's doing: retried as a system error, never logged as an engine bug.
    assert " raised" not in worker.output(), worker.output()[-3000:]
