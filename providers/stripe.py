"""Payments through the ``stripe`` SDK (``StripeClient``, base address from settings).

Every mutating call carries an ``Idempotency-Key`` from the caller (workflow id + step), so a
retried step is the same Stripe request. The SDK's own retries are off: Temporal retries, with
the same key. Errors are mapped here: a declined card is final; rate limits, 5xx and connection
failures are worth retrying; anything Stripe refuses as invalid is final.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from stripe import (
    APIConnectionError,
    APIError,
    AuthenticationError,
    CardError,
    HTTPXClient,
    IdempotencyError,
    InvalidRequestError,
    RateLimitError,
    SignatureVerificationError,
    StripeClient,
    StripeError,
    Webhook,
)

from domain.errors import CardDeclined, StripeRejected, StripeUnavailable

T = TypeVar("T")


@dataclass(frozen=True)
class Payment:
    id: str
    status: str
    amount: int
    amount_received: int
    currency: str
    latest_charge: str | None
    failure_code: str | None = None
    failure_message: str | None = None


@dataclass(frozen=True)
class Refund:
    id: str
    status: str
    amount: int
    payment_intent: str


def _dict(resource: Any) -> dict[str, Any]:
    value: dict[str, Any] = resource.to_dict() if hasattr(resource, "to_dict") else dict(resource)
    return value


def _payment(resource: Any) -> Payment:
    intent = _dict(resource)
    error = intent.get("last_payment_error") or {}
    return Payment(
        id=intent["id"],
        status=intent["status"],
        amount=int(intent["amount"]),
        amount_received=int(intent.get("amount_received") or 0),
        currency=intent["currency"],
        latest_charge=intent.get("latest_charge"),
        failure_code=error.get("decline_code") or error.get("code"),
        failure_message=error.get("message"),
    )


class StripePayments:
    def __init__(self, api_key: str, *, api_base: str, timeout_seconds: float = 20.0) -> None:
        self._client = StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")},
            max_network_retries=0,
            http_client=HTTPXClient(timeout=timeout_seconds),
        )

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except CardError as exc:
            body: dict[str, Any] = (exc.json_body or {}).get("error", {})  # type: ignore[attr-defined]
            intent = body.get("payment_intent") or {}
            raise CardDeclined(
                exc.user_message or str(exc),
                decline_code=body.get("decline_code"),
                payment_intent=intent.get("id"),
            ) from exc
        except (RateLimitError, APIConnectionError) as exc:
            raise StripeUnavailable(f"{what}: {exc.user_message or exc}") from exc
        except IdempotencyError as exc:
            raise StripeRejected(
                f"{what}: idempotency conflict: {exc.user_message or exc}"
            ) from exc
        except (InvalidRequestError, AuthenticationError) as exc:
            raise StripeRejected(f"{what}: {exc.user_message or exc}") from exc
        except APIError as exc:
            raise StripeUnavailable(
                f"{what}: Stripe error {exc.http_status}: {exc.user_message or exc}"
            ) from exc
        except StripeError as exc:
            if exc.http_status and exc.http_status >= 500:
                raise StripeUnavailable(f"{what}: {exc}") from exc
            raise StripeRejected(f"{what}: {exc}") from exc

    async def check_reachable(self) -> None:
        """Retrieve the account balance: the cheapest authenticated call (readiness)."""
        await self._call("balance", lambda: self._client.v1.balance.retrieve_async())

    async def create_customer(
        self, email: str, *, idempotency_key: str, metadata: dict[str, str] | None = None
    ) -> str:
        customer = await self._call(
            "create customer",
            lambda: self._client.v1.customers.create_async(
                {"email": email, "metadata": metadata or {}}, {"idempotency_key": idempotency_key}
            ),
        )
        return str(_dict(customer)["id"])

    async def pay(
        self,
        *,
        amount_minor: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
        metadata: dict[str, str],
        customer: str | None = None,
        description: str | None = None,
    ) -> Payment:
        """Create and confirm a PaymentIntent; ``requires_action`` comes back as a status."""
        params: dict[str, Any] = {
            "amount": amount_minor,
            "currency": currency,
            "payment_method": payment_method,
            "confirm": True,
            "metadata": metadata,
        }
        if customer:
            params["customer"] = customer
        if description:
            params["description"] = description
        intent = await self._call(
            "create payment",
            lambda: self._client.v1.payment_intents.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": idempotency_key},
            ),
        )
        return _payment(intent)

    async def retrieve(self, payment_intent: str) -> Payment:
        intent = await self._call(
            "retrieve payment",
            lambda: self._client.v1.payment_intents.retrieve_async(payment_intent),
        )
        return _payment(intent)

    async def cancel(self, payment_intent: str, *, idempotency_key: str) -> Payment:
        intent = await self._call(
            "cancel payment",
            lambda: self._client.v1.payment_intents.cancel_async(
                payment_intent, {}, {"idempotency_key": idempotency_key}
            ),
        )
        return _payment(intent)

    async def refund(
        self,
        *,
        payment_intent: str,
        amount_minor: int | None,
        idempotency_key: str,
        metadata: dict[str, str],
    ) -> Refund:
        """Refund all that remains (``amount_minor`` None) or part of it."""
        params: dict[str, Any] = {"payment_intent": payment_intent, "metadata": metadata}
        if amount_minor is not None:
            params["amount"] = amount_minor
        refund = await self._call(
            "refund",
            lambda: self._client.v1.refunds.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": idempotency_key},
            ),
        )
        data = _dict(refund)
        return Refund(
            id=data["id"],
            status=data["status"],
            amount=int(data["amount"]),
            payment_intent=payment_intent,
        )

    async def retrieve_refund(self, refund_id: str) -> Refund:
        refund = await self._call(
            "retrieve refund", lambda: self._client.v1.refunds.retrieve_async(refund_id)
        )
        data = _dict(refund)
        return Refund(
            id=data["id"],
            status=data["status"],
            amount=int(data["amount"]),
            payment_intent=str(data.get("payment_intent") or ""),
        )

    async def list_payment_intents(self, created_gte: int, created_lte: int) -> list[Listed]:
        """Every PaymentIntent created in ``[created_gte, created_lte]`` (Unix seconds), with the
        amount Stripe received for it, page by page (``starting_after``)."""
        return await self._list("payment_intents", created_gte, created_lte)

    async def list_refunds(self, created_gte: int, created_lte: int) -> list[Listed]:
        """Every refund created in ``[created_gte, created_lte]`` (Unix seconds)."""
        return await self._list("refunds", created_gte, created_lte)

    async def _list(self, resource: str, created_gte: int, created_lte: int) -> list[Listed]:
        service = getattr(self._client.v1, resource)
        found: list[Listed] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {
                "created": {"gte": created_gte, "lte": created_lte},
                "limit": LIST_PAGE,
            }
            if after:
                params["starting_after"] = after
            page = _dict(await self._call(f"list {resource}", partial(service.list_async, params)))
            data = [_dict(obj) for obj in page.get("data") or []]
            for obj in data:
                received = obj.get("amount_received") if resource == "payment_intents" else None
                found.append(
                    Listed(
                        id=obj["id"],
                        status=obj["status"],
                        amount=int(received if received is not None else obj["amount"]),
                        currency=obj["currency"],
                        created=int(obj["created"]),
                        payment_intent=obj.get("payment_intent"),
                    )
                )
            if not page.get("has_more") or not data:
                return found
            after = data[-1]["id"]


@dataclass(frozen=True)
class Listed:
    """A PaymentIntent or refund as a list call returns it (reconciliation)."""

    id: str
    status: str
    amount: int
    currency: str
    created: int
    payment_intent: str | None = None


#: Stripe's page size limit
LIST_PAGE = 100


def verify_webhook(
    payload: bytes, signature: str, secret: str, tolerance_seconds: int
) -> dict[str, Any]:
    """The event, if ``Stripe-Signature`` is valid and fresh; StripeRejected otherwise."""
    try:
        event = Webhook.construct_event(
            payload.decode(), signature, secret, tolerance=tolerance_seconds
        )
    except SignatureVerificationError as exc:
        raise StripeRejected(f"invalid Stripe-Signature: {exc.user_message or exc}") from exc
    except ValueError as exc:
        raise StripeRejected(f"webhook body is not valid JSON: {exc}") from exc
    return _dict(event)
