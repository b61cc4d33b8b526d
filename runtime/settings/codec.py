"""Payload codec: AES-256-GCM encryption of every payload sent to Temporal, and its codec server.

Keys are 32 random bytes, base64-encoded, each with an id that travels in the payload metadata.
One key encrypts; every key listed decrypts, so a key is rotated by adding a new one, making it the
encryption key, and keeping the old one until no history that needs it is left.
"""

from __future__ import annotations

from pydantic import BaseModel, SecretStr


class CodecSettings(BaseModel):
    #: keys as ``<id>=<base64 of 32 bytes>`` pairs separated by commas
    #: (``python -m runtime.codec new-key`` prints one)
    payload_codec_keys: SecretStr | None = None
    #: a folder of key files, ``<id>.key`` each holding one base64 key (added to the keys above).
    #: With neither set, ``make run`` (SETTLE_ENV=local) generates a dev key into .data/codec-keys/
    #: on first start; SETTLE_ENV=production refuses to start without a key.
    payload_codec_key_dir: str | None = None
    #: the id of the key that encrypts; may be left out when there is only one key
    payload_codec_encryption_key_id: str | None = None
    #: where ``make run`` keeps its generated dev key (SETTLE_ENV=local only)
    payload_codec_dev_key_dir: str = ".data/codec-keys"
    #: origins allowed to call the codec server (/codec/decode, /codec/encode): the Web UI
    codec_cors_origins: list[str] = ["http://127.0.0.1:8233", "http://localhost:8233"]
    #: the dev server's Web UI decodes through this codec server (``make run``); empty: none
    dev_server_ui_codec_endpoint: str = "http://127.0.0.1:8000/codec"
