"""PII never in clear in Temporal: the stack's API and worker encrypt every payload; the codec
server decrypts for admins only."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from eth_utils import to_checksum_address
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from domain.mpesa import DepositStatus
from runtime.codec import ENCODING, KEY_ID
from runtime.devserver import temporal_cli
from tests.e2e.test_mpesa_deposit_api import PHONE_OK, initiate
from tests.e2e.test_tickets import buy, until
from tests.fixtures.chain import new_wallet
from tests.fixtures.events import create_event
from tests.fixtures.stack import STACK_CODEC_KEY_ID, Stack, unique_tenant


async def raw_history(client: Client, workflow_id: str) -> bytes:
    """The history as Temporal keeps it, read without any codec."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return b"".join(event.SerializeToString() for event in history.events)


def payloads_of(history_bytes: bytes) -> int:
    return history_bytes.count(ENCODING)


def pii_forms(*values: str) -> list[bytes]:
    forms: set[bytes] = set()
    for value in values:
        forms |= {value.encode(), value.lower().encode()}
        if value.startswith("0x"):
            forms |= {to_checksum_address(value).encode(), value[2:].lower().encode()}
    return sorted(forms)


async def test_a_deposits_history_holds_no_phone_or_wallet_in_clear(stack: Stack) -> None:
    assert stack.plain_temporal is not None
    headers = stack.auth("alice", unique_tenant())
    wallet = new_wallet()
    response = await initiate(stack, headers, wallet=wallet)
    assert response.status_code == 202, response.text
    deposit = response.json()
    await stack.wait_for_deposit(deposit["id"], {DepositStatus.CREDITED}, timeout=40)
    # the workflow's own result decodes through the codec client
    state = await stack.deposit_handle(deposit["workflow_id"]).result()
    assert state.status == DepositStatus.CREDITED

    history = await raw_history(stack.plain_temporal, deposit["workflow_id"])
    assert payloads_of(history) >= 5  # input, callback signal, activities, result
    for needle in pii_forms(PHONE_OK, wallet):
        assert needle not in history, f"{needle!r} in clear in Temporal's history"
    # the callback the API signalled is encrypted with the stack's key too
    assert KEY_ID.encode() in history and STACK_CODEC_KEY_ID.encode() in history
    # search attributes are indexed in clear: ids and enums only
    described = await stack.plain_temporal.get_workflow_handle(deposit["workflow_id"]).describe()
    attributes = {
        p.key.name: p.value
        for p in described.typed_search_attributes
        if p.key.name.startswith("Settle")
    }
    assert attributes == {
        "SettleKind": "mpesa_deposit",
        "SettleTenant": attributes["SettleTenant"],
        "SettleUser": "alice",
        "SettleStatus": "succeeded",
        "SettleRefs": attributes["SettleRefs"],
    }
    # the ids it learned (CheckoutRequestID, receipt, tx hash): never the phone or the wallet
    refs = attributes["SettleRefs"]
    assert refs and not any(n in str(refs).encode() for n in pii_forms(PHONE_OK, wallet))


async def test_a_ticket_purchases_history_holds_no_email_or_wallet_in_clear(stack: Stack) -> None:
    assert stack.plain_temporal is not None
    tenant = unique_tenant()
    headers = stack.auth("ann", tenant)
    sent, accepted = await buy(stack, headers, await create_event(stack, tenant))
    await until(stack, accepted["id"], headers, lambda v: v["status"] == "completed", "completed")
    history = await raw_history(stack.plain_temporal, accepted["workflow_id"])
    assert payloads_of(history) >= 5
    for needle in pii_forms(sent["buyer_email"], sent["buyer_wallet"]):
        assert needle not in history, f"{needle!r} in clear in Temporal's history"


async def first_encrypted_input(stack: Stack, workflow_id: str) -> Payload:
    assert stack.plain_temporal is not None
    history = await stack.plain_temporal.get_workflow_handle(workflow_id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    (payload,) = started.input.payloads
    assert payload.metadata["encoding"] == ENCODING
    return payload


def as_json(payload: Payload) -> dict[str, Any]:
    return {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in payload.metadata.items()},
                "data": base64.b64encode(payload.data).decode(),
            }
        ]
    }


