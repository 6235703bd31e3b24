"""Webhooks: `webhooks`, `webhook`, `webhookDeliveries`, `createWebhook`, `updateWebhook`, `deleteWebhook`,
`rotateWebhookSecret`, `redeliverWebhook`. Admin tokens only."""

from __future__ import annotations

from enum import Enum

import strawberry
from strawberry import UNSET

from gateway.schema.common import DeletePayload, Paginated, sent
from gateway.schema.context import Info
from gateway.schema.scalars import DateTime, JSONData
from gateway.services.webhooks import registry as webhook_service
from storage.queries.webhooks import Delivery
from storage.queries.webhooks import Webhook as WebhookRow


@strawberry.enum(description="What a webhook is told about; each is the `type` of the deliveries it receives. "
                             "job_*: a job finished; training_*: a library engine model's training ended; "
                             "model_version_*: a registered model version passed or failed its checks.")
class WebhookEvent(Enum):
    job_complete = "job_complete"
    job_failed = "job_failed"
    job_cancelled = "job_cancelled"
    training_complete = "training_complete"
    training_failed = "training_failed"
    model_version_ready = "model_version_ready"
    model_version_failed = "model_version_failed"


@strawberry.enum(description="pending: waiting for its next try; delivered: answered 2xx; failed: out of tries, "
                             "refused by the outbound address rules, or answered 410 Gone.")
class WebhookDeliveryStatus(Enum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


@strawberry.type(description="One event sent (or to be sent) to one webhook.")
class WebhookDelivery:
    id: strawberry.ID = strawberry.field(description="Also the body's `id` and the X-Engineshed-Delivery header: "
                                                     "the same on every try, so receivers can skip repeats.")
    webhook_id: strawberry.ID
    event: WebhookEvent
    status: WebhookDeliveryStatus
    attempts: int = strawberry.field(description="Tries so far.")
    response_status: int | None = strawberry.field(description="The HTTP status of the last try's answer, if any.")
    last_error: str | None = strawberry.field(description="Why the last try did not deliver.")
    data: JSONData = strawberry.field(description="The body's `data`.")
    created_date_time: DateTime
    last_attempt_date_time: DateTime | None
    next_attempt_date_time: DateTime | None = strawberry.field(description="When a pending delivery is tried next.")
    delivered_date_time: DateTime | None

    @classmethod
    def from_row(cls, row: Delivery) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(str(row.id)), webhook_id=strawberry.ID(str(row.webhook_id)), event=WebhookEvent(row.event),
            status=WebhookDeliveryStatus(row.status), attempts=row.attempts, response_status=row.last_status_code,
            last_error=row.last_error, data=row.data, created_date_time=row.created_at,
            last_attempt_date_time=row.last_attempt_at,
            next_attempt_date_time=row.next_attempt_at if row.status == "pending" else None,
            delivered_date_time=row.delivered_at,
        )


@strawberry.type(name="WebhookDeliveryList")
class WebhookDeliveryList(Paginated[WebhookDelivery]):
    pass


@strawberry.type(description="A URL of the organization that is sent its events, signed with the webhook's secret "
                             "(never shown again after createWebhook or rotateWebhookSecret).")
class Webhook:
    id: strawberry.ID
    url: str
    events: list[WebhookEvent]
    description: str | None
    enabled: bool = strawberry.field(description="Disabled webhooks are sent nothing; their waiting deliveries are "
                                                 "sent once they are enabled again.")
    disabled_reason: str | None = strawberry.field(description="Why it was disabled, when the gateway did it "
                                                                  "(the receiver answered 410 Gone).")
    created_date_time: DateTime
    modified_date_time: DateTime
    last_delivery_id: strawberry.ID | None = strawberry.field(description="The newest delivery, whatever became of it.")
    last_event: WebhookEvent | None
    last_delivery_status: WebhookDeliveryStatus | None
    last_delivery_attempts: int | None
    last_response_status: int | None
    last_error: str | None
    last_attempt_date_time: DateTime | None
    last_delivered_date_time: DateTime | None = strawberry.field(description="The newest 2xx answer.")

    @classmethod
    def fields_of(cls, row: WebhookRow) -> dict:
        return {
            "id": strawberry.ID(str(row.id)), "url": row.url, "events": [WebhookEvent(e) for e in row.events],
            "description": row.description, "enabled": row.enabled, "disabled_reason": row.disabled_reason,
            "created_date_time": row.created_at, "modified_date_time": row.modified_at,
            "last_delivery_id": strawberry.ID(str(row.last_delivery_id)) if row.last_delivery_id else None,
            "last_event": WebhookEvent(row.last_event) if row.last_event else None,
            "last_delivery_status": WebhookDeliveryStatus(row.last_delivery_status) if row.last_delivery_status else None,
            "last_delivery_attempts": row.last_delivery_attempts, "last_response_status": row.last_status_code,
            "last_error": row.last_error, "last_attempt_date_time": row.last_attempt_at,
            "last_delivered_date_time": row.last_delivered_at,
        }

    @classmethod
    def from_row(cls, row: WebhookRow) -> Webhook:
        return cls(**cls.fields_of(row))


