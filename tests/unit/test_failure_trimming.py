"""A failure of any size fits Temporal's limit, readable: head and tail of its message kept, its
stack trace cut to the frames nearest the raise, never "Failure exceeds size limit"."""

from __future__ import annotations

import os

from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError

from runtime.codec import EncryptionCodec, with_codec
from runtime.failures import BUDGET, MESSAGE_MAX, STACK_MAX, trim_middle, trim_tail

#: Temporal replaces a retried activity's failure above this (mutableStateActivityFailureSize)
SERVER_LIMIT = 4096


def _deep(depth: int) -> None:
    if depth == 0:
        raise RuntimeError("SQL: UPDATE mpesa_deposits SET ... " + "parameter " * 5000)
    _deep(depth - 1)


def huge_error() -> ApplicationError:
    try:
        try:
            _deep(40)
        except RuntimeError as inner:
            raise ApplicationError(
                "the write was refused: " + "detail " * 20_000 + "THE END",
                {"blob": "x" * 10_000},
                type="Refused",
            ) from inner
    except ApplicationError as err:
        return err
    raise AssertionError("unreachable")


def test_trim_middle_keeps_head_and_tail() -> None:
    text = "head " + "x" * 10_000 + " tail"
    cut = trim_middle(text, 200)
    assert len(cut) <= 200 and cut.startswith("head ") and cut.endswith(" tail")
    assert "characters cut" in cut
    assert trim_middle("short", 200) == "short"


def test_trim_tail_keeps_the_frames_nearest_the_raise() -> None:
    trace = "".join(f'  File "f.py", line {i}, in frame{i}\n' for i in range(500))
    cut = trim_tail(trace, 300)
    assert len(cut) <= 300 and cut.endswith("in frame499\n") and "characters cut" in cut


async def test_a_huge_error_is_trimmed_encrypted_and_still_readable() -> None:
    codec = EncryptionCodec({"k1": os.urandom(32)}, "k1")
    converter = with_codec(codec)
    failure = Failure()
    await converter.encode_failure(huge_error(), failure)

    assert failure.ByteSize() < SERVER_LIMIT * 3 // 4
    assert failure.message == "Encoded failure"  # the text travels encrypted
    assert failure.cause.HasField("encoded_attributes")
    assert not failure.application_failure_info.HasField("details")  # 10 kB of details: dropped

    decoded = await converter.decode_failure(failure)
    assert isinstance(decoded, ApplicationError) and decoded.type == "Refused"
    assert decoded.message.startswith("the write was refused: detail")
    assert decoded.message.endswith("THE END") and "characters cut" in decoded.message
    assert len(decoded.message) <= MESSAGE_MAX
    cause = decoded.__cause__
    assert isinstance(cause, ApplicationError) and cause.type == "RuntimeError"
    assert cause.message.startswith("SQL: UPDATE mpesa_deposits")
    protos = [e.failure for e in (decoded, cause)]
    assert all(p is not None for p in protos)
    total = sum(len(p.message) + len(p.stack_trace) for p in protos if p is not None)
    assert total <= BUDGET
    assert protos[1] is not None and "in _deep" in protos[1].stack_trace


async def test_without_the_codec_too() -> None:
    converter = with_codec(None)
    failure = Failure()
    await converter.encode_failure(huge_error(), failure)
    assert failure.ByteSize() < SERVER_LIMIT * 3 // 4
    assert failure.message.startswith("the write was refused") and failure.message.endswith(
        "THE END"
    )
    # Python folds the recursion's repeated frames, so how long the trace is depends on the
    # checkout's path: the bound holds either way (trim_tail's own test cuts a long one)
    assert "in _deep" in failure.cause.stack_trace
    assert len(failure.cause.stack_trace) <= STACK_MAX


async def test_a_small_error_is_kept_whole() -> None:
    converter = with_codec(None)
    failure = Failure()
    await converter.encode_failure(ApplicationError("short and clear", type="Small"), failure)
    assert failure.message == "short and clear"
