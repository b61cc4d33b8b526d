"""A Solana JSON-RPC stand-in over ``solders.litesvm``: real SPL Token, Token-2022 and
associated-token-account programs execute every transaction; answers have the shapes a validator
gives, so the ``solana`` client cannot tell.

Methods: getLatestBlockhash, sendTransaction (base64/base58, with preflight), simulateTransaction,
getSignatureStatuses, getAccountInfo, getMultipleAccounts, getBalance,
getMinimumBalanceForRentExemption, requestAirdrop, getTokenAccountsByOwner,
getTokenAccountBalance, getTokenLargestAccounts, getTokenSupply, getSlot, getBlockHeight,
getHealth, getVersion, getGenesisHash, getSignaturesForAddress (newest first, ``limit``,
``before``, ``until``), getTransaction (``json`` or ``base64`` encoding) for the transactions it
executed (each gets the wall-clock second it was executed as its ``blockTime``).

Test controls (not Solana): ``POST /_sandbox/fail-mints {"count": n}`` makes the next n
transactions that initialise a Token-2022 mint fail preflight with a program error (a mint that
can never succeed); ``POST /_sandbox/delay-next-mint {"seconds": s}`` executes the next mint and
answers it ``s`` seconds late (a worker can die in between); ``GET /_sandbox/stats``.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import base58
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata
from solders.transaction_status import (
    InstructionErrorCustom,
    InstructionErrorFieldless,
    TransactionErrorDuplicateInstruction,
    TransactionErrorFieldless,
    TransactionErrorInstructionError,
    TransactionErrorInsufficientFundsForRent,
)
from spl.token.constants import TOKEN_2022_PROGRAM_ID, TOKEN_PROGRAM_ID

from runtime.logging import get_logger

log = get_logger("sandbox.solana")

TOKEN_PROGRAMS = (TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID)
RENT_EPOCH = 18446744073709551615
INITIALIZE_MINT2 = 20


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


@dataclass(frozen=True)
class Executed:
    signature: str
    slot: int
    block_time: int
    tx: VersionedTransaction
    logs: list[str]
    units: int


@dataclass
class SolanaSandbox:
    svm: LiteSVM = field(default_factory=LiteSVM)
    slot: int = 1
    statuses: dict[str, tuple[int, Any]] = field(default_factory=dict)
    fail_mints: int = 0
    #: the next mint is executed, then answered this many seconds late
    delay_mint_seconds: float = 0.0
    minted: int = 0
    #: the address of every mint a transaction initialised, in order (a mint made twice for one
    #: ticket shows here as two addresses: the chaos run's reconciliation reads it)
    mints: list[str] = field(default_factory=list)
    transactions: int = 0
    failed: int = 0
    #: executed transactions, oldest first, for getSignaturesForAddress and getTransaction
    history: list[Executed] = field(default_factory=list)
    by_signature: dict[str, Executed] = field(default_factory=dict)

    def context(self) -> dict[str, Any]:
        return {"slot": self.slot, "apiVersion": "2.2.0"}


def _failure(result: FailedTransactionMetadata) -> tuple[Any, list[str], int]:
    """(error, logs, compute units) of a failed transaction (solders exposes them as methods)."""
    meta = result.meta()
    return result.err(), list(meta.logs()), int(meta.compute_units_consumed())


def _outcome(meta: Any) -> tuple[list[str], int]:
    return list(meta.logs()), int(meta.compute_units_consumed())


def _name(member: Any) -> str:
    return str(member).split(".")[-1]


def _err_json(err: Any) -> Any:
    """A transaction error as a validator writes it in JSON-RPC answers."""
    if isinstance(err, TransactionErrorFieldless):
        return _name(err)
    if isinstance(err, TransactionErrorInstructionError):
        inner = err.err
        if isinstance(inner, InstructionErrorCustom):
            detail: Any = {"Custom": inner.code}
        elif isinstance(inner, InstructionErrorFieldless):
            detail = _name(inner)
        else:
            detail = {"BorshIoError": str(inner)}
        return {"InstructionError": [err.index, detail]}
    if isinstance(err, TransactionErrorDuplicateInstruction):
        return {"DuplicateInstruction": err.index}
    if isinstance(err, TransactionErrorInsufficientFundsForRent):
        return {"InsufficientFundsForRent": {"account_index": err.account_index}}
    return _name(err)


def _describe(err: Any) -> str:
    """The message a validator gives a failed preflight."""
    if isinstance(err, TransactionErrorInstructionError):
        inner = err.err
        if isinstance(inner, InstructionErrorCustom):
            what = f"custom program error: {inner.code:#x}"
        else:
            what = _name(inner)
        return f"Transaction simulation failed: Error processing Instruction {err.index}: {what}"
    return f"Transaction simulation failed: {_name(err)}"


def _account(svm: LiteSVM, key: Pubkey, encoding: str = "base64") -> dict[str, Any] | None:
    account = svm.get_account(key)
    if account is None or (account.lamports == 0 and not account.data):
        return None
    data = bytes(account.data)
    encoded: Any = [base64.b64encode(data).decode(), "base64"]
    if encoding == "base58":
        encoded = [base58.b58encode(data).decode(), "base58"]
    return {
        "data": encoded,
        "executable": account.executable,
        "lamports": account.lamports,
        "owner": str(account.owner),
        "rentEpoch": RENT_EPOCH,
        "space": len(data),
    }


def _token_amount(amount: int, decimals: int) -> dict[str, Any]:
    ui = amount / 10**decimals
    return {
        "amount": str(amount),
        "decimals": decimals,
        "uiAmount": ui,
        "uiAmountString": f"{ui:g}",
    }


def _decimals(svm: LiteSVM, mint: Pubkey) -> int:
    account = svm.get_account(mint)
    if account is None or len(account.data) < 45:
        raise RpcError(-32602, "Invalid param: not a Token mint")
    return int(bytes(account.data)[44])


def _token_accounts(
    svm: LiteSVM, owner: Pubkey | None = None, mint: Pubkey | None = None
) -> list[tuple[Pubkey, Any]]:
    found = []
    for program in TOKEN_PROGRAMS:
        for key, account in svm.get_program_accounts(program):
            data = bytes(account.data)
            if len(data) < 165 or (len(data) > 165 and data[165] != 2):
                continue  # a mint (or another account type), not a token account
            if owner is not None and data[32:64] != bytes(owner):
                continue
            if mint is not None and data[0:32] != bytes(mint):
                continue
            found.append((key, account))
    return found


def _pubkey(value: Any) -> Pubkey:
    try:
        return Pubkey.from_string(str(value))
    except ValueError as exc:
        raise RpcError(-32602, f"Invalid param: Invalid pubkey {value!r}") from exc


def _decode_tx(params: list[Any]) -> VersionedTransaction:
    if not params:
        raise RpcError(-32602, "Invalid params: missing transaction")
    options = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
    encoding = options.get("encoding", "base58")
    try:
        raw = base64.b64decode(params[0]) if encoding == "base64" else base58.b58decode(params[0])
        return VersionedTransaction.from_bytes(raw)
    except Exception as exc:
        raise RpcError(
            -32602, f"invalid transaction: failed to deserialize VersionedTransaction: {exc}"
        ) from exc


def _initialises_mint(tx: VersionedTransaction) -> bool:
    keys = tx.message.account_keys
    return any(
        keys[ix.program_id_index] == TOKEN_2022_PROGRAM_ID
        and bytes(ix.data)[:1] == bytes([INITIALIZE_MINT2])
        for ix in tx.message.instructions
    )


def _mint_initialised(tx: VersionedTransaction) -> str | None:
    """The mint account an ``InitializeMint2`` instruction of ``tx`` initialises, if any."""
    keys = tx.message.account_keys
    for ix in tx.message.instructions:
        if keys[ix.program_id_index] == TOKEN_2022_PROGRAM_ID and bytes(ix.data)[:1] == bytes(
            [INITIALIZE_MINT2]
        ):
            return str(keys[bytes(ix.accounts)[0]])
    return None


def create_solana_app(state: SolanaSandbox | None = None) -> FastAPI:
    sandbox = state or SolanaSandbox()
    app = FastAPI(
        title="Sandbox Solana RPC", docs_url="/_sandbox/docs", openapi_url="/_sandbox/openapi.json"
    )
    app.state.sandbox = sandbox
    svm = sandbox.svm

    def send(params: list[Any]) -> str:
        tx = _decode_tx(params)
        if sandbox.fail_mints > 0 and _initialises_mint(tx):
            sandbox.fail_mints -= 1
            sandbox.failed += 1
            err = {"InstructionError": [3, {"Custom": 0}]}
            raise RpcError(
                -32002,
                "Transaction simulation failed: Error processing Instruction 3: "
                "custom program error: 0x0",
                {
                    "accounts": None,
                    "err": err,
                    "logs": ["Program log: Error: sandbox refused this mint"],
                    "unitsConsumed": 0,
                    "returnData": None,
                    "innerInstructions": None,
                },
            )
        result = svm.send_transaction(tx)
        if isinstance(result, FailedTransactionMetadata):
            sandbox.failed += 1
            err, logs, units = _failure(result)
            raise RpcError(
                -32002,
                _describe(err),
                {
                    "accounts": None,
                    "err": _err_json(err),
                    "logs": logs,
                    "unitsConsumed": units,
                    "returnData": None,
                    "innerInstructions": None,
                },
            )
        sandbox.slot += 1
        sandbox.transactions += 1
        if mint := _mint_initialised(tx):
            sandbox.mints.append(mint)
        signature = str(result.signature())
        sandbox.statuses[signature] = (sandbox.slot, None)
        logs, units = _outcome(result)
        executed = Executed(signature, sandbox.slot, int(time.time()), tx, logs, units)
        sandbox.history.append(executed)
        sandbox.by_signature[signature] = executed
        return signature

    def signatures_for_address(params: list[Any]) -> list[dict[str, Any]]:
        """Newest first; ``before``: start after that signature, ``until``: stop at it."""
        key = _pubkey(params[0])
        options = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        limit = int(options.get("limit") or 1000)
        if not 1 <= limit <= 1000:
            raise RpcError(-32602, "Invalid limit; max 1000")
        before, until = options.get("before"), options.get("until")
        found: list[dict[str, Any]] = []
        started = before is None
        for executed in reversed(sandbox.history):
            if not started:
                started = executed.signature == before
                continue
            if executed.signature == until or len(found) == limit:
                break
            if key in executed.tx.message.account_keys:
                found.append(
                    {
                        "signature": executed.signature,
                        "slot": executed.slot,
                        "err": None,
                        "memo": None,
                        "blockTime": executed.block_time,
                        "confirmationStatus": "finalized",
                    }
                )
        return found

    def get_transaction(params: list[Any]) -> dict[str, Any] | None:
        executed = sandbox.by_signature.get(str(params[0]))
        if executed is None:
            return None
        options = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        encoding = options.get("encoding", "json")
        tx = executed.tx
        message = tx.message
        if encoding == "base64":
            encoded: Any = [base64.b64encode(bytes(tx)).decode(), "base64"]
        elif encoding == "json":
            header = message.header
            encoded = {
                "signatures": [str(sig) for sig in tx.signatures],
                "message": {
                    "header": {
                        "numRequiredSignatures": header.num_required_signatures,
                        "numReadonlySignedAccounts": header.num_readonly_signed_accounts,
                        "numReadonlyUnsignedAccounts": header.num_readonly_unsigned_accounts,
                    },
                    "accountKeys": [str(k) for k in message.account_keys],
                    "recentBlockhash": str(message.recent_blockhash),
                    "instructions": [
                        {
                            "programIdIndex": ix.program_id_index,
                            "accounts": list(ix.accounts),
                            "data": base58.b58encode(bytes(ix.data)).decode(),
                            "stackHeight": None,
                        }
                        for ix in message.instructions
                    ],
                },
            }
        else:
            raise RpcError(-32602, f"Invalid params: unsupported encoding {encoding!r}")
        return {
            "slot": executed.slot,
            "blockTime": executed.block_time,
            "version": "legacy",
            "transaction": encoded,
            "meta": {
                "err": None,
                "status": {"Ok": None},
                "fee": 5000 * len(tx.signatures),
                "preBalances": [0 for _ in message.account_keys],
                "postBalances": [0 for _ in message.account_keys],
                "innerInstructions": [],
                "logMessages": executed.logs,
                "preTokenBalances": [],
                "postTokenBalances": [],
                "rewards": [],
                "loadedAddresses": {"writable": [], "readonly": []},
                "computeUnitsConsumed": executed.units,
            },
        }

    def simulate(params: list[Any]) -> dict[str, Any]:
        tx = _decode_tx(params)
        result = svm.simulate_transaction(tx)
        if isinstance(result, FailedTransactionMetadata):
            failure, logs, units = _failure(result)
            err = _err_json(failure)
        else:
            err = None
            logs, units = _outcome(result.meta())
        value = {
            "err": err,
            "logs": logs,
            "accounts": None,
            "unitsConsumed": units,
            "returnData": None,
        }
        return {"context": sandbox.context(), "value": value}

    def statuses(params: list[Any]) -> dict[str, Any]:
        values: list[dict[str, Any] | None] = []
        for sig in params[0]:
            known = sandbox.statuses.get(str(sig))
            if known is None:
                values.append(None)
                continue
            slot, err = known
            values.append(
                {
                    "slot": slot,
                    "confirmations": None,
                    "err": err,
                    "status": {"Ok": None} if err is None else {"Err": err},
                    "confirmationStatus": "finalized",
                }
            )
        return {"context": sandbox.context(), "value": values}

    def account_info(params: list[Any]) -> dict[str, Any]:
        options = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        return {
            "context": sandbox.context(),
            "value": _account(svm, _pubkey(params[0]), options.get("encoding", "base64")),
        }

    def multiple_accounts(params: list[Any]) -> dict[str, Any]:
        options = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        encoding = options.get("encoding", "base64")
        return {
            "context": sandbox.context(),
            "value": [_account(svm, _pubkey(k), encoding) for k in params[0]],
        }

    def airdrop(params: list[Any]) -> str:
        key, lamports = _pubkey(params[0]), int(params[1])
        result = svm.airdrop(key, lamports)
        if isinstance(result, FailedTransactionMetadata):
            raise RpcError(-32603, f"airdrop failed: {result.err()}")
        signature = str(result.signature())
        sandbox.slot += 1
        sandbox.statuses[signature] = (sandbox.slot, None)
        return signature

    def token_accounts_by_owner(params: list[Any]) -> dict[str, Any]:
        owner = _pubkey(params[0])
        selector = params[1] if len(params) > 1 else {}
        options = params[2] if len(params) > 2 and isinstance(params[2], dict) else {}
        mint = _pubkey(selector["mint"]) if "mint" in selector else None
        entries = _token_accounts(svm, owner=owner, mint=mint)
        if "programId" in selector:
            program = _pubkey(selector["programId"])
            entries = [(k, a) for k, a in entries if a.owner == program]
        encoding = options.get("encoding", "base64")
        return {
            "context": sandbox.context(),
            "value": [
                {"pubkey": str(k), "account": _account(svm, k, encoding)} for k, _ in entries
            ],
        }

    def token_account_balance(params: list[Any]) -> dict[str, Any]:
        account = svm.get_account(_pubkey(params[0]))
        if account is None or len(account.data) < 165:
            raise RpcError(-32602, "Invalid param: not a Token account")
        data = bytes(account.data)
        amount = struct.unpack_from("<Q", data, 64)[0]
        return {
            "context": sandbox.context(),
            "value": _token_amount(amount, _decimals(svm, Pubkey.from_bytes(data[0:32]))),
        }

    def largest_accounts(params: list[Any]) -> dict[str, Any]:
        mint = _pubkey(params[0])
        decimals = _decimals(svm, mint)
        entries = []
        for key, account in _token_accounts(svm, mint=mint):
            amount = struct.unpack_from("<Q", bytes(account.data), 64)[0]
            entries.append({"address": str(key), **_token_amount(amount, decimals)})
        entries.sort(key=lambda e: int(e["amount"]), reverse=True)
        return {"context": sandbox.context(), "value": entries[:20]}

    def token_supply(params: list[Any]) -> dict[str, Any]:
        mint = _pubkey(params[0])
        account = svm.get_account(mint)
        if account is None:
            raise RpcError(-32602, "Invalid param: not a Token mint")
        supply = struct.unpack_from("<Q", bytes(account.data), 36)[0]
        return {"context": sandbox.context(), "value": _token_amount(supply, _decimals(svm, mint))}

    methods: dict[str, Any] = {
        "getLatestBlockhash": lambda p: {
            "context": sandbox.context(),
            "value": {
                "blockhash": str(svm.latest_blockhash()),
                "lastValidBlockHeight": sandbox.slot + 150,
            },
        },
        "sendTransaction": send,
        "simulateTransaction": simulate,
        "getSignatureStatuses": statuses,
        "getAccountInfo": account_info,
        "getMultipleAccounts": multiple_accounts,
        "getBalance": lambda p: {
            "context": sandbox.context(),
            "value": svm.get_balance(_pubkey(p[0])) or 0,
        },
        "getMinimumBalanceForRentExemption": lambda p: svm.minimum_balance_for_rent_exemption(
            int(p[0])
        ),
        "requestAirdrop": airdrop,
        "getTokenAccountsByOwner": token_accounts_by_owner,
        "getTokenAccountBalance": token_account_balance,
        "getTokenLargestAccounts": largest_accounts,
        "getTokenSupply": token_supply,
        "getSlot": lambda p: sandbox.slot,
        "getBlockHeight": lambda p: sandbox.slot,
        "getHealth": lambda p: "ok",
        "getVersion": lambda p: {"solana-core": "2.2.0", "feature-set": 0},
        "getGenesisHash": lambda p: "settle-sandbox-genesis-hash-000000000000000",
        "getSignaturesForAddress": signatures_for_address,
        "getTransaction": get_transaction,
    }

    def call(request: Any) -> dict[str, Any]:
        if (
            not isinstance(request, dict)
            or request.get("jsonrpc") != "2.0"
            or "method" not in request
        ):
            return {
                "jsonrpc": "2.0",
                "id": None,
                "error": {"code": -32600, "message": "Invalid request"},
            }
        ident = request.get("id")
        handler = methods.get(str(request["method"]))
        if handler is None:
            return {
                "jsonrpc": "2.0",
                "id": ident,
                "error": {"code": -32601, "message": "Method not found"},
            }
        params = request.get("params") or []
        if not isinstance(params, list):
            return {
                "jsonrpc": "2.0",
                "id": ident,
                "error": {"code": -32602, "message": "Invalid params"},
            }
        try:
            return {"jsonrpc": "2.0", "id": ident, "result": handler(params)}
        except RpcError as exc:
            error: dict[str, Any] = {"code": exc.code, "message": exc.message}
            if exc.data is not None:
                error["data"] = exc.data
            return {"jsonrpc": "2.0", "id": ident, "error": error}
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            return {
                "jsonrpc": "2.0",
                "id": ident,
                "error": {"code": -32602, "message": f"Invalid params: {exc}"},
            }

    @app.post("/")
    async def rpc(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            delay = _mint_delay(body)
        except ValueError:
            return JSONResponse(
                {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
            )
        if isinstance(body, list):
            return JSONResponse([call(item) for item in body])
        answer = call(body)
        if delay:
            await asyncio.sleep(delay)
        return JSONResponse(answer)

    def _mint_delay(body: Any) -> float:
        """Seconds to hold this answer back (``/_sandbox/delay-next-mint``), after executing it."""
        if (
            not sandbox.delay_mint_seconds
            or not isinstance(body, dict)
            or body.get("method") != "sendTransaction"
        ):
            return 0.0
        try:
            if not _initialises_mint(_decode_tx(body.get("params") or [])):
                return 0.0
        except RpcError:
            return 0.0
        delay, sandbox.delay_mint_seconds = sandbox.delay_mint_seconds, 0.0
        return delay

    @app.post("/_sandbox/fail-mints")
    async def fail_mints(request: Request) -> dict[str, Any]:
        body = await request.json()
        sandbox.fail_mints = int(body.get("count", 1))
        return {"fail_mints": sandbox.fail_mints}

    @app.post("/_sandbox/delay-next-mint")
    async def delay_next_mint(request: Request) -> dict[str, Any]:
        body = await request.json()
        sandbox.delay_mint_seconds = float(body.get("seconds", 5))
        return {"delay_mint_seconds": sandbox.delay_mint_seconds}

    @app.get("/_sandbox/stats")
    async def stats() -> dict[str, Any]:
        return {
            "slot": sandbox.slot,
            "transactions": sandbox.transactions,
            "failed": sandbox.failed,
        }

    return app


def fund(app: FastAPI, key: Pubkey, sol: float) -> None:
    """Give an account SOL on the sandbox (the authority at start)."""
    sandbox: SolanaSandbox = app.state.sandbox
    sandbox.svm.airdrop(key, int(sol * 1_000_000_000))
