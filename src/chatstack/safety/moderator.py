"""The moderation pipeline: normalise → classify → apply policy → audit.

`Moderator.check_input` screens a user turn (all categories, PII redaction);
`Moderator.check_output` screens generated text (the policy's output
categories only: a model quoting "ignore previous instructions" is no jailbreak);
`Moderator.check_document` screens a retrieved passage for smuggled instructions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from chatstack.safety.audit import AuditLog, SafetyCounters
from chatstack.safety.classifier import WHOLE_CHARS, CategoryScores, SafetyClassifier
from chatstack.safety.normalize import normalize_text
from chatstack.safety.pii import find_pii, redact
from chatstack.safety.policy import CATEGORIES, Action, SafetyPolicy, load_policy

_SEVERITY = {Action.ALLOW: 0, Action.FLAG: 1, Action.REDACT: 2, Action.REFUSE: 3}


@dataclass(frozen=True)
class ModerationResult:
    """What to do with one text. `text` is what may flow on (PII redacted when the policy says so)."""

    action: Action
    category: str | None  # the deciding category; None when nothing fired
    score: float
    text: str
    message: str = ""  # the category's refusal message when action is REFUSE
    pii_kinds: tuple[str, ...] = ()
    escalated: bool = False  # the MiniLM stage ran (stage 1 was unsure)

    @property
    def blocked(self) -> bool:
        return self.action is Action.REFUSE

    @property
    def reason(self) -> str:
        """Names the category, never the matched text."""
        if self.category is None:
            return ""
        return f"{self.category} (score {self.score:.2f}, action {self.action.value})"


def decide(scores: CategoryScores, policy: SafetyPolicy, categories: tuple[str, ...]) -> tuple[Action, str | None, float]:
    """The most severe action among categories at or over their threshold (ties: higher score).

    When no single category fires but their summed score reaches `policy.harm_threshold`
    (probability mass split between, say, violence and weapons), the top category fires.
    """
    best: tuple[Action, str | None, float] = (Action.ALLOW, None, 0.0)
    for name in categories:
        rule, score = policy.categories[name], scores.scores.get(name, 0.0)
        if score < rule.threshold or rule.action is Action.ALLOW:
            continue
        if (_SEVERITY[rule.action], score) > (_SEVERITY[best[0]], best[2]):
            best = (rule.action, name, score)
    harm = min(1.0, sum(scores.scores.get(name, 0.0) for name in categories))
    if best[1] is None and harm >= policy.harm_threshold:
        name, _ = scores.top(categories)
        best = (policy.categories[name].action, name, harm)
    return best


class Moderator:
    def __init__(self, classifier: SafetyClassifier, policy: SafetyPolicy, *, max_input_chars: int = 12000,
                 audit: AuditLog | None = None, counters: SafetyCounters | None = None):
        self.classifier = classifier
        self.policy = policy
        self.max_input_chars = max_input_chars
        self.audit = audit or AuditLog()
        self.counters = counters or SafetyCounters()

    @classmethod
    def from_config(cls, safety, counters: SafetyCounters | None = None) -> "Moderator":
        """Build from a `SafetySection` (loads the embedders; distils the static table and trains the head if needed)."""
        from chatstack.project import ARTIFACTS
        from chatstack.safety.embedder import load_embedder
        from chatstack.safety.static_embedder import StaticEmbedder
        from chatstack.safety.train import embedder_path, ensure_head, static_table_path

        head_path = Path(safety.head_path or ARTIFACTS / "safety-head.joblib")
        embedder = load_embedder(embedder_path(head_path)) if safety.use_embeddings else None
        # distilling (once, when the table is missing) runs ~30k tiny batches: use every core for it
        static = StaticEmbedder.load_or_distill(static_table_path(head_path),
                                                lambda: load_embedder(embedder_path(head_path), threads=0),
                                                embedder_path(head_path))
        head = ensure_head(head_path, static, embedder)
        audit = AuditLog(Path(safety.audit_path) if safety.audit_path else None)
        return cls(SafetyClassifier(head, static, embedder), load_policy(safety.policy_path),
                   max_input_chars=safety.max_input_chars, audit=audit, counters=counters)

    def check_input(self, text: str, request_id: str = "", field: str = "query") -> ModerationResult:
        """ValueError (naming `field`) when the text is over `max_input_chars`."""
        return self._check(text, request_id, "input", CATEGORIES, field, WHOLE_CHARS)

    def check_output(self, text: str, request_id: str = "") -> ModerationResult:
        return self._check(text, request_id, "output", self.policy.output_categories(), "output", 0)

    def check_document(self, text: str, request_id: str = "") -> ModerationResult:
        """A retrieved passage: only prompt injection matters (drop the passage when blocked)."""
        return self._check(text, request_id, "document", ("jailbreak",), "passage", WHOLE_CHARS)

    def _check(self, text: str, request_id: str, direction: str, categories: tuple[str, ...],
               field: str, whole_chars: int) -> ModerationResult:
        scores = self.classifier.score(normalize_text(text, field, self.max_input_chars), whole_chars, categories)
        action, category, score = decide(scores, self.policy, categories)
        spans = find_pii(text)
        kinds = tuple(sorted({span.kind for span in spans}))
        redacting = bool(spans) and Action.REDACT in (self.policy.pii_action, action)
        passed = redact(text, spans) if redacting else text
        message = self.policy.categories[category].message if action is Action.REFUSE else ""
        if category is not None:
            self.audit.record(request_id, direction, category, score, action.value, text)
            self.counters.increment(direction, category, action.value)
        if kinds and self.policy.pii_action is not Action.ALLOW:
            self.counters.increment(direction, "pii", self.policy.pii_action.value)
        return ModerationResult(action, category, score, passed, message, kinds, scores.escalated)
