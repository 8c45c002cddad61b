"""One chat request over Triton's HTTP `/v2/models/<model>/generate_stream` (server-sent events).

Each `data:` line is one response of the decoupled ensemble as JSON; an error arrives
as `{"error": ...}` on the stream or as a non-200 status.
"""

from __future__ import annotations

import json
import time

import requests

from chatstack.loadtest.measurement import ChatFailure, ChatMeasurement, FailureKind


class SseChat:
    def __init__(self, base_url: str, model: str = "chat", timeout_s: float = 30.0):
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.url = f"{base_url.rstrip('/')}/v2/models/{model}/generate_stream"
        self.timeout_s = timeout_s
        self.session = requests.Session()

    def close(self) -> None:
        self.session.close()

    def ask(self, text: str, fields: dict) -> ChatMeasurement:
        """`fields` are further request inputs (max_tokens, temperature, session_id, ...)."""
        start = time.perf_counter()
        deadline = start + self.timeout_s
        state = {"ttft": None, "deltas": 0, "chars": 0, "finish": ""}
        try:
            with self.session.post(self.url, json={"text_input": text, "stream": True, **fields}, stream=True,
                                   timeout=(5.0, self.timeout_s)) as response:
                if response.status_code != 200:
                    raise ChatFailure(FailureKind.TRITON, f"HTTP {response.status_code}: {response.text[:200]}")
                for line in response.iter_lines():
                    if time.perf_counter() > deadline:
                        raise ChatFailure(FailureKind.TIMEOUT, f"no final response within {self.timeout_s:.0f} s")
                    if line.startswith(b"data: "):
                        _take_event(json.loads(line[len(b"data: "):]), state, start)
            failure = None
        except ChatFailure as exc:
            failure = exc
        except requests.Timeout as exc:
            failure = ChatFailure(FailureKind.TIMEOUT, str(exc))
        except (requests.RequestException, ValueError) as exc:
            failure = ChatFailure(FailureKind.TRANSPORT, str(exc))
        if failure is None and not state["finish"]:
            failure = ChatFailure(FailureKind.TRANSPORT, "the event stream ended without a finish_reason")
        return ChatMeasurement(time.perf_counter() - start, state["ttft"], state["deltas"], state["chars"],
                               state["finish"], failure)


def _take_event(event: dict, state: dict, start: float) -> None:
    if "error" in event:
        raise ChatFailure(FailureKind.TRITON, str(event["error"]))
    if event.get("blocked"):
        raise ChatFailure(FailureKind.BLOCKED, event.get("finish_reason") or "input refused")
    text = event.get("text_output") or ""
    if text:
        state["ttft"] = state["ttft"] if state["ttft"] is not None else time.perf_counter() - start
        state["deltas"] += 1
        state["chars"] += len(text)
    state["finish"] = event.get("finish_reason") or state["finish"]
