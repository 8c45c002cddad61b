"""The retrieval query of a chat turn: the user's message, and earlier turns when it is a follow-up.

"and how do I remove one?" means nothing to a retriever on its own: the topic is in the
question before it. A turn that reads as a follow-up (it opens with a connective, leans
on a pronoun, or names almost no content words of its own) carries the user's previous
`max_turns` messages as context; a self-contained question carries none, so a change of
topic is not dragged back to the old one.

The query vector is the turn's embedding plus the context turns' embeddings at a lower
weight (`CONTEXT_WEIGHT`, halved for each older turn), renormalised: the topic comes from
the context, while what is asked about it stays the current turn's. Concatenating the
texts instead gives both equal weight, and "remove one" after "add a user" then finds
the adding section as often as the removing one. BM25 weighs context-only words the same way.
"""

from __future__ import annotations

import json
import re

import numpy as np

from chatstack.rag.grounding import content_words

REFERRING_WORDS = frozenset(
    "it its itself one ones that this those these they them their theirs there same another other others "
    "former latter above previous he she him her".split()
)
OPENERS = ("and ", "but ", "also ", "so ", "then ", "or ", "what about", "how about", "and?", "why not", "same for")
MIN_OWN_CONTENT_WORDS = 3  # fewer than this and the turn cannot stand alone
MAX_TURN_CHARS = 2000  # the embedder reads 256 tokens; BM25 gains nothing from more
MAX_CONTEXT_TURNS = 10
CONTEXT_WEIGHT = 0.7  # weight of the most recent earlier turn against the current turn's 1


def is_follow_up(text: str) -> bool:
    """Whether `text` depends on earlier turns to be understood."""
    lowered = " ".join(text.lower().split())
    if not lowered:
        return False
    if lowered.startswith(OPENERS):
        return True
    words = re.findall(r"[a-z]+", lowered)
    return any(w in REFERRING_WORDS for w in words) or len(content_words(lowered)) < MIN_OWN_CONTENT_WORDS


def history_context(user_text: str, earlier_user_turns: list[str], max_turns: int) -> tuple[str, ...]:
    """The earlier user turns `user_text` is searched with: up to `max_turns`, oldest first; () when it stands alone."""
    if max_turns < 0:
        raise ValueError(f"max_turns must be >= 0, got {max_turns}")
    if max_turns == 0 or not is_follow_up(user_text):
        return ()
    return tuple(t.strip()[:MAX_TURN_CHARS] for t in earlier_user_turns[-max_turns:] if t.strip())


def context_to_json(context: tuple[str, ...]) -> str:
    return json.dumps(list(context), ensure_ascii=False)


def context_from_json(text: str | None) -> tuple[str, ...]:
    """Parse `context_to_json` output ("" or None: no context); ValueError naming the field otherwise."""
    if not text:
        return ()
    try:
        items = json.loads(text)
    except ValueError:
        items = None
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items) or len(items) > MAX_CONTEXT_TURNS:
        raise ValueError(f"query_context must be a JSON list of at most {MAX_CONTEXT_TURNS} strings")
    return tuple(items)


def query_vector(embedder, text: str, context: tuple[str, ...] = ()) -> np.ndarray:
    """(dim,) unit vector: the turn's embedding plus its context's at decaying weights (newest context first)."""
    vectors = embedder.embed([text, *context])  # (1 + C, dim), unit rows
    weights = np.array([1.0] + [CONTEXT_WEIGHT * 0.5 ** age for age in range(len(context) - 1, -1, -1)])
    combined = weights @ vectors  # (dim,)
    return (combined / np.linalg.norm(combined)).astype(np.float32)

