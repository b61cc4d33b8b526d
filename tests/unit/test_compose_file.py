"""docker-compose.temporal.yml is for users (no Docker engine here): parse it and check that its
services, ports and setting names agree with the code."""

from __future__ import annotations

from pathlib import Path

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
    assert "7233:7233" in temporal["ports"]
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


def test_search_attributes_are_registered_by_admin_tools() -> None:
    entrypoint = COMPOSE["services"]["temporal-admin-tools"]["entrypoint"]
    for name in ("SettleKind", "SettleTenant", "SettleUser", "SettleStatus"):
        assert f"--name {name} --type Keyword" in entrypoint


def test_worker_grace_period_exceeds_the_graceful_shutdown_setting() -> None:
    grace = int(COMPOSE["services"]["settle-worker"]["stop_grace_period"].rstrip("s"))
    assert grace > Settings.model_fields["worker_graceful_shutdown_seconds"].default


def test_api_and_worker_share_the_verification_upload_folder() -> None:
    folder = COMPOSE["services"]["settle-api"]["environment"]["VERIFICATION_UPLOAD_DIR"]
    for service in ("settle-api", "settle-worker"):
        assert f"uploads:{folder}" in COMPOSE["services"][service]["volumes"]
    assert "uploads" in COMPOSE["volumes"]
