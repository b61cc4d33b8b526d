"""Temporal client factory: address, namespace, TLS client cert or API key, pydantic converter
with the payload codec (``runtime/codec.py``).

``python -m runtime.temporal register-search-attributes`` registers Settle's custom search
attributes on a cluster that was not started by ``make run`` (the dev server registers them itself).
``python -m runtime.temporal set-retention`` sets the namespace's retention of closed executions to
``TEMPORAL_RETENTION_DAYS`` (``make run``'s dev server does it at start).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    UpdateNamespaceRequest,
)
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError, TLSConfig

from domain.metrics import DURATION_BUCKETS, DURATION_METRIC
from domain.search import indexed_types
from runtime import tracing
from runtime.codec import data_converter
from runtime.settings import Settings, get_settings


def temporal_unreachable(error: BaseException) -> bool:
    """True for the errors that mean "Temporal did not answer": an RPC failure, or the lazy
    client's first connection failing (a RuntimeError from the SDK's bridge)."""
    if isinstance(error, RPCError):
        return True
    return isinstance(error, RuntimeError) and "client connect" in str(error)


def tls_config(settings: Settings) -> TLSConfig | bool:
    """TLS from settings: a client certificate (mTLS), a server CA, or plain TLS for an API key."""
    cert, key = settings.temporal_tls_client_cert_path, settings.temporal_tls_client_key_path
    if bool(cert) != bool(key):
        raise ValueError(
            "TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH go together"
        )
    wants_tls = settings.temporal_tls or cert or settings.temporal_api_key is not None
    if not wants_tls:
        return False
    ca = settings.temporal_tls_server_ca_path
    if not (cert or ca or settings.temporal_tls_server_name):
        return True
    return TLSConfig(
        client_cert=Path(cert).read_bytes() if cert else None,
        client_private_key=Path(key).read_bytes() if key else None,
        server_root_ca_cert=Path(ca).read_bytes() if ca else None,
        domain=settings.temporal_tls_server_name,
    )


def metrics_runtime(bind_address: str) -> Runtime:
    """A Temporal runtime that serves the SDK's metrics, and the counters workflows and activities
    record through its meter, in Prometheus format on ``bind_address`` (one endpoint per worker
    process). Counters carry the ``_total`` suffix Prometheus expects of a counter."""
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=bind_address,
                durations_as_seconds=True,
                counters_total_suffix=True,
                histogram_bucket_overrides={DURATION_METRIC: list(DURATION_BUCKETS)},
            )
        )
    )


async def connect(
    settings: Settings | None = None, *, runtime: Runtime | None = None, lazy: bool = False
) -> Client:
    """Connect to Temporal as configured. ``lazy`` defers the connection to the first call."""
    settings = settings or get_settings()
    api_key = settings.temporal_api_key.get_secret_value() if settings.temporal_api_key else None
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        api_key=api_key,
        tls=tls_config(settings),
        data_converter=data_converter(settings),
        runtime=runtime,
        lazy=lazy,
        interceptors=tracing.temporal_interceptors(),
        connect_timeout=timedelta(seconds=settings.temporal_connect_timeout_seconds),
    )


async def connect_with_retry(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    attempts: int = 60,
    delay_seconds: float = 1.0,
) -> Client:
    """Connect, waiting for a server that is still starting (``make run`` starts all at once)."""
    last: Exception | None = None
    for _ in range(attempts):
        try:
            return await connect(settings, runtime=runtime)
        except RuntimeError as exc:  # the bridge raises RuntimeError on connection failure
            last = exc
            await asyncio.sleep(delay_seconds)
    raise RuntimeError(f"Temporal not reachable after {attempts} attempts: {last}") from last


async def register_search_attributes(client: Client, namespace: str) -> list[str]:
    """Add Settle's search attributes where missing; returns the names added."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    missing = {
        name: IndexedValueType.ValueType(kind)
        for name, kind in indexed_types().items()
        if name not in existing.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)


async def namespace_retention(client: Client, namespace: str) -> timedelta:
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=namespace)
    )
    return described.config.workflow_execution_retention_ttl.ToTimedelta()


async def set_retention(client: Client, namespace: str, days: int) -> timedelta:
    """Set how long the namespace keeps closed executions (only that field is changed);
    returns the retention the server reports afterwards."""
    ttl = Duration()
    ttl.FromTimedelta(timedelta(days=days))
    await client.workflow_service.update_namespace(
        UpdateNamespaceRequest(
            namespace=namespace,
            # the server changes only the config fields that are set
            config=NamespaceConfig(workflow_execution_retention_ttl=ttl),
        )
    )
    return await namespace_retention(client, namespace)


async def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.temporal")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("register-search-attributes", help="add SettleKind/Tenant/User/Status/Refs")
    sub.add_parser(
        "set-retention", help="the namespace keeps closed executions TEMPORAL_RETENTION_DAYS"
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    client = await connect(settings)
    if args.command == "register-search-attributes":
        added = await register_search_attributes(client, settings.temporal_namespace)
        print("added: " + (", ".join(added) if added else "none (all present)"))
    if args.command == "set-retention":
        kept = await set_retention(
            client, settings.temporal_namespace, settings.temporal_retention_days
        )
        print(f"{settings.temporal_namespace} keeps closed executions {kept.days} days")
    return 0


if __name__ == "__main__":
    code = asyncio.run(_main(sys.argv[1:]))
    sys.stdout.flush()
    # skip interpreter teardown: the SDK's bridge threads can abort it (sdk-python#300)
    os._exit(code)
