"""Events pushed to tenants' webhook endpoints: the catalogue an endpoint subscribes from, and the
inputs of the ``EventDelivery`` workflow and its activities (queue ``notify``).

An event's ``key`` is its business identity (``deposit.credited:<deposit id>``): with the
endpoint's id it makes the ``webhook-id`` header, so however often a workflow, an activity or an
operator sends it, an endpoint sees one id for one event.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

from domain.queues import Routed


class EventType(StrEnum):
    DEPOSIT_CREDITED = "deposit.credited"
    DEPOSIT_FAILED = "deposit.failed"
    INTENT_PAID = "intent.paid"
    INTENT_EXPIRED = "intent.expired"
    TICKET_PAID = "ticket.paid"
    TICKET_MINTED = "ticket.minted"
    TICKET_REFUNDED = "ticket.refunded"
    TICKET_FAILED = "ticket.failed"
    CREDENTIAL_CONFIRMED = "credential.confirmed"
    CREDENTIAL_FAILED = "credential.failed"
    VERIFICATION_COMPLETED = "verification.completed"
    JOB_PARKED = "job.parked"
    #: sent before subscriptions existed, kept so those receivers go on getting them
    TICKET_PURCHASED = "ticket.purchased"
    TICKET_TRANSFERRED = "ticket.transferred"
    ALERT = "settle.alert"


EVENT_TYPES: tuple[str, ...] = tuple(t.value for t in EventType)

#: the largest subscription list an endpoint may carry (bounded input)
MAX_SUBSCRIPTIONS = len(EVENT_TYPES)

EventData = dict[str, str | int | None]


#: what every endpoint received before subscriptions existed: an endpoint without a list keeps
#: receiving these (and only these; the other types are sent to the endpoints that ask for them)
UNSUBSCRIBED_DEFAULT = frozenset(
    {
        EventType.TICKET_PURCHASED.value,
        EventType.TICKET_REFUNDED.value,
        EventType.TICKET_TRANSFERRED.value,
        EventType.ALERT.value,
    }
)


#: the types sent as events (``EventDelivery``: deliveries listed, redeliverable); the others
#: (and every type, for endpoints without a list) go out as they did before subscriptions
DELIVERED_AS_EVENTS = frozenset(
    t.value
    for t in EventType
    if t not in (EventType.TICKET_PURCHASED, EventType.TICKET_TRANSFERRED, EventType.ALERT)
)


def subscribed(event_types: list[str] | None, event_type: str) -> bool:
    """Whether ``EventDelivery`` sends ``event_type`` to an endpoint: only to those that asked."""
    return event_types is not None and event_type in event_types


def subscribed_before(event_types: list[str] | None, event_type: str) -> bool:
    """Whether the ticket and alert webhooks (``notify.webhook``) go to an endpoint: those
    without a list get what they always got; a list gets the types ``EventDelivery`` does not
    send (so that no endpoint gets one event both ways)."""
    if event_types is None:
        return event_type in UNSUBSCRIBED_DEFAULT
    return event_type in event_types and event_type not in DELIVERED_AS_EVENTS


def event_workflow_id(key: str) -> str:
    return f"event-{key}"


class EmitEventInput(Routed):
    """One event of one tenant, for its subscribed endpoints and any callback endpoints named."""

    key: str = Field(max_length=150)
    tenant: str
    event_type: str
    data: EventData
    #: one operation's ``callback_url`` endpoints (kind ``callback``): they get this event too
    callback_endpoint_ids: list[str] = Field(default_factory=list)


class RedeliverInput(Routed):
    delivery_id: str


class EmitResult(BaseModel):
    delivered: int = 0
    skipped: int = 0
