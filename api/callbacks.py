"""``callback_url``: one operation's completion pushed to a URL its request names.

The URL becomes a webhook endpoint of kind ``callback`` (never listed, never sent other events),
checked with the same SSRF rules as a tenant's endpoints, and signed the same way with a secret
of its own that the request's answer carries once (``callback_secret``).
"""

from __future__ import annotations

from pydantic import BaseModel

from domain.errors import InvalidInput, WebhookDeliveryFailed, WebhookTargetRefused
from providers.webhooks import check_target
from runtime.settings import Settings
from store import tickets, webhooks
from store.models import WebhookEndpoint, new_id

FIELD = "callback_url"
MAX_URL = 2000


class CallbackView(BaseModel):
    #: the callback's endpoint: its deliveries are listed under /api/v1/webhook-endpoints/{id}
    endpoint_id: str
    #: shown once: the Standard Webhooks signing secret of the deliveries to callback_url
    secret: str


async def checked_callback(url: str | None, settings: Settings) -> str | None:
    """The URL when acceptable, else a 422 naming ``callback_url`` (nothing kept or started)."""
    if url is None or url == "":
        return None
    if len(url) > MAX_URL:
        raise InvalidInput(f"longer than {MAX_URL} characters", field=FIELD)
    try:
        await check_target(url, settings.webhook_allowed_networks)
    except WebhookTargetRefused as exc:
        raise WebhookTargetRefused(exc.message, field=FIELD) from exc
    except WebhookDeliveryFailed as exc:  # the host does not resolve
        raise InvalidInput(exc.message, field=FIELD) from exc
    return url


def callback_endpoint(tenant: str, url: str, event_types: list[str]) -> WebhookEndpoint:
    """A new callback endpoint (its id is set: the caller adds it to its own transaction)."""
    return WebhookEndpoint(
        id=new_id(),
        tenant=tenant,
        url=url,
        secret=tickets.new_secret(),
        event_types=event_types,
        kind=webhooks.CALLBACK,
    )
