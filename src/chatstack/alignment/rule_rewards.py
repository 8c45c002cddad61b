"""Rule rewards for the GRPO stage, in TRL's reward-function form.

Each function takes the batch's `completions` (conversational: a list of messages per
completion) plus dataset columns as keyword lists, and returns one float per completion.
The `gold_citation` column holds the covering passage's marker (e.g. "[2]"), or "" when no
passage covers the question.
"""

from __future__ import annotations

import re

CITATION = re.compile(r"\[\d+\]")
NOT_COVERED_PHRASE = "do not cover"


def completion_text(completion) -> str:
    """The reply's text, whether TRL passes a plain string or a list of assistant messages."""
    if isinstance(completion, str):
        return completion
    return "".join(message.get("content", "") for message in completion)


def cites_covering_passage(completions: list, gold_citation: list[str], **_) -> list[float]:
    """Answerable questions: +1 for citing the covering passage, -1 for citing another one,
    0 for citing nothing. Unanswerable questions score 0 here."""
    scores = []
    for completion, gold in zip(completions, gold_citation, strict=True):
        cited = set(CITATION.findall(completion_text(completion)))
        if not gold:
            scores.append(0.0)
        elif gold in cited:
            scores.append(1.0 if len(cited) == 1 else 0.5)  # citing everything is not reading
        else:
            scores.append(-1.0 if cited else 0.0)
    return scores


def says_not_covered(completions: list, gold_citation: list[str], **_) -> list[float]:
    """Unanswerable questions: +1 for saying the documents do not cover it (and citing
    nothing), -1 for answering anyway with a citation. Answerable questions: -1 for claiming
    the documents do not cover what they do, else 0."""
    scores = []
    for completion, gold in zip(completions, gold_citation, strict=True):
        text = completion_text(completion)
        declined = NOT_COVERED_PHRASE in text.lower()
        if not gold:
            scores.append(1.0 if declined and not CITATION.search(text) else (-1.0 if CITATION.search(text) else 0.0))
        else:
            scores.append(-1.0 if declined else 0.0)
    return scores


RULE_REWARDS = {"cites_covering_passage": cites_covering_passage, "says_not_covered": says_not_covered}
