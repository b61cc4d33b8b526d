"""What an operation needs from the running API: settings, database, Temporal, clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.metrics import ApiMetrics
from runtime.settings import Settings


@dataclass(frozen=True)
class Context:
    """The API process's shared parts, handed to every operation function.

    Built per request from ``app.state`` (a few attribute reads); tests build one from a running
    app the same way. ``state`` is kept for the few per-process values an operation updates
    (e.g. when the deposit scanner was last ensured) and the clients made in the app's lifespan
    (``evm``, ``ipfs``, ``solana``, ``rates``)."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    reads: async_sessionmaker[AsyncSession]
    temporal: Client
    metrics: ApiMetrics
    state: Any

    @classmethod
    def of_app_state(cls, state: Any) -> Context:
        return cls(
            settings=state.settings,
            sessions=state.sessions,
            reads=state.reads,
            temporal=state.temporal,
            metrics=state.metrics,
            state=state,
        )
