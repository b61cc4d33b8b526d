"""A small in-process TTL cache with hit/miss counters, and the registry a process keeps its
caches in (``GET /api/v1/cache/stats`` reads one).

Only providers and activities use these: a workflow never does (its inputs come from activity
results recorded in its history, so a replay never consults a cache). Each process has its own
caches; nothing is shared between the API and the worker.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")


@dataclass(frozen=True)
class CacheStats:
    name: str
    size: int
    hits: int
    misses: int
    ttl_seconds: float

    @property
    def hit_ratio(self) -> float | None:
        """Hits per look-up; None before the first look-up."""
        total = self.hits + self.misses
        return self.hits / total if total else None

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "size": self.size,
            "hits": self.hits,
            "misses": self.misses,
            "hit_ratio": self.hit_ratio,
            "ttl_seconds": self.ttl_seconds,
        }


class TTLCache(Generic[V]):
    """Values kept ``ttl_seconds`` after they were loaded, at most ``max_entries`` (oldest out).

    :meth:`get_or_load` counts a hit when a fresh value is there, a miss when it has to load;
    concurrent misses for one key share one load. A failed load is not cached.
    """

    def __init__(
        self,
        name: str,
        ttl_seconds: float,
        *,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self._loading: dict[Hashable, asyncio.Future[V]] = {}
        self.hits = 0
        self.misses = 0

    def _fresh(self, key: Hashable) -> tuple[bool, V | None]:
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        if self._clock() >= entry[0]:
            del self._entries[key]
            return False, None
        return True, entry[1]

    async def get_or_load(self, key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        found, value = self._fresh(key)
        if found:
            self.hits += 1
            return value  # type: ignore[return-value]
        self.misses += 1
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            self._loading.pop(key, None)
        future.set_result(value)
        if self.ttl_seconds > 0:
            self._entries[key] = (self._clock() + self.ttl_seconds, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> int:
        """Drops every entry (counters stay: they describe the process's life); returns how many."""
        dropped = len(self._entries)
        self._entries.clear()
        return dropped

    def stats(self) -> CacheStats:
        now = self._clock()
        size = sum(1 for expires, _ in self._entries.values() if now < expires)
        return CacheStats(self.name, size, self.hits, self.misses, self.ttl_seconds)


class CacheRegistry:
    """The caches of one process, by name."""

    def __init__(self) -> None:
        self._caches: dict[str, TTLCache[object]] = {}

    def register(self, cache: TTLCache[V]) -> TTLCache[V]:
        if cache.name in self._caches:
            raise ValueError(f"a cache named {cache.name!r} is registered already")
        self._caches[cache.name] = cache  # type: ignore[assignment]
        return cache

    def stats(self) -> list[CacheStats]:
        return [cache.stats() for cache in self._caches.values()]

    def flush(self) -> dict[str, int]:
        """Empties every cache; entries dropped per cache."""
        return {name: cache.clear() for name, cache in self._caches.items()}
