"""What one chat request looked like from the client, and how it is reported to Locust.

Each request becomes two Locust entries: `chat` (total latency, success or failure)
and `chat TTFT` (time to the first text delta, for successful requests only), so
Locust's percentiles and CSV carry time to first token as its own row.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

TOTAL_NAME = "chat"
TTFT_NAME = "chat TTFT"


class FailureKind(str, Enum):
    TRITON = "triton error"       # the server rejected or failed the request
    BLOCKED = "blocked"           # moderation refused a prompt from the (benign) mix
    TIMEOUT = "timeout"           # no final response within the request timeout
    TRANSPORT = "transport error"  # connection refused / reset, bad HTTP status


class ChatFailure(Exception):
    """Reported to Locust as the request's exception; its text names the kind and the cause."""

    def __init__(self, kind: FailureKind, detail: str):
        super().__init__(f"{kind.value}: {detail}")
        self.kind = kind


@dataclass(frozen=True)
class ChatMeasurement:
    total_s: float
    ttft_s: float | None  # None: no text delta arrived
    deltas: int  # streamed text responses; with incremental detokenization about one token each
    chars: int
    finish_reason: str
    failure: ChatFailure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def report(events, request_type: str, measurement: ChatMeasurement, kind: str) -> None:
    """Fire Locust request events for one chat request (`events` is `environment.events`)."""
    context = {"prompt_kind": kind, "finish_reason": measurement.finish_reason}
    if measurement.ok and measurement.ttft_s is not None:
        events.request.fire(request_type=request_type, name=TTFT_NAME, response_time=measurement.ttft_s * 1000,
                            response_length=0, exception=None, context=context)
    events.request.fire(request_type=request_type, name=TOTAL_NAME, response_time=measurement.total_s * 1000,
                        response_length=measurement.deltas, exception=measurement.failure, context=context)
