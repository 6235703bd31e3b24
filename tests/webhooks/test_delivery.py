"""Deliveries: a finished job and training reach the receiver signed; failures are retried with backoff and
recorded; the outbound address rules hold at delivery time; 410 Gone disables the webhook."""

from __future__ import annotations

import json
import uuid

from tests.support.waits import wait_for, wait_job
from tests.webhooks.conftest import HANG, create_webhook, deliveries, verify, webhook
from tests.worker.conftest import library_with_faces, sleeper_job

REDELIVER = "mutation($id: ID!) { redeliverWebhook(deliveryId: $id) { id status attempts } }"


def _finished_job(org, library_id: str, **config) -> str:
    job_id, _, _ = sleeper_job(org, library_id, **config)
    return job_id


def _delivery_when(org, webhook_id: str, check, what: str, worker=None) -> dict:
    return wait_for(lambda: next((d for d in deliveries(org, webhook_id) if check(d)), None), timeout=60,
                    what=what, worker=worker)


def test_a_finished_training_is_delivered_signed(hooks_org, receiver, sender):
    hook = create_webhook(hooks_org, receiver.url, ["job_complete", "training_complete", "job_failed"])
    library_id = library_with_faces(hooks_org, people=2)
    job_id, _, model_id = sleeper_job(hooks_org, library_id)
    worker = sender()
    wait_job(hooks_org, job_id, "complete", worker=worker)
    received = receiver.wait_for_requests(2, worker=worker)

    bodies = {json.loads(r.body)["type"]: (r, json.loads(r.body)) for r in received}
    assert set(bodies) == {"job_complete", "training_complete"}  # job_failed did not happen; nothing else subscribed
    job_request, job_body = bodies["job_complete"]
    assert job_body["organizationId"] == str(hooks_org.id)
    assert job_body["data"]["jobId"] == job_id and job_body["data"]["status"] == "complete"
    assert job_body["data"]["libraryId"] == library_id and job_body["data"]["engineIds"] == ["test-sleeper"]
    assert job_body["createdAt"].endswith("Z")
    training_request, training_body = bodies["training_complete"]
    assert training_body["data"]["libraryEngineModelId"] == model_id
    assert training_body["data"]["trainJobId"] == job_id and training_body["data"]["trainStatus"] == "complete"

    for request, body in ((job_request, job_body), (training_request, training_body)):
        assert request.path == "/hooks/engineshed"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-engineshed-event"] == body["type"]
        assert request.headers["x-engineshed-delivery"] == body["id"]
        assert verify(hook["secret"], request), request.headers
        assert not verify("whsec_wrong", request)
        tampered = type(request)(request.at, request.path, request.headers, request.body.replace(b"complete", b"failed!!"))
        assert not verify(hook["secret"], tampered)

    delivered = _delivery_when(hooks_org, hook["id"], lambda d: d["event"] == "job_complete", "the job's delivery")
    assert delivered["id"] == job_body["id"]
    wait_for(lambda: all(d["status"] == "delivered" for d in deliveries(hooks_org, hook["id"])),
             what="both deliveries recorded as delivered")
    records = deliveries(hooks_org, hook["id"])
    assert all(d["attempts"] == 1 and d["responseStatus"] == 200 and d["deliveredDateTime"] for d in records)
    shown = webhook(hooks_org, hook["id"])
    assert shown["lastDeliveryStatus"] == "delivered" and shown["lastDeliveredDateTime"] is not None
    assert shown["lastDeliveryId"] in {d["id"] for d in records}


def test_a_failing_receiver_is_retried_with_growing_waits_until_it_answers(hooks_org, receiver, sender):
    receiver.answer([500, 503, 200])
    hook = create_webhook(hooks_org, receiver.url, ["job_complete"])
    library_id = library_with_faces(hooks_org)
    worker = sender()
    job_id = _finished_job(hooks_org, library_id)
    received = receiver.wait_for_requests(3, worker=worker)
    assert len({r.headers["x-engineshed-delivery"] for r in received}) == 1  # one delivery, tried three times
    assert len({r.body for r in received}) == 1  # the same body on every try
    assert all(verify(hook["secret"], r) for r in received)
    assert json.loads(received[0].body)["data"]["jobId"] == job_id
    # Backoff 0.4 s doubling, each wait scaled by [0.5, 1): at least 0.2 s, then at least 0.4 s.
    first_wait, second_wait = received[1].at - received[0].at, received[2].at - received[1].at
    assert first_wait >= 0.2 and second_wait >= 0.4, (first_wait, second_wait)
    done = _delivery_when(hooks_org, hook["id"], lambda d: d["status"] == "delivered", "the delivery to succeed", worker)
    assert done["attempts"] == 3 and done["responseStatus"] == 200
    assert done["lastError"] is None  # the last try delivered
    # What the failed tries answered is in the sender's log, the body cut to its first 300 bytes.
    said = "HTTP 503: " + ("receiver says no " * 100)[:300].strip()
    assert f"pending ({said})" in worker.output() and "HTTP 500: receiver says no" in worker.output()


