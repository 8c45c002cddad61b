"""Moderate generated text while it streams, without ever releasing a harmful window.

`StreamModerator.feed(delta)` buffers text and, every `check_every` new
characters, checks the last `window` characters (so consecutive checks overlap
by `window - check_every`). Only text that has passed a check *and* the check after
it is released; the rest is held back. On a violation nothing more is
released and the verdict carries the category's refusal message. `finish()`
checks the remainder. Released text has PII redacted; the cut between released
and held text never falls inside a PII span or a word.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from chatstack.safety.moderator import ModerationResult, Moderator
from chatstack.safety.pii import find_pii, redact

PII_MARGIN = 48  # chars held back so a phone number or IBAN still arriving is redacted whole


@dataclass(frozen=True)
class StreamStep:
    """`text` may be sent to the client now; `violation` is set once, when the stream must stop."""

    text: str
    violation: ModerationResult | None = None


class StreamModerator:
    def __init__(self, check: Callable[[str], ModerationResult], window: int = 400, check_every: int = 120,
                 redact_pii: bool = True):
        if not 1 <= check_every <= window:
            raise ValueError(f"check_every must be in [1, window={window}], got {check_every}")
        self.check = check
        self.window = window
        self.check_every = check_every
        self.redact_pii = redact_pii
        self._text = ""
        self._checked = 0  # text[:_checked] passed a check
        self._released = 0  # text[:_released] was handed out
        self.violation: ModerationResult | None = None
        self.checks = 0

    @classmethod
    def for_request(cls, moderator: Moderator, request_id: str, window: int, check_every: int) -> "StreamModerator":
        """Checks with `moderator.check_output`, audited under `request_id`."""
        return cls(lambda text: moderator.check_output(text, request_id), window, check_every)

    def feed(self, delta: str) -> StreamStep:
        if self.violation is not None:
            return StreamStep("")
        self._text += delta
        while len(self._text) - self._checked >= self.check_every:
            end = self._checked + self.check_every
            if not self._check_until(end):
                return StreamStep("", self.violation)
        return StreamStep(self._release(final=False))

    def step(self, delta: str, final: bool) -> StreamStep:
        """`feed(delta)`, followed by `finish()` when this is the stream's last delta."""
        fed = self.feed(delta)
        if not final or fed.violation is not None:
            return fed
        last = self.finish()
        return StreamStep(fed.text + last.text, last.violation)

    def finish(self) -> StreamStep:
        """Check whatever is left unchecked and release the rest."""
        if self.violation is not None:
            return StreamStep("")
        if self._checked < len(self._text) and not self._check_until(len(self._text)):
            return StreamStep("", self.violation)
        return StreamStep(self._release(final=True))

    def _check_until(self, end: int) -> bool:
        result = self.check(self._text[max(0, end - self.window):end])
        self.checks += 1
        if result.blocked:
            self.violation = result
            return False
        self._checked = end
        return True

    def _release(self, final: bool) -> str:
        cut = self._checked if final else self._safe_cut()
        if cut <= self._released:
            return ""
        piece = self._text[self._released:cut]
        self._released = cut
        return redact(piece) if self.redact_pii else piece

    def _safe_cut(self) -> int:
        """Last whitespace before `checked - check_every - PII_MARGIN`, outside every PII span.

        Text is released only after the *next* check, which sees it together with
        `check_every` characters that follow, has also passed: a sentence that turns
        harmful only with its continuation ("to build a pipe bomb, …") is still held when
        the continuation fails (measured: without this, the first half was released).
        """
        settled = max(self._released, self._checked - self.check_every)
        if not self.redact_pii:
            return settled
        pending = self._text[self._released:settled]
        limit = len(pending) - PII_MARGIN
        spans = find_pii(pending)
        for cut in range(limit, 0, -1):
            if pending[cut - 1].isspace() and not any(s.start < cut < s.end for s in spans):
                return self._released + cut
        return self._released
