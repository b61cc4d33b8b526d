"""A Stripe-compatible subset of the REST API, for the real ``stripe`` SDK.

Form-encoded bodies (``metadata[key]=value``), Stripe-shaped objects and errors, Bearer keys,
``Idempotency-Key`` semantics (same key and parameters: the same response again, with
``Idempotent-Replayed: true``; same key, other parameters: 400 ``idempotency_error``), and signed
webhook events (``Stripe-Signature: t=...,v1=...``) delivered to the configured endpoint.

Resources: customers, payment intents (create with ``confirm``, retrieve, confirm, cancel, list),
charges (retrieve), refunds (full and partial, never above the unrefunded amount; list). Lists
are Stripe's: newest first, ``created[gte|gt|lte|lt]``, ``limit``, ``starting_after``.

Test payment methods, as Stripe's: ``pm_card_visa`` / ``pm_card_mastercard`` succeed;
``pm_card_chargeDeclined`` is declined (generic_decline);
``pm_card_chargeDeclinedInsufficientFunds`` is declined (insufficient_funds);
``pm_card_authenticationRequired`` and
``pm_card_threeDSecure2Required`` need the buyer's authentication (``requires_action``).

Test controls (not Stripe): ``POST /_sandbox/payment_intents/{id}/authenticate``
``{"succeed": true}`` finishes (or fails) a pending authentication;
``POST /_sandbox/pending-refunds`` ``{"count": n}`` makes the next refunds ``pending`` until
``POST /_sandbox/refunds/{id}/settle`` ``{"succeed": true|false}``; ``POST /_sandbox/fail-next``
``{"count": n, "status": 500|429}``; ``POST /_sandbox/lose-answers`` ``{"count": n, "path":
"/v1/payment_intents"}``: the next n POSTs to that path are carried out (replays too), then
answered ``502`` as if the answer was lost on the way (the effect happened, the caller cannot
know it); ``POST /_sandbox/outage`` ``{"down": true, "status": 503,
"seconds": 60}`` answers every API call with that status until ``{"down": false}`` or the seconds
run out (a provider down for a while, for circuit breakers); ``GET /_sandbox/state``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from runtime.logging import get_logger

log = get_logger("sandbox.stripe")

SUCCEEDING = {"pm_card_visa", "pm_card_mastercard", "pm_card_amex"}
DECLINES = {
    "pm_card_chargeDeclined": ("generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": (
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
}
NEEDS_ACTION = {"pm_card_authenticationRequired", "pm_card_threeDSecure2Required"}
API_VERSION = "2025-01-27.acacia"


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def parse_form(body: bytes) -> dict[str, Any]:
    """Stripe's form encoding: ``a[b]=1`` is ``{"a": {"b": "1"}}``, ``a[0]=x`` a list item."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(body.decode(), keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node: Any = result
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _lists(result)


