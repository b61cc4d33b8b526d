"""The answer models of content verification jobs, and the upload a job starts from.

Formerly in ``api/routers/verification_jobs.py``. ``Accepted``, ``JobView`` and ``JobList`` share
their names with other routers' models, so FastAPI names their OpenAPI components after their
module (``api__routers__verification_jobs__JobView``): their ``__module__`` is pinned to the old
module in their class bodies, so the published schema keeps those names. (Pinned there, not
after the class: the schema's name is fixed when the class is built. And without ``from
__future__ import annotations``: the annotations must not be looked up in the pinned module.)
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from api.callbacks import CallbackView
from api.timestamps import UtcDateTime

#: the module these models were defined in, which names their OpenAPI components
_OPENAPI_MODULE = "api.routers.verification_jobs"


class Accepted(BaseModel):
    __module__ = _OPENAPI_MODULE  # pinned: see the module's docstring

    mode: str = "async"
    jobId: str
    status: str
    message: str
    pollUrl: str
    #: with a callback_url: its endpoint id and signing secret (shown once)
    callback: CallbackView | None = None


class JobView(BaseModel):
    __module__ = _OPENAPI_MODULE  # pinned: see the module's docstring

    id: str
    jobId: str
    type: str
    status: str
    progress: int
    mode: str
    contentHash: str | None
    manifestUri: str
    registryAddress: str
    fileName: str | None
    fileSize: int
    result: dict[str, Any] | None
    error: str | None
    createdAt: UtcDateTime
    startedAt: UtcDateTime | None
    completedAt: UtcDateTime | None
    pollUrl: str


class JobList(BaseModel):
    __module__ = _OPENAPI_MODULE  # pinned: see the module's docstring

    jobs: list[JobView]
    total: int
    limit: int
    offset: int


class JobStats(BaseModel):
    #: whether jobs can be queued now (Temporal answers); when not, the inline fallback serves
    available: bool
    waiting: int
    active: int
    completed: int
    failed: int


class Upload(BaseModel):
    """A file received for a job, waiting in ``VERIFICATION_UPLOAD_DIR`` as ``name``."""

    path: Path
    name: str
    file_name: str | None
    size: int
    registry: str
    manifest_uri: str
    callback_url: str | None = None


@dataclass(frozen=True)
class Done:
    """The job ended before the answer: within ``?wait=``, or run inline because Temporal could
    not be reached (answered 200 with ``mode: sync``)."""

    job: JobView
    #: the callback made with the job (the ``?wait=`` answer shows it once)
    callback: CallbackView | None = None
