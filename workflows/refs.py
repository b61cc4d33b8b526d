"""``SettleRefs``: the external references a job learns, so that any of them finds the job.

``GET /api/v1/jobs?ref=<ref>`` and ``temporal workflow list --query 'SettleRefs="<ref>"'`` find
a deposit by its CheckoutRequestID or M-Pesa receipt, a purchase by its PaymentIntent or mint, a
credential by its content hash. Only ids and hashes go in, never personal data: search
attributes are stored in clear (the payload codec does not cover them).

An upsert is a command: a workflow that adds one where it did not before changes shape. Every
call goes through :data:`REFS_PATCH`, so histories recorded before it replay without them.
"""

from __future__ import annotations

from temporalio import workflow

from domain.search import SETTLE_REFS

REFS_PATCH = "settle-refs"
#: keyword-list values are at most this long on Temporal's side; ids and hashes are far shorter
_MAX_REF = 255


def add_refs(*refs: str | None) -> None:
    """Add the non-empty ``refs`` not yet in ``SettleRefs`` (one upsert, none if nothing new)."""
    new = [r for r in refs if r and len(r) <= _MAX_REF]
    if not new:
        return
    current = list(workflow.info().typed_search_attributes.get(SETTLE_REFS) or [])
    merged = list(dict.fromkeys([*current, *new]))
    if merged == current or not workflow.patched(REFS_PATCH):
        return
    workflow.upsert_search_attributes([SETTLE_REFS.value_set(merged)])
