"""A JSON-RPC proxy in front of a node: counts calls per method (and the most in flight at once),
can hold a method's calls for a while (a slow provider), and (optionally) refuses ``eth_getLogs``
over more than ``max_log_range`` blocks the way hosted providers do.

Used by the tests (no log may be missed when ranges are refused) and by the benchmark (RPC calls
per minute, per design).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def _block(value: Any, head: int) -> int:
    if isinstance(value, str) and value.startswith("0x"):
        return int(value, 16)
    return head


class RpcProxy:
    def __init__(self, upstream: str, *, max_log_range: int | None = None) -> None:
        self.upstream = upstream
        self.max_log_range = max_log_range
        self.calls: Counter[str] = Counter()
        #: seconds each call of a method is held before it is forwarded
        self.delays: dict[str, float] = {}
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self.refused = 0
        self.app = FastAPI()
        self._http = httpx.AsyncClient(timeout=30)
        self.app.post("/")(self._handle)

    def reset(self) -> None:
        self.calls.clear()
        self.max_in_flight.clear()
        self.refused = 0

    async def _handle(self, request: Request) -> JSONResponse:
        body = await request.json()
        single = isinstance(body, dict)
        calls = [body] if single else body
        answers = [await self._one(call) for call in calls]
        return JSONResponse(answers[0] if single else answers)

    async def _one(self, call: dict[str, Any]) -> dict[str, Any]:
        method = call.get("method", "")
        self.calls[method] += 1
        if method == "eth_getLogs" and self.max_log_range is not None:
            params = (call.get("params") or [{}])[0]
            head = 2**63
            span = _block(params.get("toBlock"), head) - _block(params.get("fromBlock"), 0) + 1
            if span > self.max_log_range:
                self.refused += 1
                return {
                    "jsonrpc": "2.0",
                    "id": call.get("id"),
                    "error": {
                        "code": -32602,
                        "message": (
                            "Log response size exceeded. You can make eth_getLogs requests "
                            f"with up to a {self.max_log_range} block range."
                        ),
                    },
                }
        self.in_flight[method] += 1
        self.max_in_flight[method] = max(self.max_in_flight[method], self.in_flight[method])
        try:
            if method in self.delays:
                await asyncio.sleep(self.delays[method])
            response = await self._http.post(self.upstream, json=call)
        finally:
            self.in_flight[method] -= 1
        answer: dict[str, Any] = response.json()
        return answer
