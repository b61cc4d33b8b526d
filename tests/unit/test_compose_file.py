"""docker-compose.temporal.yml is for users (no Docker engine here): parse it and check that its
services, ports and setting names agree with the code, and that the topology is closed: only the
API and the Web UI (behind OIDC) published, mTLS to Temporal, no literal password."""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.temporal.yml").read_text())
SETTLE_SERVICES = ("settle-api", "settle-worker", "settle-migrate")


def test_services_of_the_production_topology() -> None:
    assert {
        "postgresql",
        "temporal",
        "temporal-ui",
        "temporal-admin-tools",
        *SETTLE_SERVICES,
    } <= set(COMPOSE["services"])
    temporal = COMPOSE["services"]["temporal"]
    assert temporal["environment"]["DB"].startswith("postgres")
    assert "8080:8080" in COMPOSE["services"]["temporal-ui"]["ports"]
    assert "8000:8000" in COMPOSE["services"]["settle-api"]["ports"]
    assert COMPOSE["services"]["settle-worker"]["command"] == ["python", "worker.py"]


def test_setting_names_are_the_ones_the_code_reads() -> None:
    known = {name.upper() for name in Settings.model_fields}
    for service in SETTLE_SERVICES:
        env = COMPOSE["services"][service]["environment"]
        unknown = sorted(set(env) - known)
        assert not unknown, f"{service} sets names the code does not read: {unknown}"
        assert env["SETTLE_ENV"] == "production"
        assert env["DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
        assert env["TEMPORAL_TLS"] == "true"
        for name in ("CLIENT_CERT", "CLIENT_KEY", "SERVER_CA"):
            assert env[f"TEMPORAL_TLS_{name}_PATH"].startswith("/certs/")
        assert env["TEMPORAL_TLS_SERVER_NAME"] == "temporal"


def test_search_attributes_are_registered_by_admin_tools() -> None:
    entrypoint = COMPOSE["services"]["temporal-admin-tools"]["entrypoint"]
    for name in ("SettleKind", "SettleTenant", "SettleUser", "SettleStatus"):
        assert f"--name {name} --type Keyword" in entrypoint
    assert "--name SettleRefs --type KeywordList" in entrypoint


def test_worker_grace_period_exceeds_the_graceful_shutdown_setting() -> None:
    grace = int(COMPOSE["services"]["settle-worker"]["stop_grace_period"].rstrip("s"))
    assert grace > Settings.model_fields["worker_graceful_shutdown_seconds"].default


def test_api_and_worker_share_the_verification_upload_folder() -> None:
    folder = COMPOSE["services"]["settle-api"]["environment"]["VERIFICATION_UPLOAD_DIR"]
    for service in ("settle-api", "settle-worker"):
        assert f"uploads:{folder}" in COMPOSE["services"][service]["volumes"]
    assert "uploads" in COMPOSE["volumes"]


#: the only services that may publish a port on the host, and what
PUBLISHED = {"settle-api": ["8000:8000"], "temporal-ui": ["8080:8080"]}
SECRET_NAME = re.compile(r"PASSWORD|PWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|MNEMONIC", re.I)
REFERENCE = re.compile(r"^\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}$")


def test_only_the_api_and_the_web_ui_are_published() -> None:
    for name, service in COMPOSE["services"].items():
        assert service.get("ports", []) == PUBLISHED.get(name, []), (
            f"{name} publishes {service.get('ports')}: databases and Temporal's gRPC port stay "
            "inside the compose network"
        )
        assert service.get("network_mode") != "host", name


def test_every_service_restarts() -> None:
    for name, service in COMPOSE["services"].items():
        assert service.get("restart") in ("unless-stopped", "always", "on-failure"), name


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_no_password_or_secret_is_a_literal() -> None:
    for name, service in COMPOSE["services"].items():
        for key, value in _environment(service).items():
            if SECRET_NAME.search(key) and value.lower() not in ("true", "false"):
                # (a flag such as TEMPORAL_CODEC_PASS_ACCESS_TOKEN names a token, holds none)
                assert value == "" or REFERENCE.match(value), (
                    f"{name}: {key} must come from the env file (or be blanked out)"
                )
            # credentials inside URLs too (postgresql://user:password@host)
            for userinfo in re.findall(r"://[^/@\s]*:([^/@\s]+)@", value):
                assert REFERENCE.match(userinfo), f"{name}: {key} has a literal password"
    init = (ROOT / "deploy" / "postgres-init.sh").read_text()
    assert "PASSWORD '" not in init and "SETTLE_DB_PASSWORD" in init


def test_the_api_gets_no_private_key() -> None:
    api = _environment(COMPOSE["services"]["settle-api"])
    for key in ("TREASURY_PRIVATE_KEY", "SOLANA_AUTHORITY_KEYPAIR", "DEPOSIT_HD_MNEMONIC"):
        assert api[key] == "", key
    worker = _environment(COMPOSE["services"]["settle-worker"])
    assert "TREASURY_PRIVATE_KEY" not in worker  # the worker signs: from the env file


def test_temporal_requires_client_certificates_and_the_ui_a_login() -> None:
    temporal = _environment(COMPOSE["services"]["temporal"])
    assert temporal["TEMPORAL_TLS_REQUIRE_CLIENT_AUTH"] == "true"
    assert temporal["TEMPORAL_TLS_FRONTEND_CERT"].startswith("/certs/")
    ui = _environment(COMPOSE["services"]["temporal-ui"])
    assert ui["TEMPORAL_AUTH_ENABLED"] == "true"
    assert ui["TEMPORAL_TLS_CERT"].startswith("/certs/")
    for service in (
        "temporal",
        "temporal-ui",
        "temporal-admin-tools",
        "settle-api",
        "settle-worker",
    ):
        assert "./deploy/certs:/certs:ro" in COMPOSE["services"][service]["volumes"], service


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
async def test_make_certs_gives_a_working_mutual_tls_pair(tmp_path: Path) -> None:
    """The documented script's certificates: the server accepts Settle's client certificate and
    refuses a client without one."""
    made = await asyncio.create_subprocess_exec(
        "sh", str(ROOT / "deploy" / "make-certs.sh"), str(tmp_path), stdout=subprocess.DEVNULL
    )
    assert await made.wait() == 0
    assert (tmp_path / "settle.key").stat().st_mode & 0o077 == 0
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tmp_path / "ca.pem")
    server_ctx.load_cert_chain(tmp_path / "temporal.pem", tmp_path / "temporal.key")
    server_ctx.verify_mode = ssl.CERT_REQUIRED

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]

    def client(with_cert: bool) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=tmp_path / "ca.pem")
        if with_cert:
            ctx.load_cert_chain(tmp_path / "settle.pem", tmp_path / "settle.key")
        return ctx

    async with server:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client(True), server_hostname="temporal"
        )
        assert await reader.read() == b"ok"
        writer.close()
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client(False), server_hostname="temporal"
            )
            data = await reader.read()
            if not data:
                raise ConnectionError("closed without a client certificate")


