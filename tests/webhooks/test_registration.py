"""Registering webhooks: the secret shown once, the outbound address rules, bad input, the cap, and tenancy."""

from __future__ import annotations

import uuid

import pytest

from tests.webhooks.conftest import (
    CREATE,
    DELIVERIES,
    MAX_PER_ORG,
    WEBHOOK_FIELDS,
    create_webhook,
    webhook,
)

PUBLIC_URL = "https://93.184.215.14/hooks"  # a public address: registering it resolves nothing and sends nothing
UPDATE = f"mutation($input: UpdateWebhook!) {{ updateWebhook(input: $input) {{ {WEBHOOK_FIELDS} }} }}"
ROTATE = f"mutation($id: ID!) {{ rotateWebhookSecret(id: $id) {{ {WEBHOOK_FIELDS} secret }} }}"
DELETE = "mutation($id: ID!) { deleteWebhook(id: $id) { id message } }"
LIST = f"query {{ webhooks {{ count totalCount records {{ {WEBHOOK_FIELDS} }} }} }}"
REDELIVER = "mutation($id: ID!) { redeliverWebhook(deliveryId: $id) { id status } }"


def _stored(org) -> int:
    return org.stack.db.fetchval("SELECT count(*) FROM webhooks WHERE org_id = $1", org.id)


def test_a_webhook_is_created_with_a_secret_shown_only_then(hooks_org, receiver):
    created = create_webhook(hooks_org, receiver.url, ["job_complete", "training_failed", "job_complete"], "ci hooks")
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    assert created["url"] == receiver.url
    assert created["events"] == ["job_complete", "training_failed"]  # repeats dropped, in the list's order
    assert created["description"] == "ci hooks" and created["enabled"] is True
    assert created["lastDeliveryId"] is None and created["lastDeliveredDateTime"] is None

    listed = hooks_org.client.query(LIST).ok()["webhooks"]
    assert listed["totalCount"] == 1 and listed["records"][0]["id"] == created["id"]
    assert created["secret"] not in str(listed)
    # No field of Webhook shows the secret again.
    asked = hooks_org.client.query('query($id: ID!) { webhook(id: $id) { id secret } }', id=created["id"])
    assert asked.errors and created["secret"] not in str(asked.body)

    rotated = hooks_org.client.query(ROTATE, id=created["id"]).ok()["rotateWebhookSecret"]
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
    stored = hooks_org.stack.db.fetchval("SELECT secret FROM webhooks WHERE id = $1", uuid.UUID(created["id"]))
    assert stored == rotated["secret"]


def test_an_update_changes_only_what_was_sent(hooks_org, receiver):
    created = create_webhook(hooks_org, receiver.url, ["job_complete"], "first")
    updated = hooks_org.client.query(UPDATE, input={"id": created["id"], "events": ["job_failed", "job_cancelled"]}).ok()
    updated = updated["updateWebhook"]
    assert updated["events"] == ["job_failed", "job_cancelled"]
    assert updated["url"] == receiver.url and updated["description"] == "first"
    off = hooks_org.client.query(UPDATE, input={"id": created["id"], "enabled": False, "description": None}).ok()
    assert off["updateWebhook"]["enabled"] is False and off["updateWebhook"]["description"] is None
    assert webhook(hooks_org, created["id"])["events"] == ["job_failed", "job_cancelled"]


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/hook",
    "http://10.1.2.3/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/hook",
    "http://[::ffff:10.0.0.1]/hook",
    "http://192.168.0.10/hook",
    "http://localhost/hook",
])
def test_a_private_address_is_refused_at_registration(org, url):
    """The default gateway allows no private addresses (ENGINESHED_FETCH_ALLOWED_HOSTS unset)."""
    reply = org.client.query(CREATE, url=url, events=["job_complete"])
    assert reply.error_code == "invalid_input", reply.body
    assert "not allowed" in reply.error_message or "resolve" in reply.error_message, reply.error_message
    assert _stored(org) == 0


def test_moving_a_webhook_to_a_private_address_is_refused(org):
    created = create_webhook(org, PUBLIC_URL, ["job_complete"])
    reply = org.client.query(UPDATE, input={"id": created["id"], "url": "http://10.0.0.7/hook"})
    assert reply.error_code == "invalid_input", reply.body
    assert webhook(org, created["id"])["url"] == PUBLIC_URL