def _lists(node: Any) -> Any:
    if isinstance(node, dict):
        converted = {k: _lists(v) for k, v in node.items()}
        if converted and all(k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    return node


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header for ``payload``."""
    t = timestamp if timestamp is not None else int(time.time())
    digest = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


class StripeFailure(Exception):
    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", ""))
        self.status, self.error = status, error


def invalid(message: str, param: str | None = None, code: str | None = None) -> StripeFailure:
    error: dict[str, Any] = {"type": "invalid_request_error", "message": message}
    if param:
        error["param"] = param
    if code:
        error["code"] = code
    return StripeFailure(400, error)


@dataclass
class StripeState:
    api_key: str
    webhook_secret: str
    webhook_url: str | None
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    charges: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: idempotency key -> (request fingerprint, status, body)
    idempotency: dict[str, tuple[str, int, dict[str, Any]]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    #: path -> POSTs to it still to be carried out and then answered as lost
    lose_answers: Counter[str] = field(default_factory=Counter)
    #: an outage: every API call answers this status until ``outage_until`` (monotonic; None:
    #: until lifted)
    outage_status: int | None = None
    outage_until: float | None = None
    #: API calls answered by the outage, by path
    outage_answers: Counter[str] = field(default_factory=Counter)
    #: how many of the next refunds stay ``pending`` until settled by hand
    pending_refunds: int = 0
    delivered: int = 0
    requests: int = 0


def create_stripe_app(*, api_key: str, webhook_secret: str, webhook_url: str | None) -> FastAPI:
    state = StripeState(api_key, webhook_secret, webhook_url)
    app = FastAPI(
        title="Sandbox Stripe", docs_url="/_sandbox/docs", openapi_url="/_sandbox/openapi.json"
    )
    app.state.sandbox = state
    http = httpx.AsyncClient(timeout=10)
    tasks: set[asyncio.Task[None]] = set()

    # --- events ------------------------------------------------------------------------------

    def emit(kind: str, obj: dict[str, Any]) -> None:
        event = {
            "id": _id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "type": kind,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "data": {"object": json.loads(json.dumps(obj))},
        }
        state.events.append(event)
        if state.webhook_url:
            task = asyncio.create_task(deliver(event))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    async def deliver(event: dict[str, Any]) -> None:
        payload = json.dumps(event)
        for attempt in range(5):
            try:
                response = await http.post(
                    str(state.webhook_url),
                    content=payload,
                    headers={
                        "Content-Type": "application/json",
                        "Stripe-Signature": sign(payload, state.webhook_secret),
                    },
                )
                if response.status_code < 300:
                    state.delivered += 1
                    return
                log.warning("webhook refused", event_id=event["id"], status=response.status_code)
            except httpx.HTTPError as exc:
                log.warning("webhook delivery failed", event_id=event["id"], error=str(exc))
            await asyncio.sleep(0.5 * 2**attempt)

    # --- objects -----------------------------------------------------------------------------

    def charge_for(intent: dict[str, Any]) -> dict[str, Any]:
        charge = {
            "id": _id("ch"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"],
            "amount_refunded": 0,
            "currency": intent["currency"],
            "payment_intent": intent["id"],
            "payment_method": intent["payment_method"],
            "refunded": False,
            "paid": True,
            "status": "succeeded",
            "created": int(time.time()),
            "livemode": False,
            "metadata": intent["metadata"],
        }
        state.charges[charge["id"]] = charge
        return charge

    def attempt(intent: dict[str, Any]) -> None:
        """Confirm ``intent`` with its payment method: succeed, decline, or ask for action."""
        method = intent["payment_method"]
        if method in SUCCEEDING:
            charge = charge_for(intent)
            intent.update(
                status="succeeded",
                latest_charge=charge["id"],
                amount_received=intent["amount"],
                last_payment_error=None,
                next_action=None,
            )
            emit("payment_intent.succeeded", intent)
        elif method in NEEDS_ACTION:
            intent.update(
                status="requires_action",
                next_action={
                    "type": "use_stripe_sdk",
                    "use_stripe_sdk": {"type": "three_d_secure_redirect"},
                },
            )
            emit("payment_intent.requires_action", intent)
        elif method in DECLINES:
            decline_code, message = DECLINES[method]
            error = {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": decline_code,
                "message": message,
                "payment_method": {"id": method, "object": "payment_method"},
            }
            intent.update(
                status="requires_payment_method", last_payment_error=error, next_action=None
            )
            emit("payment_intent.payment_failed", intent)
            raise StripeFailure(402, {**error, "payment_intent": dict(intent)})
        else:
            raise invalid(
                f"No such PaymentMethod: '{method}'", "payment_method", "resource_missing"
            )

    def require_intent(intent_id: str) -> dict[str, Any]:
        intent = state.intents.get(intent_id)
        if intent is None:
            raise invalid(f"No such payment_intent: '{intent_id}'", "intent", "resource_missing")
        return intent

    def amount_param(params: dict[str, Any], name: str = "amount") -> int:
        try:
            value = int(params[name])
        except KeyError as exc:
            raise invalid(f"Missing required param: {name}.", name, "parameter_missing") from exc
        except ValueError as exc:
            raise invalid(f"Invalid integer: {params[name]}", name) from exc
        if value < 1:
            raise invalid("This value must be greater than or equal to 1.", name)
        return value

    # --- handlers ----------------------------------------------------------------------------

    def create_customer(params: dict[str, Any]) -> dict[str, Any]:
        customer = {
            "id": _id("cus"),
            "object": "customer",
            "email": params.get("email"),
            "name": params.get("name"),
            "metadata": params.get("metadata", {}),
            "created": int(time.time()),
            "livemode": False,
        }
        state.customers[customer["id"]] = customer
        return customer

    def create_intent(params: dict[str, Any]) -> dict[str, Any]:
        amount = amount_param(params)
        currency = str(params.get("currency", "")).lower()
        if len(currency) != 3:
            raise invalid("Invalid currency: must be a three-letter ISO code.", "currency")
        customer = params.get("customer")
        if customer and customer not in state.customers:
            raise invalid(f"No such customer: '{customer}'", "customer", "resource_missing")
        intent: dict[str, Any] = {
            "id": _id("pi"),
            "object": "payment_intent",
            "amount": amount,
            "amount_received": 0,
            "currency": currency,
            "customer": customer,
            "description": params.get("description"),
            "metadata": params.get("metadata", {}),
            "payment_method": params.get("payment_method"),
            "payment_method_types": ["card"],
            "capture_method": "automatic",
            "confirmation_method": "automatic",
            "status": "requires_payment_method"
            if not params.get("payment_method")
            else "requires_confirmation",
            "latest_charge": None,
            "last_payment_error": None,
            "next_action": None,
            "cancellation_reason": None,
            "client_secret": f"{_id('pi')}_secret_{secrets.token_hex(8)}",
            "created": int(time.time()),
            "livemode": False,
        }
        intent["client_secret"] = f"{intent['id']}_secret_{secrets.token_hex(8)}"
        state.intents[intent["id"]] = intent
        if str(params.get("confirm", "false")).lower() == "true":
            if not intent["payment_method"]:
                raise invalid("You must provide a payment method to confirm.", "payment_method")
            attempt(intent)
        return intent

    def confirm_intent(intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        intent = require_intent(intent_id)
        if intent["status"] in ("succeeded", "canceled", "processing"):
            raise invalid(
                f"This PaymentIntent's status is {intent['status']}; it cannot be confirmed.",
                code="payment_intent_unexpected_state",
            )
        if params.get("payment_method"):
            intent["payment_method"] = params["payment_method"]
        attempt(intent)
        return intent

    def cancel_intent(intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        intent = require_intent(intent_id)
        if intent["status"] in ("succeeded", "canceled"):
            raise invalid(
                "You cannot cancel this PaymentIntent because it has a status of "
                f"{intent['status']}.",
                code="payment_intent_unexpected_state",
            )
        intent.update(
            status="canceled",
            cancellation_reason=params.get("cancellation_reason", "requested_by_customer"),
        )
        emit("payment_intent.canceled", intent)
        return intent

    def create_refund(params: dict[str, Any]) -> dict[str, Any]:
        intent_id, charge_id = params.get("payment_intent"), params.get("charge")
        if intent_id:
            charge_id = require_intent(str(intent_id)).get("latest_charge")
            if charge_id is None:
                raise invalid(
                    f"PaymentIntent {intent_id} does not have a successful charge to refund.",
                    "payment_intent",
                    "charge_not_refundable",
                )
        charge = state.charges.get(str(charge_id)) if charge_id else None
        if charge is None:
            raise invalid(
                "You must provide a charge or a payment_intent to refund.",
                "charge",
                "parameter_missing",
            )
        remaining = charge["amount"] - charge["amount_refunded"]
        amount = amount_param(params) if "amount" in params else remaining
        if amount > remaining:
            raise invalid(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                f"({remaining})",
                "amount",
                "amount_too_large",
            )
        pending = state.pending_refunds > 0
        state.pending_refunds -= int(pending)
        refund = {
            "id": _id("re"),
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "payment_intent": charge["payment_intent"],
            "currency": charge["currency"],
            "status": "pending" if pending else "succeeded",
            "reason": params.get("reason"),
            "metadata": params.get("metadata", {}),
            "created": int(time.time()),
        }
        state.refunds[refund["id"]] = refund
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        if pending:
            emit("refund.created", refund)
        else:
            emit("charge.refunded", {**charge, "refunds": {"object": "list", "data": [refund]}})
        return refund

    def list_objects(
        table: dict[str, dict[str, Any]], path: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        """Stripe's list: newest first, ``created[gte|gt|lte|lt]``, ``limit`` (1-100, default
        10), ``starting_after`` / ``ending_before`` (an object id of the previous page)."""
        bounds = {}
        for op in ("gte", "gt", "lte", "lt"):
            raw = params.get(f"created[{op}]")
            if raw is not None:
                try:
                    bounds[op] = int(raw)
                except ValueError:
                    raise invalid(f"Invalid integer: {raw}", f"created[{op}]") from None
        try:
            limit = int(params.get("limit", 10))
        except ValueError:
            raise invalid("Invalid integer: limit", "limit") from None
        if not 1 <= limit <= 100:
            raise invalid("This value must be greater than or equal to 1.", "limit")
        checks = {
            "gte": lambda c, b: c >= b,
            "gt": lambda c, b: c > b,
            "lte": lambda c, b: c <= b,
            "lt": lambda c, b: c < b,
        }
        # newest first; among equal creation times, the later made first (as Stripe)
        ordered = [
            obj
            for obj in reversed(list(table.values()))
            if all(checks[op](obj["created"], b) for op, b in bounds.items())
        ]
        ordered.sort(key=lambda obj: obj["created"], reverse=True)
        ids = [obj["id"] for obj in ordered]
        after, before = params.get("starting_after"), params.get("ending_before")
        for cursor, name in ((after, "starting_after"), (before, "ending_before")):
            if cursor is not None and cursor not in table:
                raise invalid(f"No such object: '{cursor}'", name, "resource_missing")
        if after is not None:
            ordered = ordered[ids.index(after) + 1 :] if after in ids else []
        elif before is not None:
            ordered = ordered[: ids.index(before)][-limit:] if before in ids else []
        return {
            "object": "list",
            "url": path,
            "has_more": len(ordered) > limit,
            "data": ordered[:limit],
        }

    def lookup(table: dict[str, dict[str, Any]], name: str, key: str) -> dict[str, Any]:
        if key not in table:
            raise invalid(f"No such {name}: '{key}'", "id", "resource_missing")
        return table[key]

    # --- HTTP --------------------------------------------------------------------------------

    def authorised(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            return hmac.compare_digest(header[7:], state.api_key)
        return False

    def in_outage() -> int | None:
        if state.outage_status is None:
            return None
        if state.outage_until is not None and time.monotonic() >= state.outage_until:
            state.outage_status = state.outage_until = None
            return None
        return state.outage_status

    def answer_lost(request: Request) -> JSONResponse | None:
        """A 502 in place of the answer, when the path is set to lose its next answers."""
        path = request.url.path
        if request.method != "POST" or state.lose_answers[path] <= 0:
            return None
        state.lose_answers[path] -= 1
        return JSONResponse(
            {"error": {"type": "api_error", "message": "sandbox: the answer was lost"}},
            status_code=502,
        )

    async def dispatch(request: Request, action: Any) -> JSONResponse:
        state.requests += 1
        if (down := in_outage()) is not None:
            state.outage_answers[request.url.path] += 1
            return JSONResponse(
                {"error": {"type": "api_error", "message": "sandbox outage"}}, status_code=down
            )
        if state.failures:
            status = state.failures.pop(0)
            kind = "rate_limit_error" if status == 429 else "api_error"
            return JSONResponse(
                {"error": {"type": kind, "message": "injected sandbox failure"}}, status_code=status
            )
        if not authorised(request):
            return JSONResponse(
                {
                    "error": {
                        "type": "invalid_request_error",
                        "message": "Invalid API Key provided.",
                    }
                },
                status_code=401,
            )
        body = await request.body()
        params = parse_form(body) if request.method == "POST" else dict(request.query_params)
        key = request.headers.get("idempotency-key") if request.method == "POST" else None
        fingerprint = hashlib.sha256(request.url.path.encode() + b"\0" + body).hexdigest()
        if key is not None and key in state.idempotency:
            first, status, stored = state.idempotency[key]
            if first != fingerprint:
                error = {
                    "type": "idempotency_error",
                    "message": "Keys for idempotent requests can only be used with the same "
                    "parameters they were first used with. "
                    f"Try using a key other than '{key}' "
                    "if you meant to execute a different request.",
                }
                return JSONResponse({"error": error}, status_code=400)
            if lost := answer_lost(request):
                return lost
            return JSONResponse(
                stored,
                status_code=status,
                headers={"Idempotent-Replayed": "true", "Idempotency-Key": key},
            )
        try:
            status, result = 200, action(params)
        except StripeFailure as failure:
            status, result = failure.status, {"error": failure.error}
        if key is not None:
            state.idempotency[key] = (fingerprint, status, json.loads(json.dumps(result)))
        if lost := answer_lost(request):
            return lost
        headers = {"Request-Id": _id("req"), "Stripe-Version": API_VERSION}
        if key is not None:
            headers["Idempotency-Key"] = key
        return JSONResponse(result, status_code=status, headers=headers)

    @app.get("/v1/balance")
    async def balance(request: Request) -> JSONResponse:
        def retrieve(_params: Any) -> dict[str, Any]:
            captured: dict[str, int] = {}
            for intent in state.intents.values():
                if intent["status"] == "succeeded":
                    currency = intent["currency"]
                    captured[currency] = captured.get(currency, 0) + int(intent["amount_received"])
            return {
                "object": "balance",
                "available": [{"amount": a, "currency": c} for c, a in sorted(captured.items())],
                "pending": [],
                "livemode": False,
            }

        return await dispatch(request, retrieve)

    @app.post("/v1/customers")
    async def customers_create(request: Request) -> JSONResponse:
        return await dispatch(request, create_customer)

    @app.get("/v1/customers/{customer_id}")
    async def customers_get(customer_id: str, request: Request) -> JSONResponse:
        return await dispatch(request, lambda p: lookup(state.customers, "customer", customer_id))

    @app.post("/v1/payment_intents")
    async def intents_create(request: Request) -> JSONResponse:
        return await dispatch(request, create_intent)

    @app.get("/v1/payment_intents")
    async def intents_list(request: Request) -> JSONResponse:
        return await dispatch(
            request, lambda p: list_objects(state.intents, "/v1/payment_intents", p)
        )

    @app.get("/v1/payment_intents/{intent_id}")
    async def intents_get(intent_id: str, request: Request) -> JSONResponse:
        return await dispatch(request, lambda p: require_intent(intent_id))

    @app.post("/v1/payment_intents/{intent_id}/confirm")
    async def intents_confirm(intent_id: str, request: Request) -> JSONResponse:
        return await dispatch(request, lambda p: confirm_intent(intent_id, p))

    @app.post("/v1/payment_intents/{intent_id}/cancel")
    async def intents_cancel(intent_id: str, request: Request) -> JSONResponse:
        return await dispatch(request, lambda p: cancel_intent(intent_id, p))

    @app.get("/v1/charges/{charge_id}")
    async def charges_get(charge_id: str, request: Request) -> JSONResponse:
        return await dispatch(request, lambda p: lookup(state.charges, "charge", charge_id))

    @app.post("/v1/refunds")
    async def refunds_create(request: Request) -> JSONResponse:
        return await dispatch(request, create_refund)

    @app.get("/v1/refunds")
    async def refunds_list(request: Request) -> JSONResponse:
        return await dispatch(request, lambda p: list_objects(state.refunds, "/v1/refunds", p))

    @app.get("/v1/refunds/{refund_id}")
    async def refunds_get(refund_id: str, request: Request) -> JSONResponse:
        return await dispatch(request, lambda p: lookup(state.refunds, "refund", refund_id))

    # --- test controls (not Stripe) ----------------------------------------------------------

    @app.post("/_sandbox/payment_intents/{intent_id}/authenticate")
    async def authenticate(intent_id: str, request: Request) -> JSONResponse:
        """The buyer finishes (or fails) 3-D Secure for an intent in ``requires_action``."""
        body = await request.json() if await request.body() else {}
        intent = state.intents[intent_id]
        if body.get("succeed", True):
            charge = charge_for(intent)
            intent.update(
                status="succeeded",
                latest_charge=charge["id"],
                amount_received=intent["amount"],
                next_action=None,
            )
            emit("payment_intent.succeeded", intent)
        else:
            error = {
                "type": "card_error",
                "code": "payment_intent_authentication_failure",
                "message": "The buyer did not authenticate.",
            }
            intent.update(
                status="requires_payment_method", last_payment_error=error, next_action=None
            )
            emit("payment_intent.payment_failed", intent)
        return JSONResponse(intent)

    @app.post("/_sandbox/pending-refunds")
    async def pending_refunds(request: Request) -> dict[str, Any]:
        """The next ``count`` refunds answer ``pending``; settle them with ``.../settle``."""
        body = await request.json()
        state.pending_refunds += int(body.get("count", 1))
        return {"pending_refunds": state.pending_refunds}

    @app.post("/_sandbox/refunds/{refund_id}/settle")
    async def settle_refund(refund_id: str, request: Request) -> JSONResponse:
        """A pending refund succeeds or fails (its amount goes back to the charge), and
        ``refund.updated`` (plus ``refund.failed``) is sent."""
        body = await request.json() if await request.body() else {}
        refund = state.refunds[refund_id]
        if refund["status"] == "pending":
            if body.get("succeed", True):
                refund["status"] = "succeeded"
            else:
                refund.update(status="failed", failure_reason="lost_or_stolen_card")
                charge = state.charges[refund["charge"]]
                charge["amount_refunded"] -= refund["amount"]
                charge["refunded"] = False
                emit("refund.failed", refund)
            emit("refund.updated", refund)
        return JSONResponse(refund)

    @app.post("/_sandbox/fail-next")
    async def fail_next(request: Request) -> dict[str, Any]:
        body = await request.json()
        state.failures += [int(body.get("status", 500))] * int(body.get("count", 1))
        return {"queued": len(state.failures)}

    @app.post("/_sandbox/lose-answers")
    async def lose_answers(request: Request) -> dict[str, Any]:
        body = await request.json()
        path = str(body.get("path", "/v1/payment_intents"))
        state.lose_answers[path] += int(body.get("count", 1))
        return {"path": path, "queued": state.lose_answers[path]}

    @app.post("/_sandbox/outage")
    async def outage(request: Request) -> dict[str, Any]:
        """``{"down": true, "status": 503, "seconds": 60}`` / ``{"down": false}``."""
        body = await request.json()
        if body.get("down", True):
            state.outage_status = int(body.get("status", 503))
            seconds = body.get("seconds")
            state.outage_until = None if seconds is None else time.monotonic() + float(seconds)
        else:
            state.outage_status = state.outage_until = None
        return {"down": state.outage_status is not None, "answered": dict(state.outage_answers)}

    @app.get("/_sandbox/state")
    async def sandbox_state() -> dict[str, Any]:
        return {
            "payment_intents": list(state.intents.values()),
            "refunds": list(state.refunds.values()),
            "events": [{"id": e["id"], "type": e["type"]} for e in state.events],
            "delivered": state.delivered,
            "requests": state.requests,
        }

    return app
