"""Retry strategies, one per step, in one place.

Figures that operators tune come from settings through the workflow input (``MpesaDepositConfig``);
the shapes (backoff, caps, what is permanent) live here. Permanent failures are the error types in
``domain.errors.NON_RETRYABLE``, and a constraint violation in the database (the worker's
``DatabaseErrorInterceptor``).

Nothing retries forever in silence: every policy is bounded (the workflow parks or fails after it)
except those in :data:`UNBOUNDED`, and every step of every policy that fails
``STEP_ALERT_AFTER_ATTEMPTS`` times is reported (``SettleStatus=retrying``, the jobs API, the
dead-letter listing, a Monitor alert: see ``domain.retries``).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from domain.errors import NON_RETRYABLE
from domain.mpesa import MpesaDepositConfig

#: DB bookkeeping (status rows) must eventually happen: keep trying, slowly, until the DB is back
DB_BOOKKEEPING = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,
    non_retryable_error_types=list(NON_RETRYABLE),
)
DB_TIMEOUT = timedelta(seconds=30)

#: recording a status while parking: best effort, the search attribute is the primary signal
DB_BEST_EFFORT = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_attempts=3,
    non_retryable_error_types=list(NON_RETRYABLE),
)


def stk_push(config: MpesaDepositConfig) -> RetryPolicy:
    """5 attempts, exponential from 2 s by default; a rejected request is not retried."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=config.stk_push_initial_interval_seconds),
        backoff_coefficient=2.0,
        maximum_attempts=config.stk_push_max_attempts,
        non_retryable_error_types=list(NON_RETRYABLE),
    )


#: an STK push is tried once per activity: the workflow decides what a failure means (never sent:
#: push again; answer lost: resolve that push first), since Daraja has no idempotency key
STK_PUSH_ONCE = RetryPolicy(maximum_attempts=1)


def stk_query(config: MpesaDepositConfig) -> RetryPolicy:
    """A few quick tries per query; the query loop itself is paced by a durable timer."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=max(config.query_interval_seconds, 1.0)),
        maximum_attempts=3,
        non_retryable_error_types=list(NON_RETRYABLE),
    )


def credit(config: MpesaDepositConfig) -> RetryPolicy:
    """Bounded: when crediting keeps failing the deposit parks for an operator (dead letter)."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=config.credit_initial_interval_seconds),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=60),
        maximum_attempts=config.credit_max_attempts,
        non_retryable_error_types=list(NON_RETRYABLE),
    )


#: an FX rate is cheap to ask again; after this many tries the deposit parks
FX = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=10,
    non_retryable_error_types=list(NON_RETRYABLE),
)

#: waiting for confirmations outlasts any node outage: keep resuming; a revert is final
EVM_CONFIRMATIONS = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=0,
    non_retryable_error_types=list(NON_RETRYABLE),
)


def evm_submit(config: MpesaDepositConfig) -> RetryPolicy:
    """Submitting is idempotent (same key, same signed bytes): retry, then park."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=config.evm_submit_max_attempts,
        non_retryable_error_types=list(NON_RETRYABLE),
    )


#: reading the chain: retry quickly, for as long as it takes (the node may be restarting)
CHAIN_READ = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,
    non_retryable_error_types=list(NON_RETRYABLE),
)
CHAIN_READ_TIMEOUT = timedelta(seconds=120)
#: how soon a step whose worker died is retried, for activities that heartbeat while alive
#: (``activities.liveness.keep_alive``); without it a killed worker stalled the step for its
#: whole start-to-close timeout (the chain scanner saw no deposit for two minutes)
LIVENESS_HEARTBEAT = timedelta(seconds=10)


def provider_timeout(config: MpesaDepositConfig) -> timedelta:
    return timedelta(seconds=config.provider_timeout_seconds)


# --- tickets ----------------------------------------------------------------------------------

#: Stripe calls carry their Idempotency-Key: retrying a transient failure is the same request
STRIPE = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=8,
    non_retryable_error_types=list(NON_RETRYABLE),
)
#: creating (and confirming) the payment: an ambiguous failure (timeout, dropped connection, 5xx)
#: may have charged the card, so it is asked again with the same Idempotency-Key until Stripe
#: answers (a replayed key returns the original PaymentIntent); only a definitive answer (declined,
#: invalid) ends the purchase as failed. Unbounded, visible after STEP_ALERT_AFTER_ATTEMPTS.
#: Stripe keeps a key for 24 hours: an outage longer than that is an operator's (the step shows
#: ``retrying`` long before).
STRIPE_PAYMENT = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=0,
    non_retryable_error_types=list(NON_RETRYABLE),
)
#: the saga's refund must happen: after these attempts the purchase parks for an operator
STRIPE_REFUND = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=10,
    non_retryable_error_types=list(NON_RETRYABLE),
)
#: NFT moves (transfer, freeze, burn) and look-ups
SOLANA = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=8,
    non_retryable_error_types=list(NON_RETRYABLE),
)
SOLANA_TIMEOUT = timedelta(seconds=90)
#: emails: a few tries; a message that will not go is recorded as failed, the purchase goes on
EMAIL = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=5,
    non_retryable_error_types=list(NON_RETRYABLE),
)
#: webhooks on a schedule: 5 s, 15 s, 45 s ... up to an hour apart, for about a day
WEBHOOK = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=3.0,
    maximum_interval=timedelta(hours=1),
    maximum_attempts=30,
    non_retryable_error_types=list(NON_RETRYABLE),
)
NOTIFY_TIMEOUT = timedelta(seconds=60)


def mint(max_attempts: int) -> RetryPolicy:
    """Minting retries transient failures; a program error or exhausted attempts ends in the
    purchase's compensation (a refund)."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=2),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=max_attempts,
        non_retryable_error_types=list(NON_RETRYABLE),
    )


#: hashing an upload: local disk; a missing upload is permanent
HASH_UPLOAD = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_attempts=3,
    non_retryable_error_types=[*NON_RETRYABLE, "UploadMissing"],
)

#: reading a manifest from an IPFS gateway, or the registry: a few quick tries ride out a blip;
#: a 404, an oversize or unparsable manifest, or no contract at the address, end the job at once
VERIFICATION_READ = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
    non_retryable_error_types=list(NON_RETRYABLE),
)


def intent_credit(max_attempts: int) -> RetryPolicy:
    """Crediting an on-chain deposit: bounded, then the watch parks for an operator (a credit
    that keeps failing never fails the watch, and never retries forever in silence)."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=max(1, max_attempts),
        non_retryable_error_types=list(NON_RETRYABLE),
    )


#: retried without bound on purpose (the step must happen, or outlasts an outage): they rely on the
#: visibility rule alone (``tests/unit/test_retry_policies.py`` keeps this list honest)
UNBOUNDED = (
    DB_BOOKKEEPING,
    EVM_CONFIRMATIONS,
    CHAIN_READ,
    # a payment that may have been taken must be resolved, never assumed failed
    STRIPE_PAYMENT,
)