async def test_codec_server_decodes_for_admins_only(stack: Stack) -> None:
    tenant = unique_tenant()
    response = await initiate(stack, stack.auth("bob", tenant), wallet=new_wallet())
    assert response.status_code == 202, response.text
    workflow_id = response.json()["workflow_id"]
    body = as_json(await first_encrypted_input(stack, workflow_id))

    assert (await stack.api.post("/codec/decode", json=body)).status_code == 401
    for role in ("user", "venue_admin"):
        refused = await stack.api.post(
            "/codec/decode", json=body, headers=stack.auth("x", tenant, [role])
        )
        assert refused.status_code == 403, (role, refused.text)
        assert PHONE_OK not in refused.text

    for role in ("admin", "platform_admin"):
        decoded = await stack.api.post(
            "/codec/decode",
            json=body,
            headers={**stack.auth("ops", tenant, [role]), "X-Namespace": "default"},
        )
        assert decoded.status_code == 200, decoded.text
        (plain,) = decoded.json()["payloads"]
        assert base64.b64decode(plain["metadata"]["encoding"]) == b"json/plain"
        assert json.loads(base64.b64decode(plain["data"]))["phone"] == PHONE_OK

    # encode, then decode again: the UI's round trip for what an operator types
    typed = {"payloads": [{"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                           "data": base64.b64encode(b'"refunded by hand"').decode()}]}  # fmt: skip
    admin = stack.auth("ops", tenant, ["admin"])
    encoded = (await stack.api.post("/codec/encode", json=typed, headers=admin)).json()
    assert base64.b64decode(encoded["payloads"][0]["metadata"]["encoding"]) == ENCODING
    again = (await stack.api.post("/codec/decode", json=encoded, headers=admin)).json()
    assert again == typed
    # unencrypted payloads come back as they are
    assert (await stack.api.post("/codec/decode", json=typed, headers=admin)).json() == typed
    # bad base64 names the field
    bad = await stack.api.post("/codec/decode", json={"payloads": [{"data": "***"}]}, headers=admin)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "payloads.0.data"


async def test_codec_server_answers_the_web_uis_cors_preflight(stack: Stack) -> None:
    origin = stack.settings.codec_cors_origins[0]
    preflight = await stack.api.options(
        "/codec/decode",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
        },
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["access-control-allow-origin"] == origin
    other = await stack.api.options(
        "/codec/decode",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert other.headers.get("access-control-allow-origin") != "https://evil.example"
    # the UI's origin gets no CORS on the rest of the API
    elsewhere = await stack.api.get("/health/live", headers={"Origin": origin})
    assert "access-control-allow-origin" not in elsewhere.headers


def payload_texts(node: Any) -> list[str]:
    """The data of every payload in a history printed as JSON (base64 in proto JSON)."""
    if isinstance(node, dict):
        if "data" in node and "metadata" in node and isinstance(node["data"], str):
            return [base64.b64decode(node["data"]).decode(errors="replace")]
        return [t for value in node.values() for t in payload_texts(value)]
    if isinstance(node, list):
        return [t for value in node for t in payload_texts(value)]
    return []


async def test_the_temporal_cli_reads_decrypted_history_through_the_codec_server(
    stack: Stack,
) -> None:
    """The README's command for operators: Temporal's own codec client speaks to our server."""
    tenant = unique_tenant()
    response = await initiate(stack, stack.auth("cli", tenant), wallet=new_wallet())
    assert response.status_code == 202, response.text
    workflow_id = response.json()["workflow_id"]
    await stack.wait_for_deposit(response.json()["id"], {DepositStatus.CREDITED}, timeout=40)
    admin = stack.token("ops", tenant, ["admin"])

    async def show(*codec: str) -> str:
        process = await asyncio.create_subprocess_exec(
            temporal_cli(), "workflow", "show", "--workflow-id", workflow_id,
            "--address", stack.temporal.service_client.config.target_host,
            "--namespace", stack.temporal.namespace, "--output", "json", *codec,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, out.decode(errors="replace")
        return "\n".join(payload_texts(json.loads(out)))

    endpoint = f"{stack.settings.api_public_url}/codec"
    assert PHONE_OK in await show("--codec-endpoint", endpoint, "--codec-auth", f"Bearer {admin}")
    plain = await show()
    assert plain and PHONE_OK not in plain


async def test_a_codec_session_cookie_lets_a_ui_without_login_decode(stack: Stack) -> None:
    """``make run``'s Web UI has no login: an admin starts a cookie session on /codec/session
    and the UI sends it along ("Include cross-origin credentials")."""
    tenant = unique_tenant()
    response = await initiate(stack, stack.auth("kim", tenant), wallet=new_wallet())
    assert response.status_code == 202, response.text
    body = as_json(await first_encrypted_input(stack, response.json()["workflow_id"]))

    page = await stack.api.get("/codec/session")
    assert page.status_code == 200 and 'name="token"' in page.text
    refused = await stack.api.post("/codec/session", data={"token": stack.token("kim", tenant)})
    assert refused.status_code == 403 and "set-cookie" not in refused.headers
    assert (await stack.api.post("/codec/session", data={"token": "nonsense"})).status_code == 401

    started = await stack.api.post(
        "/codec/session", data={"token": stack.token("ops", tenant, ["admin"])}
    )
    assert started.status_code == 200, started.text
    cookie = started.headers["set-cookie"].lower()
    assert "httponly" in cookie and "path=/codec" in cookie and "samesite=strict" in cookie
    token = started.cookies["settle_codec_token"]
    stack.api.cookies.clear()  # the stack's shared client keeps no session for other tests
    decoded = await stack.api.post(
        "/codec/decode",
        json=body,
        headers={"Origin": stack.settings.codec_cors_origins[0]},
        cookies={"settle_codec_token": token},
    )
    assert decoded.status_code == 200, decoded.text
    assert decoded.headers["access-control-allow-credentials"] == "true"
    (plain,) = decoded.json()["payloads"]
    assert json.loads(base64.b64decode(plain["data"]))["phone"] == PHONE_OK
    # a cookie holding a user's token decodes nothing
    user = await stack.api.post(
        "/codec/decode", json=body, cookies={"settle_codec_token": stack.token("kim", tenant)}
    )
    assert user.status_code == 403
