"""Moderate generated text while it streams, without ever releasing a harmful window.

`StreamModerator.feed(delta)` buffers text and checks the last `window`
characters whenever enough new text has arrived: every `first_check` characters
until the first text can be released (so the reply starts early), then every
`check_every` characters. Text is released only once a passed check has also
seen at least `holdback` characters that follow it: a sentence that turns
harmful only with its continuation ("to build a pipe bomb, …") is still held
when the continuation fails. On a violation nothing more is released and the
verdict carries the category's refusal message; neither the failing window's
new text nor the `holdback` characters before it were ever sent. `finish()`
checks the remainder. A check before the end stops at a word boundary, so no window ends in
half a word. Before `MIN_VERDICT_CHARS` have streamed, a failed check is provisional: two or
three words are too few for the classifier ("The constructor " scored 0.93 for weapons), so
nothing is released and the next check, over more text, decides; the final check always does.
Released text has PII redacted; the cut between released and held text never falls inside a
PII span or a word.

Time to first text: about `holdback + first_check` generated characters and
(holdback + first_check) / first_check short checks — 64 characters and four
checks by default (the previous rule, release after the *next* full check, needed
two `check_every` windows: ≥ 240 characters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from chatstack.safety.moderator import ModerationResult, Moderator
from chatstack.safety.pii import find_pii, redact

PII_MARGIN = 48  # chars held back so a phone number or IBAN still arriving is redacted whole
FIRST_CHECK_CHARS = 16  # check cadence until the first release
HOLDBACK_CHARS = PII_MARGIN  # released text was checked together with at least this much of what follows
MIN_VERDICT_CHARS = HOLDBACK_CHARS + FIRST_CHECK_CHARS  # a stream this short is refused only by its final check


@dataclass(frozen=True)
class StreamStep:
    """`text` may be sent to the client now; `violation` is set once, when the stream must stop."""

    text: str
    violation: ModerationResult | None = None


class StreamModerator:
    def __init__(self, check: Callable[[str], ModerationResult], window: int = 400, check_every: int = 120,
                 redact_pii: bool = True, first_check: int = FIRST_CHECK_CHARS, holdback: int = HOLDBACK_CHARS):
        if not 1 <= check_every <= window:
            raise ValueError(f"check_every must be in [1, window={window}], got {check_every}")
        if not 1 <= first_check <= check_every:
            raise ValueError(f"first_check must be in [1, check_every={check_every}], got {first_check}")
        if not PII_MARGIN <= holdback <= window - check_every:
            raise ValueError(f"holdback must be in [{PII_MARGIN}, window - check_every = {window - check_every}] "
                             f"so each check still sees the held text; got {holdback}")
        self.check = check
        self.window = window
        self.check_every = check_every
        self.first_check = first_check
        self.holdback = holdback
        self.redact_pii = redact_pii
        self._text = ""
        self._checked = 0  # text[:_checked] passed a check
        self._doubted = 0  # text[:_doubted] failed a provisional check: held until a longer one decides
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
        while len(self._text) - self._unsettled() >= self._step():
            end = self._word_end(self._unsettled() + self._step())
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
        if self._checked < len(self._text) and not self._check_until(len(self._text), final=True):
            return StreamStep("", self.violation)
        return StreamStep(self._release(final=True))

    def _step(self) -> int:
        """Characters between checks: `first_check` until text past `holdback` has been checked, then `check_every`."""
        return self.first_check if self._checked < self.holdback + self.first_check else self.check_every

    def _word_end(self, target: int) -> int:
        """`target` moved back to just after the last whitespace in the unchecked text.

        A window that ends inside a word is read as another word by the classifier: the "canno"
        of a streaming "cannot" scored 0.74 for weapons (a cannon). A word longer than the whole
        step is checked as it stands; the final check always sees every word whole.
        """
        for end in range(target, self._unsettled(), -1):
            if self._text[end - 1].isspace():
                return end
        return target

    def _unsettled(self) -> int:
        """Where the text no check has looked at yet begins."""
        return max(self._checked, self._doubted)

    def _check_until(self, end: int, final: bool = False) -> bool:
        result = self.check(self._text[max(0, end - self.window):end])
        self.checks += 1
        if result.blocked and not final and end < MIN_VERDICT_CHARS:
            self._doubted = end
            return True
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
        """Last whitespace at or before `checked - holdback`, outside every PII span.

        The held `holdback` characters (≥ PII_MARGIN) keep a phone number or IBAN that is
        still arriving whole, and make every released character part of a passed check that
        also saw what follows it.
        """
        settled = self._checked - self.holdback
        if settled <= self._released:
            return self._released
        pending = self._text[self._released:settled]
        spans = find_pii(self._text[self._released:self._checked]) if self.redact_pii else []
        for cut in range(len(pending), 0, -1):
            if pending[cut - 1].isspace() and not any(s.start < cut < s.end for s in spans):
                return self._released + cut
        return self._released
