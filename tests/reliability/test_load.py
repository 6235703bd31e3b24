"""Load: N concurrent clients mix reads (GetIdentifiers), small uploads and createJob (test-sleeper,
``seconds: 0``) for a while against the real stack with two workers. No unexpected errors, bounded memory
(gateway and worker RSS, psutil), and every created job completes. ``LOAD_CLIENTS`` (default 40) and
``LOAD_SECONDS`` (default 10) size it; ``make load`` runs 200 clients for 60 s."""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import threading
import time
from collections import Counter

import httpx
import psutil
import pytest

from tests.reliability.conftest import png
from tests.support.waits import wait_for, wait_worker_ready

CLIENTS = int(os.environ.get("LOAD_CLIENTS", "40"))
SECONDS = float(os.environ.get("LOAD_SECONDS", "10"))
WARM_UP = min(5.0, SECONDS / 4)

GET_IDENTIFIERS = """query GetIdentifiers($id: ID!) { entity(id: $id) { id name
  identifiers(limit: 10) { count records { id identifierTypeId contentType url } } } }"""
CREATE_MODEL = "mutation($l: ID!) { createLibraryEngineModel(input: {engineId: \"test-sleeper\", libraryId: $l}) { id } }"
CREATE_JOB = "mutation($t: [CreateTask!]) { createJob(input: {tasks: $t}) { id } }"
UPLOAD = 'mutation { createEntityIdentifier(input: {entityId: "%s", identifierTypeId: "face"}) { id } }'


def _rss(pid: int) -> int:
    """Resident memory of a process and its children (a worker's decode pool)."""
    try:
        proc = psutil.Process(pid)
        return proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
    except psutil.Error:
        return 0


@pytest.mark.timeout(int(SECONDS * 4 + 600))
def test_concurrent_clients_get_no_errors_bounded_memory_and_every_job_completes(org, stack, gateway, start_worker):
    workers = [start_worker(f"load-{i}") for i in range(2)]
    for w in workers:
        wait_worker_ready(w)
    library_id = org.create_library("load")
    entities = [org.create_entity(library_id, f"person {i}") for i in range(8)]
    for i, entity_id in enumerate(entities):
        org.add_identifier(entity_id, png(i))
    images = [png(100 + i) for i in range(16)]
    # Jobs train on a library of their own with one identifier: the sleeper reads every identifier of its
    # library, so training on the one the uploads grow would make each job slower than the last.
    train_library_id = org.create_library("load-train")
    org.add_identifier(org.create_entity(train_library_id, "trainee"), png(99))
    pids = {"gateway": gateway.process.pid, **{f"worker {i}": w.pid for i, w in enumerate(workers)}}

    samples: dict[str, list[int]] = {name: [] for name in pids}
    warm: dict[str, int] = {}
    stop_sampling = threading.Event()

    def sample() -> None:
        started = time.monotonic()
        for _ in range(100_000):
            for name, pid in pids.items():
                samples[name].append(_rss(pid))
            if not warm and time.monotonic() - started >= WARM_UP:
                warm.update({name: values[-1] for name, values in samples.items()})
            if stop_sampling.wait(0.25):
                return

    latencies: list[float] = []
    kinds: Counter[str] = Counter()
    errors: list[str] = []
    jobs: list[str] = []

    async def client(index: int, http: httpx.AsyncClient, deadline: float) -> None:
        rng = random.Random(index)
        for _ in range(1_000_000):
            if time.monotonic() >= deadline:
                return
            roll = rng.random()
            t0 = time.monotonic()
            try:
                if roll < 0.6:
                    kind = "read"
                    response = await http.post("/v3/graphql", json={"query": GET_IDENTIFIERS, "variables": {"id": rng.choice(entities)}})
                    replies = [response]
                elif roll < 0.85:
                    kind = "upload"
                    response = await http.post("/v3/graphql", data={"query": UPLOAD % rng.choice(entities)},
                                               files={"file": ("x.png", rng.choice(images), "image/png")})
                    replies = [response]
                else:
                    kind = "createJob"
                    model = await http.post("/v3/graphql", json={"query": CREATE_MODEL, "variables": {"l": train_library_id}})
                    replies = [model]
                    model_id = (model.json().get("data") or {}).get("createLibraryEngineModel", {}).get("id") if model.status_code == 200 else None
                    if model_id:
                        payload = {"mode": "library-train", "libraryId": train_library_id, "libraryEngineModelId": model_id,
                                   "config": {"seconds": 0, "steps": 1}}
                        response = await http.post("/v3/graphql", json={"query": CREATE_JOB, "variables": {
                            "t": [{"engineId": "test-sleeper", "payload": payload}]}})
                        replies.append(response)
                        data = response.json().get("data") if response.status_code == 200 else None
                        if data and data.get("createJob"):
                            jobs.append(data["createJob"]["id"])
            except httpx.HTTPError as exc:
                errors.append(f"{kind}: {exc!r}")
                continue
            latencies.append(time.monotonic() - t0)
            kinds[kind] += 1
            for response in replies:
                if response.status_code != 200 or response.json().get("errors"):
                    errors.append(f"{kind}: HTTP {response.status_code} {response.text[:200]}")

    async def run() -> None:
        # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them under a request.
        limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS, keepalive_expiry=2)
        async with httpx.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {org.token}"},
                                     timeout=60, limits=limits) as http:
            deadline = time.monotonic() + SECONDS
            await asyncio.gather(*(client(i, http, deadline) for i in range(CLIENTS)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    asyncio.run(run())
    elapsed = time.monotonic() - t0

    # Every created job is accounted for: each completes (counted in the database).
    drain_started = time.monotonic()
    wait_for(
        lambda: stack.db.fetchval("SELECT count(*) FROM jobs WHERE org_id = $1 AND status = 'complete'", org.id) >= len(jobs),
        timeout=max(120.0, len(jobs) * 0.5), interval=0.5, what=f"all {len(jobs)} jobs to complete",
    )
    drain = time.monotonic() - drain_started
    stop_sampling.set()
    sampler.join(5)
    final = {name: _rss(pid) for name, pid in pids.items()}
    by_status = dict(stack.db.fetch("SELECT status, count(*) FROM jobs WHERE org_id = $1 GROUP BY status", org.id))
    identifiers = stack.db.fetchval("SELECT count(*) FROM entity_identifiers WHERE org_id = $1", org.id)

    mb = 1024 * 1024
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) if ordered else 0.0
    p95 = ordered[int(len(ordered) * 0.95) - 1] if ordered else 0.0
    print(
        f"\nload: {CLIENTS} clients for {SECONDS:.0f} s ({elapsed:.1f} s): {len(latencies)} operations "
        f"({sum(kinds.values())} ok replies; {dict(kinds)}), {len(latencies) / elapsed:.0f} ops/s, errors {len(errors)}\n"
        f"latency p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {ordered[-1] * 1000 if ordered else 0:.0f} ms\n"
        f"jobs created {len(jobs)}, by status {by_status}, drained in {drain:.1f} s; identifiers stored {identifiers}"
    )
    for name in pids:
        print(f"RSS {name}: after warm-up {warm.get(name, 0) / mb:.0f} MB, peak {max(samples[name] or [0]) / mb:.0f} MB, "
              f"final {final[name] / mb:.0f} MB")
    assert errors == [], f"{len(errors)} errors, first: {errors[:5]}"
    assert len(jobs) == by_status.get("complete", 0) and set(by_status) == {"complete"}, by_status
    assert len(ordered) > 0
    for name in pids:
        assert final[name] <= 2 * warm[name] + 100 * mb, (name, warm[name], final[name])