def test_retention_is_set_explicitly_from_one_setting() -> None:
    """The namespace's retention comes from TEMPORAL_RETENTION_DAYS (the image's default and
    admin-tools' update on an existing namespace), and Cleanup's exports land on a volume."""
    reference = "${TEMPORAL_RETENTION_DAYS:-30}"
    temporal = _environment(COMPOSE["services"]["temporal"])
    assert temporal["DEFAULT_NAMESPACE_RETENTION"] == f"{reference}d"
    tools = COMPOSE["services"]["temporal-admin-tools"]
    assert _environment(tools)["TEMPORAL_RETENTION_DAYS"] == reference
    assert "temporal operator namespace update --namespace default" in tools["entrypoint"]
    # $$ is compose's escape: the shell inside the container expands the variable
    assert "--retention $${TEMPORAL_RETENTION_DAYS}d" in tools["entrypoint"]
    worker = COMPOSE["services"]["settle-worker"]
    env = _environment(worker)
    assert env["TEMPORAL_RETENTION_DAYS"] == reference
    assert env["ROW_RETENTION_DAYS"] == "${ROW_RETENTION_DAYS:-90}"
    assert f"exports:{env['CLEANUP_EXPORT_DIR']}" in worker["volumes"]
    assert "exports" in COMPOSE["volumes"]
