"""An IPFS path gateway over a local folder, plus Kubo's ``/api/v0/add``, for ``make run`` and the
tests.

``GET``/``HEAD /ipfs/<cid>`` serves the file ``<dir>/<cid>``; ``/ipfs/<cid>/<path>`` serves
``<dir>/<cid>/<path>`` (a folder named after the CID). Nothing outside the folder is ever
served, and a CID that does not parse is a 400 as on a real gateway. The folder is trusted: a file
dropped in by hand is served under whatever name it has, which is how tests make a gateway lie.

``POST /api/v0/add`` (multipart, field ``file``) stores the bytes as ``<dir>/<raw CIDv1>`` and
answers Kubo's ``{"Name", "Hash", "Size"}``. Kubo gives that CID to a file of up to one block
(256 KiB) with ``--cid-version=1 --raw-leaves``; larger files get a UnixFS (dag-pb) root there,
here they stay one raw block.

``GET /_sandbox/state`` (not IPFS) shows the request counters.
"""

from __future__ import annotations

import mimetypes
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from domain.content import raw_cid
from domain.credentials import validate_cid
from runtime.logging import get_logger

log = get_logger("sandbox.ipfs")


@dataclass
class IpfsState:
    directory: Path
    #: requests by kind: get, head, add, not_found, bad_cid
    requests: Counter[str] = field(default_factory=Counter)
    #: CIDs stored through /api/v0/add, in order
    added: list[str] = field(default_factory=list)


def _target(directory: Path, cid: str, path: str) -> Path | None:
    """The file ``cid`` (and ``path``) names inside ``directory``; None when there is none or
    the name would leave the folder."""
    root = directory.resolve()
    target = (root / cid / path) if path else (root / cid)
    try:
        resolved = target.resolve()
    except OSError:
        return None
    if not resolved.is_relative_to(root) or resolved == root:
        return None
    if resolved.is_dir():
        resolved = resolved / "index.html"
    return resolved if resolved.is_file() else None


def _store(directory: Path, name: str, data: bytes) -> None:
    """Write through a temporary file, so a reader never sees half a block."""
    directory.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".add-")
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    Path(temporary).replace(directory / name)


def create_ipfs_app(directory: Path) -> FastAPI:
    directory.mkdir(parents=True, exist_ok=True)
    state = IpfsState(directory)
    # handlers are plain functions: FastAPI runs them in its thread pool, so file I/O never
    # blocks the event loop the tests share with the sandbox
    app = FastAPI(
        title="Sandbox IPFS gateway",
        docs_url="/_sandbox/docs",
        openapi_url="/_sandbox/openapi.json",
    )
    app.state.sandbox = state

    def serve(request: Request, cid: str, path: str = "") -> Response:
        kind = request.method.lower()
        state.requests[kind] += 1
        try:
            validate_cid(cid)
        except ValueError as exc:
            state.requests["bad_cid"] += 1
            return Response(f"invalid CID {cid!r}: {exc}\n", status_code=400)
        target = _target(state.directory, cid, path)
        if target is None:
            state.requests["not_found"] += 1
            return Response(f"ipfs://{cid}/{path}: not found\n", status_code=404)
        size = target.stat().st_size
        headers = {
            "Etag": f'"{cid}"',
            "X-Ipfs-Path": f"/ipfs/{cid}/{path}" if path else f"/ipfs/{cid}",
            "Cache-Control": "public, max-age=29030400, immutable",
        }
        media_type = (mimetypes.guess_type(path)[0] if path else None) or "application/octet-stream"
        if kind == "head":
            return Response(headers={**headers, "Content-Length": str(size)}, media_type=media_type)
        return Response(target.read_bytes(), headers=headers, media_type=media_type)

    app.add_api_route("/ipfs/{cid}", serve, methods=["GET", "HEAD"])
    app.add_api_route("/ipfs/{cid}/{path:path}", serve, methods=["GET", "HEAD"])

    @app.post("/api/v0/add")
    def add(file: UploadFile) -> JSONResponse:
        state.requests["add"] += 1
        data = file.file.read()
        cid = raw_cid(data)
        _store(state.directory, cid, data)
        state.added.append(cid)
        log.info("sandbox ipfs added", cid=cid, bytes=len(data))
        return JSONResponse({"Name": file.filename or cid, "Hash": cid, "Size": str(len(data))})

    @app.get("/_sandbox/state")
    async def sandbox_state() -> dict[str, object]:
        return {
            "directory": str(state.directory),
            "requests": dict(state.requests),
            "added": state.added,
        }

    return app
