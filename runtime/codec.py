"""The payload codec: every payload the API and the worker send to Temporal is encrypted.

Temporal keeps workflow inputs, results, signals and activity arguments in its history, and shows
them in the Web UI; those carry phone numbers, emails and wallet addresses. With this codec in the
client's data converter the server only ever holds AES-256-GCM ciphertext:

- an encrypted payload has ``encoding: binary/encrypted`` and ``encryption-key-id: <id>`` in its
  metadata, and as data a 12-byte nonce followed by the ciphertext of the whole original payload
  (metadata included), authenticated together with the key id;
- one key encrypts; every configured key decrypts (rotation: add a key, make it the encryption key,
  keep the old one for the histories that still need it);
- failure messages and stack traces travel encrypted too (the failure's encoded attributes);
- a payload without that encoding is returned unchanged by ``decode``: histories recorded before
  the codec, and signals sent by hand with ``temporal workflow signal --input``, still read.

``python -m runtime.codec new-key [--id ID]`` prints a fresh ``<id>=<base64>`` key for
``PAYLOAD_CODEC_KEYS``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import os
import re
import secrets
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec

from runtime.failures import EncodedTrimmingFailureConverter, TrimmingFailureConverter
from runtime.settings import Settings

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
KEY_BYTES = 32
NONCE_BYTES = 12
_KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class CodecKeyError(ValueError):
    """A codec key is missing, malformed, or not the size AES-256 needs."""


class PayloadDecryptionError(ValueError):
    """An encrypted payload names an unknown key, or its ciphertext does not authenticate."""


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM with the key id in the metadata; see the module docstring."""

    def __init__(self, keys: Mapping[str, bytes], encryption_key_id: str) -> None:
        if encryption_key_id not in keys:
            raise CodecKeyError(f"encryption key {encryption_key_id!r} is not among the keys")
        for key_id, key in keys.items():
            _check(key_id, key)
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.encryption_key_id = encryption_key_id

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._ciphers)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        key_id = self.encryption_key_id
        cipher = self._ciphers[key_id]
        out = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), key_id.encode())
            out.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID: key_id.encode()},
                    data=nonce + sealed,
                )
            )
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decode_one(payload) for payload in payloads]

    def _decode_one(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # not ours: recorded before the codec, or sent by hand
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadDecryptionError(f"payload encrypted with unknown key {key_id!r}")
        data = payload.data
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], key_id.encode())
        except (InvalidTag, ValueError) as exc:  # ValueError: data shorter than a nonce
            raise PayloadDecryptionError(
                f"payload does not authenticate with key {key_id!r}"
            ) from exc
        return Payload.FromString(plain)


def _check(key_id: str, key: bytes) -> None:
    if not _KEY_ID_PATTERN.fullmatch(key_id):
        raise CodecKeyError(f"codec key id {key_id!r}: letters, digits, '.', '_', '-' (1-64)")
    if len(key) != KEY_BYTES:
        raise CodecKeyError(f"codec key {key_id!r} is {len(key)} bytes; AES-256 needs {KEY_BYTES}")


def _b64(key_id: str, text: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CodecKeyError(f"codec key {key_id!r} is not valid base64") from exc


def parse_keys(text: str) -> dict[str, bytes]:
    """``id=base64,id2=base64`` as a key map."""
    keys: dict[str, bytes] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key_id, sep, encoded = item.strip().partition("=")
        if not sep:
            raise CodecKeyError("PAYLOAD_CODEC_KEYS entries are <id>=<base64 key>")
        keys[key_id.strip()] = _b64(key_id, encoded)
    return keys


def read_key_dir(folder: str | Path) -> dict[str, bytes]:
    """Every ``<id>.key`` file of ``folder`` (the id is the file name without ``.key``)."""
    path = Path(folder)
    if not path.is_dir():
        raise CodecKeyError(f"PAYLOAD_CODEC_KEY_DIR {str(path)!r} is not a folder")
    return {f.stem: _b64(f.stem, f.read_text()) for f in sorted(path.glob("*.key"))}


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def ensure_dev_key(folder: str | Path) -> dict[str, bytes]:
    """The local stack's keys, generating ``dev.key`` the first time. The API and the worker
    start together: the file appears whole (written aside, then linked) or not at all."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys = read_key_dir(path)
    if keys:
        return keys
    staging = path / f".dev.key.{os.getpid()}.{secrets.token_hex(4)}"
    staging.write_text(new_key() + "\n")
    staging.chmod(0o600)
    try:
        os.link(staging, path / "dev.key")
    except FileExistsError:
        pass  # the other process won; use its key
    finally:
        staging.unlink()
    return read_key_dir(path)


def codec_from_settings(settings: Settings) -> EncryptionCodec | None:
    """The configured codec; a generated dev key in local mode; None (no encryption) only in
    test mode without keys. Production without keys is refused by the settings already."""
    keys: dict[str, bytes] = {}
    if settings.payload_codec_keys is not None:
        keys |= parse_keys(settings.payload_codec_keys.get_secret_value())
    if settings.payload_codec_key_dir:
        keys |= read_key_dir(settings.payload_codec_key_dir)
    if not keys and settings.settle_env == "local":
        keys = ensure_dev_key(settings.payload_codec_dev_key_dir)
    if not keys:
        if settings.settle_env == "production":
            raise CodecKeyError("SETTLE_ENV=production needs a payload codec key")
        return None
    encryption_key_id = settings.payload_codec_encryption_key_id
    if encryption_key_id is None:
        if len(keys) != 1:
            raise CodecKeyError(
                "several payload codec keys: set PAYLOAD_CODEC_ENCRYPTION_KEY_ID to the one that "
                f"encrypts (one of {sorted(keys)})"
            )
        (encryption_key_id,) = keys
    return EncryptionCodec(keys, encryption_key_id)


def with_codec(codec: PayloadCodec | None) -> DataConverter:
    """Settle's data converter (pydantic), with ``codec`` when there is one. Failures are trimmed
    to fit Temporal's size limit either way (:mod:`runtime.failures`)."""
    if codec is None:
        return dataclasses.replace(
            pydantic_data_converter, failure_converter_class=TrimmingFailureConverter
        )
    # failure messages and stack traces go into the failure's encoded attributes, through the
    # codec: an error that quotes an address or an email is not kept in clear either
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=EncodedTrimmingFailureConverter,
    )


def data_converter(settings: Settings) -> DataConverter:
    return with_codec(codec_from_settings(settings))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.codec")
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("new-key", help="print <id>=<base64 key> for PAYLOAD_CODEC_KEYS")
    make.add_argument("--id", default=f"k{datetime.now(UTC):%Y%m%d}")
    args = parser.parse_args(argv)
    _check(args.id, b"\0" * KEY_BYTES)
    sys.stdout.write(f"{args.id}={new_key()}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