def test_a_delivery_that_keeps_failing_is_given_up_and_can_be_sent_again(hooks_org, receiver, sender):
    receiver.answer([500])
    hook = create_webhook(hooks_org, receiver.url, ["job_complete", "job_failed"])
    library_id = library_with_faces(hooks_org)
    worker = sender(ENGINESHED_WEBHOOK_MAX_ATTEMPTS="2")
    job_id = _finished_job(hooks_org, library_id, fail="engine")
    failed = _delivery_when(hooks_org, hook["id"], lambda d: d["status"] == "failed", "the delivery to be given up", worker)
    assert failed["event"] == "job_failed" and failed["attempts"] == 2 and failed["responseStatus"] == 500
    assert "HTTP 500" in failed["lastError"] and "gave up after 2 tries" in failed["lastError"]
    assert failed["data"]["jobId"] == job_id and "the sleeper was asked to fail" in failed["data"]["error"]
    assert failed["nextAttemptDateTime"] is None
    assert len(receiver.received()) == 2
    shown = webhook(hooks_org, hook["id"])
    assert shown["lastDeliveryStatus"] == "failed" and shown["lastDeliveryAttempts"] == 2
    assert shown["lastDeliveredDateTime"] is None and "HTTP 500" in shown["lastError"]

    receiver.answer([200])
    again = hooks_org.client.query(REDELIVER, id=failed["id"]).ok()["redeliverWebhook"]
    assert again == {"id": failed["id"], "status": "pending", "attempts": 0}
    done = _delivery_when(hooks_org, hook["id"], lambda d: d["status"] == "delivered", "the redelivery", worker)
    assert done["id"] == failed["id"] and done["attempts"] == 1
    last = receiver.received()[-1]
    assert last.headers["x-engineshed-delivery"] == failed["id"] and verify(hook["secret"], last)


def test_a_private_address_is_refused_at_delivery_time(hooks_org, receiver, start_worker):
    """Registered where loopback was allowed, sent by a worker where it is not: refused and recorded, never sent."""
    hook = create_webhook(hooks_org, receiver.url, ["job_complete"])
    library_id = library_with_faces(hooks_org)
    worker = start_worker()  # the stack's settings: no private addresses
    _finished_job(hooks_org, library_id)
    refused = _delivery_when(hooks_org, hook["id"], lambda d: d["status"] == "failed", "the delivery to be refused", worker)
    assert refused["attempts"] == 1 and refused["responseStatus"] is None
    assert refused["lastError"].startswith("refused:") and "non-public address" in refused["lastError"]
    assert receiver.received() == []


def test_410_gone_disables_the_webhook_until_it_is_enabled_again(hooks_org, receiver, sender, stack):
    receiver.answer([410, 200])
    hook = create_webhook(hooks_org, receiver.url, ["job_complete"])
    library_id = library_with_faces(hooks_org)
    worker = sender()
    _finished_job(hooks_org, library_id)
    wait_for(lambda: not webhook(hooks_org, hook["id"])["enabled"], what="the webhook to be disabled", worker=worker)
    shown = webhook(hooks_org, hook["id"])
    assert "410" in shown["disabledReason"] and shown["lastDeliveryStatus"] == "failed"
    assert len(receiver.received()) == 1

    # While disabled, events queue nothing for it.
    second = _finished_job(hooks_org, library_id)
    wait_job(hooks_org, second, "complete", worker=worker)
    assert len(deliveries(hooks_org, hook["id"])) == 1

    enabled = hooks_org.client.query(
        'mutation($id: ID!) { updateWebhook(input: {id: $id, enabled: true}) { enabled disabledReason } }', id=hook["id"]
    ).ok()["updateWebhook"]
    assert enabled == {"enabled": True, "disabledReason": None}
    _finished_job(hooks_org, library_id)
    receiver.wait_for_requests(2, worker=worker)
    _delivery_when(hooks_org, hook["id"], lambda d: d["status"] == "delivered", "the next delivery", worker)
    ids = {uuid.UUID(d["id"]) for d in deliveries(hooks_org, hook["id"])}
    assert stack.db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE id = ANY($1::uuid[])", list(ids)) == 2


def test_two_workers_send_each_delivery_once(hooks_org, receiver, sender):
    """Deliveries are claimed under a lease with SKIP LOCKED: two senders never send the same one twice."""
    hook = create_webhook(hooks_org, receiver.url, ["job_complete", "job_cancelled"])
    library_id = library_with_faces(hooks_org)
    cancelled, _, _ = sleeper_job(hooks_org, library_id)
    hooks_org.client.query('mutation($id: ID!) { cancelJob(id: $id) { id } }', id=cancelled).ok()
    completed = [_finished_job(hooks_org, library_id) for _ in range(4)]
    workers = [sender(), sender()]
    received = receiver.wait_for_requests(5, worker=workers[0])
    for job_id in completed:
        wait_job(hooks_org, job_id, "complete", worker=workers[1])
    wait_for(lambda: all(d["status"] == "delivered" for d in deliveries(hooks_org, hook["id"])),
             what="every delivery recorded as delivered")
    received = receiver.received()
    assert len(received) == 5
    bodies = [json.loads(r.body) for r in received]
    assert len({b["id"] for b in bodies}) == 5
    assert sorted((b["type"], b["data"]["jobId"]) for b in bodies) == sorted(
        [("job_cancelled", cancelled)] + [("job_complete", j) for j in completed]
    )
    assert all(d["attempts"] == 1 for d in deliveries(hooks_org, hook["id"]))


def test_a_redirect_is_not_followed_and_a_silent_receiver_times_out(hooks_org, receiver, sender):
    receiver.answer([302, HANG, 200])
    hook = create_webhook(hooks_org, receiver.url, ["job_complete"])
    library_id = library_with_faces(hooks_org)
    worker = sender(ENGINESHED_WEBHOOK_MAX_ATTEMPTS="2")
    _finished_job(hooks_org, library_id)
    failed = _delivery_when(hooks_org, hook["id"], lambda d: d["status"] == "failed", "the delivery to be given up", worker)
    assert failed["attempts"] == 2 and failed["responseStatus"] is None
    assert failed["lastError"] == "no answer within 3 s (gave up after 2 tries)"
    assert [r.path for r in receiver.received()] == ["/hooks/engineshed"] * 2  # /elsewhere never asked for
    assert "HTTP 302: redirects are not followed" in worker.output()
