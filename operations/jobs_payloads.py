"""A job's input and result, as an operator reads them in ``GET /api/v1/jobs/{id}``.

Temporal holds them encrypted (the payload codec, ``runtime/codec.py``); the API's client has the
codec in its data converter, so they are decoded here, then cleaned: values under secret-looking
keys are masked and every string goes through :func:`runtime.redact.redact`. They carry personal
data (a phone, an email), which is why only ``admin`` and ``platform_admin`` get them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError

from api.jobs_lookup import JobRef, raise_if_unreachable
from runtime.logging import get_logger
from runtime.redact import MASK, redact

log = get_logger("api.jobs")

_SECRET_KEY = re.compile(
    r"secret|password|passkey|token|private|api[_-]?key|credential_key|signature_key|mnemonic",
    re.IGNORECASE,
)


def clean(value: Any) -> Any:
    """``value`` with secret-looking keys masked and credentials taken out of its strings."""
    if isinstance(value, dict):
        return {
            k: (MASK if isinstance(k, str) and _SECRET_KEY.search(k) else clean(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


@dataclass(frozen=True)
class Payloads:
    input: Any = None
    result: Any = None


async def _decode(client: Client, payloads: Sequence[Payload]) -> Any:
    """The first payload's value; a note instead when it cannot be decoded (a key that is gone)."""
    if not payloads:
        return None
    try:
        (value,) = await client.data_converter.decode(list(payloads)[:1])
    except Exception as exc:
        log.info("payload not decodable", error=str(exc))
        return {"undecodable": "the payload codec could not decode it (a retired key?)"}
    return clean(value)


async def input_and_result(client: Client, job: JobRef) -> Payloads:
    """The run's input (its first event) and, once it completed, its result (its last)."""
    handle = client.get_workflow_handle(job.id, run_id=job.run_id)
    found_input: Any = None
    found_result: Any = None
    try:
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
                attrs = event.workflow_execution_started_event_attributes
                found_input = await _decode(client, attrs.input.payloads)
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
                attrs_done = event.workflow_execution_completed_event_attributes
                found_result = await _decode(client, attrs_done.result.payloads)
    except (RPCError, RuntimeError) as exc:
        raise_if_unreachable(exc)
        raise
    return Payloads(found_input, found_result)
