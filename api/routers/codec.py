"""The codec server: the Temporal Web UI (and ``temporal --codec-endpoint``) decrypt through it.

``POST /codec/decode`` and ``POST /codec/encode`` speak the UI's remote-codec protocol: a JSON body
``{"payloads": [{"metadata": {"encoding": "<base64>"}, "data": "<base64>"}]}`` (protobuf JSON of
``temporal.api.common.v1.Payloads``), answered in the same shape. They use the API's own codec
(the one its Temporal client has), and are open only to ``admin`` and ``platform_admin`` tokens:
anyone else sees ciphertext in the UI. CORS for the UI's origin (``CODEC_CORS_ORIGINS``) is set up
by :func:`install_codec_cors`, for these paths only.

The token comes in the ``Authorization`` header (the CLI's ``--codec-auth``, the UI's "pass access
token" behind OIDC) or, for a Web UI without its own login (``make run``'s dev server), in a
cookie: an operator opens ``/codec/session`` in the browser, pastes an admin token, and ticks
"Include cross-origin credentials" in the UI's codec settings. The cookie is HttpOnly, limited to
``/codec`` and SameSite=Strict (the UI on the same host is same-site; other sites never send it).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from api.auth import Principal, Role, decode_token
from api.deps import get_settings_dep
from api.errors import error_responses
from domain.errors import BadRequest, Forbidden, InvalidInput, ServiceUnavailable, Unauthorized
from runtime.codec import PayloadDecryptionError
from runtime.logging import get_logger
from runtime.settings import Settings

log = get_logger("api.codec")
router = APIRouter(prefix="/codec", tags=["codec"])

PREFIX = "/codec"
#: most payloads in one request (the UI sends one event's worth at a time)
MAX_PAYLOADS = 1000
OPERATOR_ROLES = frozenset({Role.ADMIN, Role.PLATFORM_ADMIN})


class JsonPayload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    metadata: dict[str, str] = Field(default_factory=dict, description="values in base64")
    data: str = Field(default="", description="base64")


class CodecPayloads(BaseModel):
    payloads: list[JsonPayload] = Field(max_length=MAX_PAYLOADS)


COOKIE = "settle_codec_token"
_bearer = HTTPBearer(auto_error=False, description="JWT of an admin or platform_admin")


def _operator(token: str, settings: Settings) -> Principal:
    principal = decode_token(token, settings)
    if not (OPERATOR_ROLES & principal.roles):
        raise Forbidden("admin or platform_admin role required to read payloads")
    return principal


def codec_operator(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The bearer token, else the session cookie set by ``/codec/session``."""
    settings = get_settings_dep(request)
    if credentials is not None and credentials.scheme.lower() == "bearer":
        return _operator(credentials.credentials, settings)
    cookie = request.cookies.get(COOKIE)
    if cookie:
        return _operator(cookie, settings)
    raise Unauthorized("missing bearer token")


CodecOperator = Annotated[Principal, Depends(codec_operator)]


def _codec(request: Request) -> PayloadCodec:
    codec = request.app.state.temporal.data_converter.payload_codec
    if codec is None:
        raise ServiceUnavailable("no payload codec is configured")
    codec_: PayloadCodec = codec
    return codec_


def _unb64(value: str, field: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("not valid base64", field=field) from exc


def _to_proto(body: CodecPayloads) -> list[Payload]:
    return [
        Payload(
            metadata={k: _unb64(v, f"payloads.{i}.metadata.{k}") for k, v in p.metadata.items()},
            data=_unb64(p.data, f"payloads.{i}.data"),
        )
        for i, p in enumerate(body.payloads)
    ]


def _to_json(payloads: list[Payload]) -> dict[str, Any]:
    return {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                "data": base64.b64encode(p.data).decode(),
            }
            for p in payloads
        ]
    }


@router.post("/decode", responses=error_responses(400, 401, 403, 422, 503))
async def decode(body: CodecPayloads, principal: CodecOperator, request: Request) -> dict[str, Any]:
    """Decrypt payloads (unencrypted ones come back unchanged)."""
    try:
        decoded = await _codec(request).decode(_to_proto(body))
    except PayloadDecryptionError as exc:
        raise BadRequest(str(exc), field="payloads") from exc
    log.info("payloads decoded", by=principal.subject, tenant=principal.tenant, count=len(decoded))
    return _to_json(decoded)


@router.post("/encode", responses=error_responses(401, 403, 422, 503))
async def encode(body: CodecPayloads, principal: CodecOperator, request: Request) -> dict[str, Any]:
    """Encrypt payloads (the UI encodes what an operator types, e.g. a signal's input)."""
    encoded = await _codec(request).encode(_to_proto(body))
    log.info("payloads encoded", by=principal.subject, tenant=principal.tenant, count=len(encoded))
    return _to_json(encoded)


_LOGIN_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Settle codec session</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>Decrypt payloads in the Temporal Web UI</h1>
<p>Paste a token with role <code>admin</code> or <code>platform_admin</code>
(<code>.venv/bin/python -m api.auth token --sub ops --tenant t1 --roles admin</code>).
It is kept in an HttpOnly cookie for <code>/codec</code> only. Then, in the Web UI's codec
settings, tick <em>Include cross-origin credentials</em>.</p>
<form method="post" action="session">
<input type="password" name="token" size="60" autocomplete="off" required>
<button type="submit">Start session</button></form></body></html>
"""


@router.get("/session", response_class=HTMLResponse, include_in_schema=False)
async def session_page() -> HTMLResponse:
    return HTMLResponse(_LOGIN_PAGE)


@router.post("/session", response_class=HTMLResponse, responses=error_responses(401, 403, 422))
async def start_session(
    token: Annotated[str, Form(min_length=1, max_length=8192)], request: Request
) -> HTMLResponse:
    """Keep an admin token in an HttpOnly cookie for ``/codec`` (a Web UI without its own login
    sends it with "Include cross-origin credentials")."""
    settings = get_settings_dep(request)
    principal = _operator(token, settings)
    response = HTMLResponse(
        "<p>Codec session started: the Web UI now shows decrypted payloads.</p>"
    )
    response.set_cookie(
        COOKIE,
        token,
        max_age=settings.jwt_token_ttl_seconds,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=settings.api_public_url.startswith("https://"),
    )
    log.info("codec session started", by=principal.subject, tenant=principal.tenant)
    return response


class _PathCors:
    """CORS for the codec server's paths only: the UI's origin may call nothing else."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["POST"],
            allow_headers=["Authorization", "Content-Type", "X-Namespace"],
            allow_credentials=True,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(PREFIX + "/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def install_codec_cors(app: FastAPI, settings: Settings) -> None:
    app.add_middleware(_PathCors, origins=list(settings.codec_cors_origins))
