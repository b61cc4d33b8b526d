"""How to reach Temporal, and how the worker runs."""

from __future__ import annotations

from pydantic import BaseModel, SecretStr

from domain.queues import DEFAULT_PREFIX


class TemporalSettings(BaseModel):
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    #: Temporal Cloud API key; sent as a bearer token with TLS
    temporal_api_key: SecretStr | None = None
    temporal_tls: bool = False
    temporal_tls_client_cert_path: str | None = None
    temporal_tls_client_key_path: str | None = None
    temporal_tls_server_ca_path: str | None = None
    temporal_tls_server_name: str | None = None
    temporal_connect_timeout_seconds: float = 10.0
    #: the Web UI, for links in API answers
    temporal_ui_url: str = "http://127.0.0.1:8233"
    #: prefix of every task-queue name (``settle-workflows``, ``settle-mpesa`` ...)
    task_queue_prefix: str = DEFAULT_PREFIX

    #: Prometheus endpoint of the worker's Temporal SDK metrics
    worker_metrics_bind: str = "127.0.0.1:9464"
    #: how long a SIGTERM'd worker lets in-flight activities finish
    worker_graceful_shutdown_seconds: float = 30.0
    worker_max_concurrent_activities: int = 100
    worker_max_concurrent_workflow_tasks: int = 100

    #: ``make run``'s dev server: SQLite file (kept between runs) and Web UI port
    dev_server_db_file: str = ".data/temporal.db"
    dev_server_ui_port: int = 8233
