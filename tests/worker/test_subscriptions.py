"""jobUpdated and taskUpdated over graphql-transport-ws on /v3/graphql, as a websocket client speaks it."""

from __future__ import annotations

import json
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.worker.conftest import sleeper_job

JOB_UPDATED = """subscription($id: ID!) { jobUpdated(id: $id) { id status tasks { records { status progress } } } }"""
TASK_UPDATED = """subscription($id: ID!) { taskUpdated(jobId: $id) { id status progress } }"""


def ws_url(org) -> str:
    return org.gateway.url.replace("http://", "ws://") + "/v3/graphql"


def subscribe(org, query: str, variables: dict[str, Any], token: str | None, *, on_first=None) -> list[dict[str, Any]]:
    """Every message the server sends for one subscription, up to and including its end."""
    messages: list[dict[str, Any]] = []
    with connect(ws_url(org), subprotocols=["graphql-transport-ws"], open_timeout=30) as ws:
        init: dict[str, Any] = {"type": "connection_init"}
        if token is not None:
            init["payload"] = {"Authorization": f"Bearer {token}"}
        ws.send(json.dumps(init))
        try:
            ack = json.loads(ws.recv(timeout=30))
        except ConnectionClosed as closed:  # refused at connection_init
            return [{"type": "closed", "code": closed.rcvd.code if closed.rcvd else None,
                     "reason": closed.rcvd.reason if closed.rcvd else None}]
        if ack["type"] != "connection_ack":
            return [ack]
        ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}}))
        try:
            while True:
                message = json.loads(ws.recv(timeout=60))
                if message.get("type") == "ping":
                    ws.send(json.dumps({"type": "pong"}))
                    continue
                messages.append(message)
                if len(messages) == 1 and on_first is not None:
                    on_first()
                if message["type"] in ("complete", "error") or (message["type"] == "next" and message["payload"].get("errors")):
                    return messages
        except ConnectionClosed as closed:
            messages.append({"type": "closed", "code": closed.rcvd.code if closed.rcvd else None})
            return messages


def test_job_updated_sends_the_current_state_then_each_change_until_complete(org, start_worker):
    library_id = org.create_library()
    job_id, _, _ = sleeper_job(org, library_id, seconds=2, steps=4)

    messages = subscribe(org, JOB_UPDATED, {"id": job_id}, org.token, on_first=lambda: start_worker())
    assert messages[-1] == {"id": "1", "type": "complete"}
    updates = [m["payload"]["data"]["jobUpdated"] for m in messages[:-1]]
    assert all(m["type"] == "next" for m in messages[:-1])
    assert updates[0]["id"] == job_id and updates[0]["status"] == "queued"  # the state when subscribing
    assert updates[-1]["status"] == "complete"
    assert updates[-1]["tasks"]["records"] == [{"status": "complete", "progress": 1.0}]
    assert any(u["status"] == "running" for u in updates)
    progress = [u["tasks"]["records"][0]["progress"] for u in updates]
    assert progress == sorted(progress)
    assert any(0 < p < 1 for p in progress), progress


def test_task_updated_follows_each_task_of_the_job(org, start_worker):
    library_id = org.create_library()
    job_id, task_id, _ = sleeper_job(org, library_id, seconds=1, steps=2)
    start_worker()
    messages = subscribe(org, TASK_UPDATED, {"id": job_id}, org.token)
    assert messages[-1]["type"] == "complete"
    updates = [m["payload"]["data"]["taskUpdated"] for m in messages[:-1]]
    assert {u["id"] for u in updates} == {task_id}
    assert updates[-1]["status"] == "complete" and updates[-1]["progress"] == 1.0


def test_a_connection_without_a_valid_token_is_closed_4403_at_connection_init(org):
    library_id = org.create_library()
    job_id, _, _ = sleeper_job(org, library_id)
    for token in (None, "es_not-a-token"):
        [refused] = subscribe(org, JOB_UPDATED, {"id": job_id}, token)
        assert refused == {"type": "closed", "code": 4403, "reason": "Forbidden"}


def test_another_organizations_job_cannot_be_followed(org, other_org):
    library_id = org.create_library()
    job_id, _, _ = sleeper_job(org, library_id)
    messages = subscribe(org, JOB_UPDATED, {"id": job_id}, other_org.token)
    [refused] = messages
    assert refused["type"] == "next" and refused["payload"]["data"] is None
    assert refused["payload"]["errors"][0]["extensions"]["code"] == "not_found"


def test_the_legacy_graphql_ws_protocol_refuses_a_bad_token_at_connection_init_too(org):
    with connect(ws_url(org), subprotocols=["graphql-ws"], open_timeout=30) as ws:
        ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": "Bearer es_not-a-token"}}))
        refused = json.loads(ws.recv(timeout=30))
        assert refused["type"] == "connection_error" and refused["payload"]["code"] == "authentication_error"
        try:
            ws.recv(timeout=30)
            raise AssertionError("the socket stayed open")
        except ConnectionClosed:
            pass
    # With a valid token the same protocol is acknowledged.
    with connect(ws_url(org), subprotocols=["graphql-ws"], open_timeout=30) as ws:
        ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {org.token}"}}))
        assert json.loads(ws.recv(timeout=30))["type"] == "connection_ack"


def test_an_authorization_that_is_not_text_is_refused_like_a_bad_token(org):
    with connect(ws_url(org), subprotocols=["graphql-transport-ws"], open_timeout=30) as ws:
        ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": 5}}))
        try:
            ws.recv(timeout=30)
            raise AssertionError("acknowledged")
        except ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4403
