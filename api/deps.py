"""Dependency aliases: ``SettingsDep``, ``SessionDep``, ``TemporalDep``, ``CurrentUser``, ...."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.auth import Principal, Role, decode_token
from api.metrics import ApiMetrics
from domain.errors import Forbidden, Unauthorized
from operations.context import Context
from providers.evm import EvmClient
from runtime.settings import Settings

bearer = HTTPBearer(auto_error=False, description="JWT with sub, tenant and roles claims")


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    return sessions


def get_reads(request: Request) -> async_sessionmaker[AsyncSession]:
    reads: async_sessionmaker[AsyncSession] = request.app.state.reads
    return reads


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session in a transaction committed when the handler returns without error."""
    async with get_sessions(request).begin() as session:
        yield session


def get_temporal(request: Request) -> Client:
    client: Client = request.app.state.temporal
    return client


def get_evm(request: Request) -> EvmClient:
    client: EvmClient = request.app.state.evm
    return client


def get_metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


def current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token")
    return decode_token(credentials.credentials, get_settings_dep(request))


def admin_user(principal: Annotated[Principal, Depends(current_user)]) -> Principal:
    """A tenant's ``admin``: acts on that tenant's operations."""
    if not principal.is_admin:
        raise Forbidden("admin role required")
    return principal


def operator_user(principal: Annotated[Principal, Depends(current_user)]) -> Principal:
    """A tenant's ``admin`` (their tenant) or a ``platform_admin`` (every tenant): may read the
    operations state an admin reads."""
    if not (principal.is_admin or principal.is_platform_admin):
        raise Forbidden("admin or platform_admin role required")
    return principal


def staff_user(principal: Annotated[Principal, Depends(current_user)]) -> Principal:
    """``admin`` or ``venue_admin`` (their tenant), or ``platform_admin`` (every tenant): may read
    the operations state."""
    if not ({Role.ADMIN, Role.VENUE_ADMIN, Role.PLATFORM_ADMIN} & principal.roles):
        raise Forbidden("admin, venue_admin or platform_admin role required")
    return principal


def platform_admin_user(principal: Annotated[Principal, Depends(current_user)]) -> Principal:
    """Runs the deployment: what it changes holds for every tenant."""
    if not principal.is_platform_admin:
        raise Forbidden("platform_admin role required")
    return principal


# FastAPI runs a plain ``def`` dependency in its thread pool: a thread hop (and a place in a
# pool of 40) for each of a request's half-dozen dependencies, for work that never blocks. The
# profiles of the accept-latency benchmark showed those hops at 7 % of the API's CPU, and they
# queue under load. The aliases below use ``async def`` twins, run on the event loop; the plain
# functions stay for the callers that call them directly.


async def _settings(request: Request) -> Settings:
    return get_settings_dep(request)


async def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    return get_sessions(request)


async def _reads(request: Request) -> async_sessionmaker[AsyncSession]:
    return get_reads(request)


async def _temporal(request: Request) -> Client:
    return get_temporal(request)


async def _metrics(request: Request) -> ApiMetrics:
    return get_metrics(request)


async def _evm(request: Request) -> EvmClient:
    return get_evm(request)


async def _context(request: Request) -> Context:
    return Context.of_app_state(request.app.state)


async def _current_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    return current_user(request, credentials)


async def _admin_user(principal: Annotated[Principal, Depends(_current_user)]) -> Principal:
    return admin_user(principal)


async def _operator_user(principal: Annotated[Principal, Depends(_current_user)]) -> Principal:
    return operator_user(principal)


async def _staff_user(principal: Annotated[Principal, Depends(_current_user)]) -> Principal:
    return staff_user(principal)


async def _platform_admin_user(
    principal: Annotated[Principal, Depends(_current_user)],
) -> Principal:
    return platform_admin_user(principal)


SettingsDep = Annotated[Settings, Depends(_settings)]
SessionFactoryDep = Annotated[async_sessionmaker[AsyncSession], Depends(_sessions)]
#: sessions that only read
ReadSessionsDep = Annotated[async_sessionmaker[AsyncSession], Depends(_reads)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
TemporalDep = Annotated[Client, Depends(_temporal)]
MetricsDep = Annotated[ApiMetrics, Depends(_metrics)]
EvmDep = Annotated[EvmClient, Depends(_evm)]
#: what an operation in :mod:`operations` needs (settings, sessions, Temporal, clients)
ContextDep = Annotated[Context, Depends(_context)]
CurrentUser = Annotated[Principal, Depends(_current_user)]
AdminUser = Annotated[Principal, Depends(_admin_user)]
OperatorUser = Annotated[Principal, Depends(_operator_user)]
StaffUser = Annotated[Principal, Depends(_staff_user)]
PlatformAdmin = Annotated[Principal, Depends(_platform_admin_user)]
