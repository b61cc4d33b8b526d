"""The payload codec: encryption, key ids, rotation, pass-through, where keys come from."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload

from runtime.codec import (
    ENCODING,
    KEY_ID,
    CodecKeyError,
    EncryptionCodec,
    PayloadDecryptionError,
    codec_from_settings,
    ensure_dev_key,
    parse_keys,
)
from runtime.devserver import command
from runtime.settings import Settings
from tests.unit.test_settings_auth_money import REAL

OLD, NEW = os.urandom(32), os.urandom(32)
PHONE = b'{"phone":"254708374149"}'


def plain(data: bytes = PHONE) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=data)


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


async def test_encrypts_with_the_key_id_in_the_metadata_and_decrypts() -> None:
    codec = EncryptionCodec({"k1": OLD}, "k1")
    (sealed,) = await codec.encode([plain()])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID] == b"k1"
    assert b"2547" not in sealed.SerializeToString()
    (opened,) = await codec.decode([sealed])
    assert opened == plain()


async def test_same_payload_twice_gives_different_ciphertexts() -> None:
    codec = EncryptionCodec({"k1": OLD}, "k1")
    first, second = await codec.encode([plain(), plain()])
    assert first.data != second.data


async def test_unencrypted_payloads_pass_through_decode() -> None:
    codec = EncryptionCodec({"k1": OLD}, "k1")
    assert await codec.decode([plain()]) == [plain()]


async def test_rotation_new_key_encrypts_old_key_still_decrypts() -> None:
    (old_sealed,) = await EncryptionCodec({"old": OLD}, "old").encode([plain()])
    rotated = EncryptionCodec({"old": OLD, "new": NEW}, "new")
    (new_sealed,) = await rotated.encode([plain()])
    assert new_sealed.metadata[KEY_ID] == b"new"
    assert await rotated.decode([old_sealed, new_sealed]) == [plain(), plain()]


async def test_unknown_key_and_tampered_ciphertext_are_refused() -> None:
    (sealed,) = await EncryptionCodec({"old": OLD}, "old").encode([plain()])
    with pytest.raises(PayloadDecryptionError, match="unknown key 'old'"):
        await EncryptionCodec({"new": NEW}, "new").decode([sealed])
    tampered = Payload(metadata=dict(sealed.metadata), data=sealed.data[:-1] + b"\x00")
    with pytest.raises(PayloadDecryptionError, match="does not authenticate"):
        await EncryptionCodec({"old": OLD}, "old").decode([tampered])
    truncated = Payload(metadata=dict(sealed.metadata), data=b"abc")
    with pytest.raises(PayloadDecryptionError):
        await EncryptionCodec({"old": OLD}, "old").decode([truncated])
    # the key id is authenticated too: relabelling a payload does not get it decrypted
    relabelled = Payload(metadata={**sealed.metadata, KEY_ID: b"new"}, data=sealed.data)
    with pytest.raises(PayloadDecryptionError):
        await EncryptionCodec({"old": OLD, "new": OLD}, "new").decode([relabelled])


def test_keys_must_be_32_bytes_of_base64_with_a_plain_id() -> None:
    with pytest.raises(CodecKeyError, match="AES-256 needs 32"):
        EncryptionCodec({"k": b"short"}, "k")
    with pytest.raises(CodecKeyError, match="base64"):
        parse_keys("k=not base64!")
    with pytest.raises(CodecKeyError, match="id"):
        EncryptionCodec({"a b": OLD}, "a b")


def test_keys_from_settings_and_files(tmp_path: Path) -> None:
    (tmp_path / "old.key").write_text(base64.b64encode(OLD).decode() + "\n")
    codec = codec_from_settings(
        settings(
            payload_codec_keys=f"new={base64.b64encode(NEW).decode()}",
            payload_codec_key_dir=str(tmp_path),
            payload_codec_encryption_key_id="new",
        )
    )
    assert codec is not None
    assert (codec.key_ids, codec.encryption_key_id) == (["new", "old"], "new")
    with pytest.raises(CodecKeyError, match="PAYLOAD_CODEC_ENCRYPTION_KEY_ID"):
        codec_from_settings(
            settings(
                payload_codec_keys=f"new={base64.b64encode(NEW).decode()}",
                payload_codec_key_dir=str(tmp_path),
            )
        )


def test_local_mode_generates_one_dev_key_and_keeps_it(tmp_path: Path) -> None:
    folder = tmp_path / "codec-keys"
    first = codec_from_settings(settings(payload_codec_dev_key_dir=str(folder)))
    second = codec_from_settings(settings(payload_codec_dev_key_dir=str(folder)))
    assert first is not None and second is not None
    assert first.key_ids == second.key_ids == ["dev"]
    assert ensure_dev_key(folder) == {"dev": base64.b64decode((folder / "dev.key").read_text())}
    assert (folder / "dev.key").stat().st_mode & 0o077 == 0
    # test mode without keys: no codec (unit tests read plain histories)
    assert codec_from_settings(settings(settle_env="test")) is None


def test_production_refuses_to_start_without_a_codec_key() -> None:
    without = {k: v for k, v in REAL.items() if not k.startswith("payload_codec")}
    with pytest.raises(ValidationError, match="payload codec key"):
        settings(settle_env="production", **without)


def test_make_run_points_the_web_ui_at_the_codec_server(tmp_path: Path) -> None:
    argv = command(settings(dev_server_db_file=str(tmp_path / "temporal.db")))
    at = argv.index("--ui-codec-endpoint")
    assert argv[at + 1] == "http://127.0.0.1:8000/codec"


ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    p
    for folder in ("api", "operations", "workflows", "activities", "runtime", "domain")
    for p in (ROOT / folder).rglob("*.py")
] + [ROOT / "worker.py"]


def test_search_attributes_carry_only_kind_tenant_subject_and_status() -> None:
    """Search attributes are not encrypted (the server indexes them). Every workflow gets its
    attributes from ``start_attributes(kind, tenant, subject)`` and changes only ``SettleStatus``:
    an enum, the token's tenant and subject (opaque ids), an enum. No phone, email, wallet or
    name can get there; this fails when a new call site sets anything else."""
    import re

    starts, upserts = [], []
    for path in SOURCES:
        text = path.read_text()
        starts += [(path.name, m) for m in re.findall(r"search_attributes=([A-Za-z_]+)\(", text)]
        upserts += [(path.name, m) for m in re.findall(r"upsert_search_attributes\((.*)\)", text)]
        assert "search_attributes={" not in text, path
    assert starts and {m for _, m in starts} <= {"start_attributes", "AddSearchAttributesRequest"}
    assert sorted(upserts) == [
        ("refs.py", "[SETTLE_REFS.value_set(merged)]"),
        ("step_visibility.py", "[SETTLE_STATUS.value_set(status.value)]"),
    ]


def test_settle_refs_carry_only_ids_and_hashes() -> None:
    """``SettleRefs`` (``workflows/refs.py``) is in clear too: every ``add_refs`` call passes
    provider ids, receipts, hashes and mints, never a phone, email, name or wallet address."""
    import re

    calls = [
        args
        for path in SOURCES
        for args in re.findall(r"add_refs\(([^)]*)\)", path.read_text())
        if path.name != "refs.py"
    ]
    assert len(calls) >= 8
    for args in calls:
        assert not re.search(r"phone|email|name|wallet|address|owner", args, re.I), args
