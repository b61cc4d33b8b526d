"""Token-2022 pieces solana-py does not build: the metadata-pointer, permanent-delegate and
token-metadata instructions, and parsing of mint and token accounts with their extensions.

Byte layouts follow spl-token-2022 and spl-token-metadata-interface: instruction 39/0 initialises
the metadata pointer, 35 the permanent delegate; metadata instructions are identified by the
first 8 bytes of sha256("spl_token_metadata_interface:<name>") and carry borsh strings.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey
from spl.token.constants import TOKEN_2022_PROGRAM_ID

#: Account::LEN (165) + the account-type byte: where a mint's extensions begin
EXTENSIONS_OFFSET = 166
METADATA_POINTER = 18
PERMANENT_DELEGATE = 12
TOKEN_METADATA = 19
#: the base mint with the two fixed extensions this service uses (metadata grows it later)
MINT_WITH_EXTENSIONS = EXTENSIONS_OFFSET + (4 + 64) + (4 + 32)


def _string(value: str) -> bytes:
    raw = value.encode()
    return struct.pack("<I", len(raw)) + raw


def _discriminator(name: str) -> bytes:
    return hashlib.sha256(f"spl_token_metadata_interface:{name}".encode()).digest()[:8]


def initialize_metadata_pointer(mint: Pubkey, authority: Pubkey) -> Instruction:
    """The mint points at itself for its metadata (the token-metadata extension lives in it)."""
    return Instruction(
        TOKEN_2022_PROGRAM_ID,
        bytes([39, 0]) + bytes(authority) + bytes(mint),
        [AccountMeta(mint, False, True)],
    )


def initialize_permanent_delegate(mint: Pubkey, delegate: Pubkey) -> Instruction:
    """The platform may move or burn any ticket of this mint (secondary market, refunds)."""
    return Instruction(
        TOKEN_2022_PROGRAM_ID, bytes([35]) + bytes(delegate), [AccountMeta(mint, False, True)]
    )


def initialize_metadata(
    mint: Pubkey, authority: Pubkey, name: str, symbol: str, uri: str
) -> Instruction:
    return Instruction(
        TOKEN_2022_PROGRAM_ID,
        _discriminator("initialize_account") + _string(name) + _string(symbol) + _string(uri),
        [
            AccountMeta(mint, False, True),
            AccountMeta(authority, False, False),
            AccountMeta(mint, False, False),
            AccountMeta(authority, True, False),
        ],
    )


def update_metadata_field(mint: Pubkey, authority: Pubkey, key: str, value: str) -> Instruction:
    """Set an additional metadata field (borsh enum ``Field::Key(String)``, variant 3)."""
    return Instruction(
        TOKEN_2022_PROGRAM_ID,
        _discriminator("updating_field") + bytes([3]) + _string(key) + _string(value),
        [AccountMeta(mint, False, True), AccountMeta(authority, True, False)],
    )


def metadata_size(name: str, symbol: str, uri: str, additional: list[tuple[str, str]]) -> int:
    """Bytes the token-metadata TLV entry takes (type and length header included)."""
    body = 32 + 32 + len(_string(name)) + len(_string(symbol)) + len(_string(uri)) + 4
    body += sum(len(_string(k)) + len(_string(v)) for k, v in additional)
    return 4 + body


# --- parsing -------------------------------------------------------------------------------------


@dataclass
class TokenMetadata:
    update_authority: Pubkey | None
    mint: Pubkey
    name: str
    symbol: str
    uri: str
    additional: dict[str, str] = field(default_factory=dict)


@dataclass
class MintAccount:
    mint_authority: Pubkey | None
    supply: int
    decimals: int
    freeze_authority: Pubkey | None
    extensions: dict[int, bytes]

    @property
    def metadata(self) -> TokenMetadata | None:
        raw = self.extensions.get(TOKEN_METADATA)
        return parse_metadata(raw) if raw is not None else None

    @property
    def permanent_delegate(self) -> Pubkey | None:
        raw = self.extensions.get(PERMANENT_DELEGATE)
        return _optional_key(raw[:32]) if raw else None


@dataclass
class TokenAccount:
    mint: Pubkey
    owner: Pubkey
    amount: int
    frozen: bool


def _optional_key(raw: bytes) -> Pubkey | None:
    return None if raw == bytes(32) else Pubkey.from_bytes(raw)


def _coption_key(data: bytes, offset: int) -> Pubkey | None:
    (tag,) = struct.unpack_from("<I", data, offset)
    return Pubkey.from_bytes(data[offset + 4 : offset + 36]) if tag == 1 else None


def parse_mint(data: bytes) -> MintAccount:
    if len(data) < 82:
        raise ValueError("not a mint account")
    extensions: dict[int, bytes] = {}
    offset = EXTENSIONS_OFFSET
    while len(data) > EXTENSIONS_OFFSET and offset + 4 <= len(data):
        kind, length = struct.unpack_from("<HH", data, offset)
        if kind == 0 and length == 0:
            break
        extensions[kind] = data[offset + 4 : offset + 4 + length]
        offset += 4 + length
    return MintAccount(
        mint_authority=_coption_key(data, 0),
        supply=struct.unpack_from("<Q", data, 36)[0],
        decimals=data[44],
        freeze_authority=_coption_key(data, 46),
        extensions=extensions,
    )


def parse_token_account(data: bytes) -> TokenAccount:
    if len(data) < 165:
        raise ValueError("not a token account")
    return TokenAccount(
        mint=Pubkey.from_bytes(data[0:32]),
        owner=Pubkey.from_bytes(data[32:64]),
        amount=struct.unpack_from("<Q", data, 64)[0],
        frozen=data[108] == 2,
    )


def _read_string(raw: bytes, offset: int) -> tuple[str, int]:
    (length,) = struct.unpack_from("<I", raw, offset)
    start = offset + 4
    return raw[start : start + length].decode(), start + length


def parse_metadata(raw: bytes) -> TokenMetadata:
    update_authority = _optional_key(raw[0:32])
    mint = Pubkey.from_bytes(raw[32:64])
    name, offset = _read_string(raw, 64)
    symbol, offset = _read_string(raw, offset)
    uri, offset = _read_string(raw, offset)
    (count,) = struct.unpack_from("<I", raw, offset)
    offset += 4
    additional: dict[str, str] = {}
    for _ in range(count):
        key, offset = _read_string(raw, offset)
        value, offset = _read_string(raw, offset)
        additional[key] = value
    return TokenMetadata(update_authority, mint, name, symbol, uri, additional)
