"""Every retry policy is bounded, or named as unbounded and left to the visibility rule; and the
worker installs that rule (and the database-refusal rule) on every activity worker."""

from __future__ import annotations

import inspect

from temporalio.common import RetryPolicy

import worker as worker_module
from domain.mpesa import MpesaDepositConfig
from runtime.interceptors import DatabaseErrorInterceptor, StepVisibilityInterceptor
from runtime.settings import Settings
from workflows import monitor, policies
from workflows.dead_letter import StepVisibility


def test_unbounded_policies_are_the_named_ones() -> None:
    constants = [v for v in vars(policies).values() if isinstance(v, RetryPolicy)]
    constants.append(monitor.MONITOR_RETRY)
    config = MpesaDepositConfig()
    for _name, fn in inspect.getmembers(policies, inspect.isfunction):
        params = inspect.signature(fn).parameters
        if fn.__module__ != policies.__name__ or list(params) not in (["config"], ["max_attempts"]):
            continue
        made = fn(config) if "config" in params else fn(5)
        if isinstance(made, RetryPolicy):
            constants.append(made)
    unbounded = [p for p in constants if not p.maximum_attempts]
    assert unbounded and all(any(p is u for u in policies.UNBOUNDED) for p in unbounded)


def test_every_worker_reports_failing_steps_and_refused_writes() -> None:
    settings = Settings(_env_file=None, step_alert_after_attempts=4)
    interceptors = worker_module.activity_interceptors(settings.step_alert_after_attempts)
    kinds = [type(i) for i in interceptors]
    assert kinds[0] is StepVisibilityInterceptor  # outermost: sees the error as it leaves
    assert DatabaseErrorInterceptor in kinds


def test_every_workflow_takes_step_reports() -> None:
    """A report sent to a workflow without the handler would wait unhandled in its history."""
    missing = [w.__name__ for w in worker_module.WORKFLOWS if not issubclass(w, StepVisibility)]
    assert missing == []
