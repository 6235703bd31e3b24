"""ENGINESHED_LOG_FORMAT=json: every line a gateway or a worker writes is one JSON object, and the lines of a
request, of an organization, of a job and of a task can be picked out by their IDs, even when many run at once."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from gateway.logs import JsonFormatter
from tests.conftest import ROOT, Gateway, Org, Process, Stack, make_org, start_gateway
from tests.reliability.conftest import library_with_images, train
from tests.support.waits import FINISHED, wait_for

QUERY = {"query": "{ libraries { count records { id name } } }"}


@pytest.fixture(scope="module")
def json_env(stack: Stack) -> dict[str, str]:
    return {**stack.env, "ENGINESHED_LOG_FORMAT": "json"}


@pytest.fixture(scope="module")
def json_gateway(json_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(json_env, tmp_path_factory.mktemp("json-logs"), "json-gateway")
    try:
        yield gw
    finally:
        gw.process.stop()


@pytest.fixture
def json_org(stack: Stack, json_gateway: Gateway) -> Iterator[Org]:
    o = make_org(stack, json_gateway, "jsonlogs")
    yield o
    o.close()


def records(process: Process) -> list[dict[str, Any]]:
    """The process's log, each line parsed: a line that is not one JSON object fails the test."""
    parsed = []
    for number, line in enumerate(process.output().splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {number} of {process.log_path.name} is not JSON: {line[:300]!r}") from None
        assert isinstance(record, dict), f"line {number} is JSON but not an object: {line[:300]!r}"
        assert {"time", "level", "logger", "message"} <= record.keys(), record
        assert record["time"].endswith("Z"), record["time"]
        parsed.append(record)
    return parsed


def post(gateway: Gateway, org: Org, request_id: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {org.token}"}
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    reply = httpx.post(gateway.url + "/v3/graphql", json=QUERY, headers=headers, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply


def lines_of(gateway: Gateway, request_id: str) -> list[dict[str, Any]]:
    return [r for r in records(gateway.process) if r.get("request_id") == request_id]


def test_a_request_id_sent_comes_back_and_marks_the_request_log_lines_with_the_organization(json_gateway, json_org):
    request_id = f"client-{uuid.uuid4().hex}"
    reply = post(json_gateway, json_org, request_id)

    assert reply.headers["X-Request-ID"] == request_id
    lines = wait_for(lambda: lines_of(json_gateway, request_id), timeout=10, what="the request's access log line")
    assert any(r["logger"] == "uvicorn.access" and "/v3/graphql" in r["message"] for r in lines), lines
    assert all(r["organization_id"] == str(json_org.id) for r in lines), lines


def test_a_request_without_a_sane_id_gets_a_new_one_back(json_gateway, json_org):
    generated = post(json_gateway, json_org).headers["X-Request-ID"]
    replaced = post(json_gateway, json_org, "two words\t" + "x" * 200).headers["X-Request-ID"]

    assert generated and replaced and generated != replaced
    assert " " not in replaced and len(replaced) <= 128
    wait_for(lambda: lines_of(json_gateway, replaced), timeout=10, what="the generated ID in the log")


def test_the_text_format_echoes_the_request_id_too(gateway, org):
    reply = post(gateway, org, "text-format-1")
    assert reply.headers["X-Request-ID"] == "text-format-1"
    assert not gateway.process.output().lstrip().startswith("{")  # text is still the default


def test_concurrent_requests_never_carry_each_others_ids(stack, json_gateway):
    orgs = [make_org(stack, json_gateway, "jsonlogs-a"), make_org(stack, json_gateway, "jsonlogs-b")]
    sent = {f"concurrent-{i}-{uuid.uuid4().hex[:8]}": orgs[i % 2] for i in range(40)}
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            replies = list(pool.map(lambda item: post(json_gateway, item[1], item[0]), sent.items()))
    finally:
        for o in orgs:
            o.close()

    assert [r.headers["X-Request-ID"] for r in replies] == list(sent)
    wait_for(lambda: {r.get("request_id") for r in records(json_gateway.process)} >= set(sent), timeout=10,
             what="a log line of every request")
    for record in records(json_gateway.process):
        if record.get("request_id") in sent:
            assert record.get("organization_id") == str(sent[record["request_id"]].id), record


def test_a_training_runs_worker_lines_carry_its_job_and_task_ids(json_env, json_gateway, json_org, start_worker):
    library_id = library_with_images(json_org, identifiers=2)
    job_id, task_id, _ = train(json_org.client, library_id, seconds=0.5, steps=2)
    worker = start_worker("json-worker", ENGINESHED_LOG_FORMAT="json")

    def finished() -> bool:
        status = json_org.stack.db.fetchval("SELECT status FROM jobs WHERE id = $1", uuid.UUID(job_id))
        return status in FINISHED

    wait_for(finished, timeout=90, what="the training job to finish", worker=worker)
    lines = wait_for(lambda: [r for r in records(worker) if task_id in r["message"]], timeout=10,
                     what="the worker's lines about the task", worker=worker)
    assert any("started" in r["message"] for r in lines), lines
    for record in lines:
        assert record.get("task_id") == task_id, record
        assert record.get("job_id") == job_id, record
        assert record.get("organization_id") == str(json_org.id), record
    # Lines about the worker itself name no task.
    ready = [r for r in records(worker) if "ready with engines" in r["message"]]
    assert ready and "task_id" not in ready[0]
    worker.stop()
    records(worker)  # what it wrote while stopping is JSON too


def test_every_line_of_the_json_gateway_log_is_one_json_object(json_gateway, json_org):
    post(json_gateway, json_org)
    assert any("ready" in r["message"] for r in records(json_gateway.process))


def test_a_logged_exception_stays_on_its_line_with_its_traceback():
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = logging.LogRecord("engineshed", logging.ERROR, __file__, 1, "failed: %s", ("x",), sys.exc_info())
    line = JsonFormatter().format(record)

    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "failed: x" and parsed["level"] == "ERROR"
    assert "Traceback" in parsed["exception"] and "ValueError: bad" in parsed["exception"]


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_bad_log_format_is_refused_at_start_naming_the_variable(stack, command):
    env = {**stack.env, "ENGINESHED_LOG_FORMAT": "xml"}
    done = subprocess.run([sys.executable, "-m", "gateway.cli", command], check=False, env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)

    assert done.returncode != 0
    assert "ENGINESHED_LOG_FORMAT" in done.stderr and "xml" in done.stderr, done.stderr