@pytest.mark.parametrize("url, why", [
    ("ftp://93.184.215.14/hook", "only http and https"),
    ("file:///etc/passwd", "only http and https"),
    ("93.184.215.14/hook", "only http and https"),
    ("http:///hook", "no host"),
    ("https://user:pw@93.184.215.14/hook", "credentials"),
    ("https://93.184.215.14:99999/hook", "not a valid URL"),
    ("https://93.184.215.14/hook#part", "fragment"),
    ("https://93.184.215.14/ho ok", "spaces"),
    ("https://93.184.215.14/" + "a" * 2100, "at most 2048"),
    ("", "http or https"),
])
def test_a_bad_url_is_invalid_input(org, url, why):
    reply = org.client.query(CREATE, url=url, events=["job_complete"])
    assert reply.error_code == "invalid_input", reply.body
    assert why in reply.error_message, reply.error_message
    assert _stored(org) == 0


def test_bad_events_and_descriptions_are_invalid_input(org):
    empty = org.client.query(CREATE, url=PUBLIC_URL, events=[])
    assert empty.error_code == "invalid_input" and "at least one" in empty.error_message
    unknown = org.client.query(CREATE, url=PUBLIC_URL, events=["job_exploded"])
    assert unknown.errors and unknown.status < 500 and not unknown.data, unknown.body
    long = org.client.query(CREATE, url=PUBLIC_URL, events=["job_complete"], d="x" * 501)
    assert long.error_code == "invalid_input" and "at most 500" in long.error_message
    nul = org.client.query(CREATE, url=PUBLIC_URL, events=["job_complete"], d="a\u0000b")
    assert nul.error_code == "invalid_input", nul.body
    assert _stored(org) == 0
    created = create_webhook(org, PUBLIC_URL, ["job_complete"])
    for change in ({"events": []}, {"events": None}, {"url": None}, {"enabled": None}):
        reply = org.client.query(UPDATE, input={"id": created["id"], **change})
        assert reply.error_code == "invalid_input", (change, reply.body)
    assert webhook(org, created["id"])["events"] == ["job_complete"]
    paged = org.client.query("query { webhooks(limit: -1) { count } }")
    assert paged.error_code == "invalid_input"


def test_an_organization_may_register_only_so_many_webhooks(hooks_org, receiver):
    for i in range(MAX_PER_ORG):
        create_webhook(hooks_org, f"{receiver.url}/{i}", ["job_complete"])
    reply = hooks_org.client.query(CREATE, url=receiver.url, events=["job_complete"])
    assert reply.error_code == "capacity_exceeded" and str(MAX_PER_ORG) in reply.error_message, reply.body
    assert _stored(hooks_org) == MAX_PER_ORG
    first = hooks_org.client.query(LIST).ok()["webhooks"]["records"][0]["id"]
    hooks_org.client.query(DELETE, id=first).ok()
    create_webhook(hooks_org, receiver.url, ["job_complete"])  # room again


def test_another_organization_sees_and_changes_nothing(hooks_org, hooks_other_org, receiver, stack):
    created = create_webhook(hooks_org, receiver.url, ["job_complete"])
    delivery_id = uuid.uuid4()
    stack.db.execute(
        "INSERT INTO webhook_deliveries (id, org_id, webhook_id, event, data, status) VALUES ($1, $2, $3, 'job_complete', '{}', 'failed')",
        delivery_id, hooks_org.id, uuid.UUID(created["id"]),
    )
    assert hooks_other_org.client.query(LIST).ok()["webhooks"]["totalCount"] == 0
    made_up = str(uuid.uuid4())
    other = hooks_other_org.client
    for wid in (created["id"], made_up, "not-an-id"):
        for query, args in (
            ("query($id: ID!) { webhook(id: $id) { id } }", {"id": wid}),
            (DELIVERIES, {"id": wid}),
            (UPDATE, {"input": {"id": wid, "description": "mine now"}}),
            (UPDATE, {"input": {"id": wid, "url": "http://10.0.0.1/"}}),  # not_found before the URL is judged
            (ROTATE, {"id": wid}),
            (DELETE, {"id": wid}),
        ):
            reply = other.query(query, **args)
            assert reply.error_code == "not_found", (query, wid, reply.body)
    for did in (str(delivery_id), made_up):
        assert other.query(REDELIVER, id=did).error_code == "not_found"
    mine = webhook(hooks_org, created["id"])
    assert mine["description"] is None and mine["url"] == receiver.url
    assert stack.db.fetchval("SELECT status FROM webhook_deliveries WHERE id = $1", delivery_id) == "failed"
    # A read token of the organization itself may not manage its webhooks either.
    reader = hooks_org.client_for("read")
    assert reader.query(LIST).error_code == "not_allowed"
    assert reader.query(DELETE, id=created["id"]).error_code == "not_allowed"
    assert reader.query(CREATE, url=receiver.url, events=["job_complete"]).error_code == "not_allowed"
    # The owner deletes it, with its deliveries.
    hooks_org.client.query(DELETE, id=created["id"]).ok()
    assert hooks_org.client.query("query($id: ID!) { webhook(id: $id) { id } }", id=created["id"]).error_code == "not_found"
    assert stack.db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE id = $1", delivery_id) == 0
