"""Stop strings over streamed text: never emit a stop string, even one split across deltas."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StopCheck:
    text: str
    stopped: bool


class StopStringMatcher:
    """Holds back the shortest tail that could still begin a stop string."""

    def __init__(self, stop_strings: tuple[str, ...]):
        if any(not s for s in stop_strings):
            raise ValueError("stop_words must not contain empty strings")
        self.stop_strings = stop_strings
        self._pending = ""

    def feed(self, delta: str) -> StopCheck:
        if not self.stop_strings:
            return StopCheck(delta, False)
        text = self._pending + delta
        hits = [i for i in (text.find(s) for s in self.stop_strings) if i >= 0]
        if hits:
            self._pending = ""
            return StopCheck(text[: min(hits)], True)
        keep = self._longest_partial_suffix(text)
        self._pending = text[len(text) - keep :] if keep else ""
        return StopCheck(text[: len(text) - keep], False)

    def flush(self) -> str:
        pending, self._pending = self._pending, ""
        return pending

    def _longest_partial_suffix(self, text: str) -> int:
        best = 0
        for stop in self.stop_strings:
            for length in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:length]):
                    best = length
                    break
        return best