@strawberry.type(description="A webhook with its secret: shown only here. Verify each delivery by computing "
                             "HMAC-SHA256 with it over `<X-Engineshed-Timestamp>.<body>`.")
class CreatedWebhook(Webhook):
    secret: str


@strawberry.type(name="WebhookList")
class WebhookList(Paginated[Webhook]):
    pass


@strawberry.input
class CreateWebhook:
    url: str = strawberry.field(description="http or https; its host must resolve to public addresses unless the "
                                            "operator allows others (ENGINESHED_FETCH_ALLOWED_HOSTS). At most 2048 characters.")
    events: list[WebhookEvent]
    description: str | None = strawberry.field(default=None, description="At most 500 characters.")


@strawberry.input
class UpdateWebhook:
    id: strawberry.ID
    url: str | None = UNSET
    events: list[WebhookEvent] | None = UNSET
    description: str | None = UNSET
    enabled: bool | None = UNSET


@strawberry.type
class WebhookQuery:
    @strawberry.field(description="The organization's webhooks, oldest first; admin tokens only.")
    async def webhooks(self, info: Info, offset: int | None = 0, limit: int | None = 30) -> WebhookList:
        page = await webhook_service.list_page(info.context.resources, info.context.principal, offset=offset, limit=limit)
        return WebhookList.of(page, [Webhook.from_row(r) for r in page.records])

    @strawberry.field(description="One webhook of the organization; admin tokens only.")
    async def webhook(self, info: Info, id: strawberry.ID) -> Webhook:
        return Webhook.from_row(await webhook_service.get(info.context.resources, info.context.principal, id))

    @strawberry.field(description="A webhook's deliveries, newest first (finished ones are kept 30 days); admin "
                                  "tokens only.")
    async def webhook_deliveries(
        self, info: Info, webhook_id: strawberry.ID, status: list[WebhookDeliveryStatus] | None = None,
        offset: int | None = 0, limit: int | None = 30,
    ) -> WebhookDeliveryList:
        statuses = [s.value for s in status] if status else None
        page = await webhook_service.deliveries(
            info.context.resources, info.context.principal, webhook_id, statuses=statuses, offset=offset, limit=limit
        )
        return WebhookDeliveryList.of(page, [WebhookDelivery.from_row(r) for r in page.records])


@strawberry.type
class WebhookMutation:
    @strawberry.mutation(description="Register a URL for some of the organization's events; admin tokens only. The "
                                     "answer's `secret` is shown only here.")
    async def create_webhook(self, info: Info, input: CreateWebhook) -> CreatedWebhook:
        secret, row = await webhook_service.create(
            info.context.resources, info.context.principal, url=input.url, events=[e.value for e in input.events],
            description=input.description,
        )
        return CreatedWebhook(secret=secret, **Webhook.fields_of(row))

    @strawberry.mutation(description="Change a webhook's URL, events, description, or whether it is enabled; "
                                     "admin tokens only.")
    async def update_webhook(self, info: Info, input: UpdateWebhook) -> Webhook:
        changes = sent(input, "url", "events", "description", "enabled")
        if changes.get("events") is not None:
            changes["events"] = [e.value for e in changes["events"]]
        row = await webhook_service.update(info.context.resources, info.context.principal, input.id, changes)
        return Webhook.from_row(row)

    @strawberry.mutation(description="Delete a webhook and its deliveries; admin tokens only.")
    async def delete_webhook(self, info: Info, id: strawberry.ID) -> DeletePayload:
        deleted = await webhook_service.delete(info.context.resources, info.context.principal, id)
        return DeletePayload(id=strawberry.ID(deleted), message=f"webhook {deleted} deleted")

    @strawberry.mutation(description="Replace a webhook's secret with a new one, shown only in this answer and used "
                                     "from the next try on; admin tokens only.")
    async def rotate_webhook_secret(self, info: Info, id: strawberry.ID) -> CreatedWebhook:
        secret, row = await webhook_service.rotate_secret(info.context.resources, info.context.principal, id)
        return CreatedWebhook(secret=secret, **Webhook.fields_of(row))

    @strawberry.mutation(description="Send a delivery again from its first try (same ID and body); admin tokens only.")
    async def redeliver_webhook(self, info: Info, delivery_id: strawberry.ID) -> WebhookDelivery:
        row = await webhook_service.redeliver(info.context.resources, info.context.principal, delivery_id)
        return WebhookDelivery.from_row(row)
