"""Failures cut to fit Temporal's size limit, readable, instead of being replaced.

A retried activity's last failure is kept in the workflow's mutable state, where the server allows
4 KiB (``limit.mutableStateActivityFailureSize.error``; it warns from 2 KiB). A bigger one is
replaced by ``"Failure exceeds size limit."`` with a cut-down copy as its cause whose encoded
attributes (where the payload codec keeps the real message) are gone: the jobs API, the Web UI and
the dead-letter listing then show nothing useful. What makes a failure big is the Python stack
trace of every exception in the chain (SQLAlchemy's include the SQL statement and its parameters)
and provider messages that quote whole answers.

So the failure converter trims before the failure leaves the process, within :data:`BUDGET`
characters for the whole chain: the outermost message first (its head and tail, which name what
failed and why), then the causes' messages, then stack traces (the innermost exception's first;
their tail: the frames nearest the raise), then oversized details are dropped. The
encoded-attributes variant (with the payload codec) encodes only after trimming.
"""

from __future__ import annotations

from temporalio.api.failure.v1 import Failure
from temporalio.converter import DefaultFailureConverter, PayloadConverter

#: characters of messages and stack traces for a whole failure chain; with JSON, the codec's
#: nonce, tag and metadata, and the failure's own fields, a chain stays well under the 4 KiB
BUDGET = 2000
#: one message at most (the outermost gets this much when it needs it)
MESSAGE_MAX = 900
#: a cause's message at most (shorter: the outer message usually repeats its gist)
CAUSE_MESSAGE_MAX = 300
#: a stack trace at most, and the smallest part of one worth keeping
STACK_MAX = 600
STACK_MIN = 120
#: failure details (``ApplicationError(..., details)``) bigger than this are dropped
DETAILS_MAX_BYTES = 512
#: causes kept below the outermost failure
MAX_DEPTH = 4


def trim_middle(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, its head and tail kept and the cut said in between."""
    if len(text) <= limit:
        return text
    if limit < 40:
        return text[:limit]
    marker = " … [{} characters cut] … "
    room = limit - len(marker.format(len(text)))
    head = (room * 2) // 3
    tail = room - head
    cut = len(text) - head - tail
    return text[:head] + marker.format(cut) + (text[-tail:] if tail else "")


def trim_tail(text: str, limit: int) -> str:
    """The end of a stack trace (the frames nearest the raise) within ``limit`` characters."""
    if len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    marker = "… [{} characters cut]\n"
    keep = max(0, limit - len(marker.format(len(text))))
    return marker.format(len(text) - keep) + text[len(text) - keep :]


def _chain(failure: Failure) -> list[Failure]:
    levels = [failure]
    while levels[-1].HasField("cause"):
        levels.append(levels[-1].cause)
    return levels


def trim_failure(failure: Failure, budget: int = BUDGET) -> None:
    """Cut ``failure`` (in place, before its attributes are encoded) to fit ``budget``."""
    levels = _chain(failure)
    if len(levels) > MAX_DEPTH + 1:
        levels[MAX_DEPTH].ClearField("cause")
        levels = levels[: MAX_DEPTH + 1]
    # levels already encoded elsewhere (a failure re-raised from a workflow) are left as they are
    plain = [f for f in levels if not f.HasField("encoded_attributes")]
    left = budget
    for depth, level in enumerate(plain):
        cap = MESSAGE_MAX if depth == 0 else CAUSE_MESSAGE_MAX
        level.message = trim_middle(level.message, max(40, min(cap, left)))
        left -= len(level.message)
    for level in reversed(plain):  # the innermost first: where it was raised
        room = min(STACK_MAX, left)
        level.stack_trace = trim_tail(level.stack_trace, room if room >= STACK_MIN else 0)
        left -= len(level.stack_trace)
    for level in levels:
        info = level.application_failure_info
        if level.HasField("application_failure_info") and info.details.ByteSize() > (
            DETAILS_MAX_BYTES
        ):
            info.ClearField("details")


class TrimmingFailureConverter(DefaultFailureConverter):
    """Temporal's default conversion, then :func:`trim_failure`, then (in the subclass) the
    message and stack trace of each level moved into encoded attributes for the codec."""

    encode_attributes = False

    def __init__(self) -> None:
        super().__init__(encode_common_attributes=False)
        #: converts without encoding: trimming needs the whole chain in clear first
        self._plain = DefaultFailureConverter()

    def to_failure(
        self, exception: BaseException, payload_converter: PayloadConverter, failure: Failure
    ) -> None:
        self._plain.to_failure(exception, payload_converter, failure)
        trim_failure(failure)
        if self.encode_attributes:
            for level in _chain(failure):
                if level.HasField("encoded_attributes"):
                    continue
                level.encoded_attributes.CopyFrom(
                    payload_converter.to_payloads(
                        [{"message": level.message, "stack_trace": level.stack_trace}]
                    )[0]
                )
                level.message, level.stack_trace = "Encoded failure", ""


class EncodedTrimmingFailureConverter(TrimmingFailureConverter):
    """With the payload codec: messages and stack traces travel encrypted, as with
    ``DefaultFailureConverterWithEncodedAttributes``."""

    encode_attributes = True
