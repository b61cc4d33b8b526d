"""Content verification: IPFS gateway, ContentRegistry, upload limits, synchronous answers."""

from __future__ import annotations

from pydantic import BaseModel

#: where ContentRegistry lands when anvil's account #3 deploys it as its first transaction
SANDBOX_CONTENT_REGISTRY_ADDRESS = "0x057ef64E23666F000b34aE31332854aCBd1c8544"


class VerificationSettings(BaseModel):
    #: an IPFS HTTP gateway: ipfs://<cid>/<path> is read from <gateway>/ipfs/<cid>/<path>
    ipfs_gateway_url: str = "http://127.0.0.1:8104"
    #: one gateway request may take this long before it is retried
    ipfs_timeout_seconds: float = 10.0
    #: a manifest larger than this is refused without reading the rest
    ipfs_max_manifest_bytes: int = 64 * 1024
    #: the ContentRegistry a verification reads when the request names none
    content_registry_address: str = SANDBOX_CONTENT_REGISTRY_ADDRESS
    #: largest file POST /api/verification-jobs/{verify,proof} accepts (413 above)
    verification_max_upload_bytes: int = 10 * 1024 * 1024
    #: uploads wait here until their job has hashed them; the API and the workers serving the
    #: `verification` queue must share it (one volume) when they run on different machines
    verification_upload_dir: str = ".data/uploads"
    #: an upload this old whose job has finished or was never started is removed (the API
    #: stopped between saving it and starting the job); queued or active jobs keep theirs
    verification_orphan_upload_seconds: float = 900.0
    #: longest ?wait= a caller may ask for, in seconds
    verification_max_wait_seconds: float = 30.0
    #: when Temporal cannot be reached, run the same steps in the API and answer
    #: {"mode": "sync", "result": ...} instead of 503
    verification_inline_fallback: bool = True
    #: activities of the `verification` queue (hashing uploads) one worker runs at once
    verification_concurrency: int = 8
