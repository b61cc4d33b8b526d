"""Abuse limits: how many operations one phone, user or tenant may start per minute (0: none).

Past a limit the API answers 429 with Retry-After and starts nothing. They bound what one caller
can make Settle do to a customer's phone (STK prompts) or spend of the treasury's gas and the
providers' rate limits; counted in the database, so they hold for every API replica.
"""

from __future__ import annotations

from pydantic import BaseModel


class AbuseSettings(BaseModel):
    #: STK pushes to one phone number, whoever asks (a phone is not prompted over and over)
    abuse_stk_pushes_per_phone_per_minute: int = 3
    #: STK pushes one user asks for
    abuse_stk_pushes_per_user_per_minute: int = 10
    #: verification and proof jobs one user submits
    abuse_verifications_per_user_per_minute: int = 30
    #: credential anchor requests (single or batch) of one tenant
    abuse_anchor_requests_per_tenant_per_minute: int = 120
    #: ticket purchases one user starts
    abuse_ticket_purchases_per_user_per_minute: int = 20
    #: every operation one tenant starts (deposits, intents, purchases, anchors, verifications)
    abuse_operations_per_tenant_per_minute: int = 600
