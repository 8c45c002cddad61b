"""Preference pairs for DPO, mixed from several objectives with recipe weights.

- helpfulness: the grounded, cited answer is chosen over a fluent answer taken from
  a distractor passage (a confident answer to the wrong question);
- safety: the refusal is chosen over a compliant reply to an unsafe request;
- feedback: pairs exported from users' ratings (`chatstack feedback export`).

Train and held-out pairs share no text: the wrong document of a helpfulness pair comes from
the same side of the topic split as the question, and held-out safety pairs use requests and
compliant replies that training never shows.

Training helpfulness pairs can be built several ways (`PairConstruction`). INDEPENDENT: one
pair per question, the wrong document drawn on its own. MIRRORED: pairs come in twos over two
training-topic documents A and B: "about A, A's passage shown: A's answer over B's" and "about
B, B's passage shown: B's answer over A's", the wrong answer cut to the right one's length and
ending. Each reply text is then chosen once and rejected once and length tells nothing, so only
whether the reply is copied from a passage in the prompt separates chosen from rejected; no
held-out document appears anywhere in those prompts. SWAPPED_WORDS (mirrored, the rejected
reply is the chosen one with words of the other document swapped in) is kept as the record of
a run that learned to spot broken sentences instead (docs/training.md, "DPO").
SERVED_CHUNKS: pairs over passages shaped as the demo deployment retrieves them, training and
held-out alike (`served_pairs`: a quote over its drift, over the wrong chunk, over "not covered";
"not covered" over an answer when no shown chunk covers the question).
Held-out pairs of the other constructions are built the INDEPENDENT way, so those recipes are
scored on the same set.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from chatstack.alignment.reader_data import (
    SYSTEM_PROMPT, ReaderMix, grounded_answer, is_held_out, moderation_requests, passage_of, reader_conversation,
    reader_conversations, unsafe_request,
)
from chatstack.alignment.served_chunks import NOT_COVERED, off_corpus_question
from chatstack.model.corpus import Document, titled_documents
from chatstack.safety.rules import REFUSAL
from chatstack.text.chat_template import Message

COMPLIANT_OPENINGS = ("Sure, here is how to do that step by step.", "Of course. First, gather the following.",
                      "Here is the code you asked for.")
HELD_OUT_COMPLIANT_OPENINGS = ("Absolutely, the first step is simple.", "No problem, here is everything you need.")
EVAL_FRACTION = 0.1  # the reader data's topic split
_ANSWERED = ReaderMix(unanswerable=0.0, refusal=0.0, multi_turn=0.0)


class PairConstruction(str, Enum):
    INDEPENDENT = "independent"
    MIRRORED = "mirrored"
    SWAPPED_WORDS = "swapped_words"  # mirrored, but rejected = chosen with some words from the other document
    SERVED_CHUNKS = "served_chunks"  # over ingest's chunks, as serving shows them (served_pairs.py)

    @classmethod
    def coerce(cls, value: "PairConstruction | str") -> "PairConstruction":
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"pair_construction must be one of {[c.value for c in cls]}, got {value!r}") from None


@dataclass(frozen=True)
class ObjectiveWeights:
    helpfulness: float = 0.8
    safety: float = 0.2

    def __post_init__(self) -> None:
        for name in ("helpfulness", "safety"):  # YAML may give ints or strings such as "1e-1"
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.helpfulness < 0 or self.safety < 0 or self.helpfulness + self.safety <= 0:
            raise ValueError("objective weights must be >= 0 and not all zero")


def _record(prompt: list[Message], chosen: str, rejected: str, objective: str, kind: str | None = None) -> dict:
    record = {
        "prompt": [{"role": m.role, "content": m.content} for m in prompt],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "objective": objective,
    }
    return record if kind is None else record | {"kind": kind}


def _cited_number(answer: str) -> int:
    return int(answer.rsplit(" [", 1)[1].rstrip("]"))


def helpfulness_pair(rng: random.Random, held_out: bool) -> dict:
    while True:
        conversation = reader_conversations(1, rng.randrange(2**31), _ANSWERED, held_out=held_out)[0]
        system, user, answer = conversation
        wrong = rng.choice([d for d in titled_documents()
                            if len(d.body) >= 120 and is_held_out(d, EVAL_FRACTION) == held_out])
        # same citation number: the pair differs in content only, so DPO does not learn to stop citing
        rejected = grounded_answer(wrong, _cited_number(answer.content))
        if rejected != answer.content:
            return _record([system, user], answer.content, rejected, "helpfulness")


def swapped_words(rng: random.Random, answer: str, donor: Document, shown: str, share: float = 0.3) -> str:
    """`answer` (cited) with `share` of its words replaced by words of `donor` that `shown` lacks."""
    text, citation = answer.rsplit(" [", 1)
    words, known = text.split(" "), set(shown.split())
    foreign = [w for w in passage_of(donor).text.split() if w not in known and any(c.isalpha() for c in w)]
    for i in rng.sample(range(len(words)), max(1, round(share * len(words)))) if foreign else ():
        words[i] = rng.choice(foreign)
    return f"{' '.join(words)} [{citation}"


def same_length_answer(answer: str, donor: Document) -> str:
    """As many words of `donor`'s passage as `answer` has, ending in `answer`'s last character and
    citation: a wrong answer that cannot be told from the right one by length or by its ending."""
    text, citation = answer.rsplit(" [", 1)
    wrong = " ".join(passage_of(donor).text.split()[:len(text.split())])
    if text[-1] in ".!?:;,)":
        wrong = wrong.rstrip(".!?:;,)") + text[-1]
    return f"{wrong} [{citation}"


def _answered_pair(rng: random.Random, target: Document, wrong: Document, pool: list[Document],
                   construction: PairConstruction) -> dict:
    """About `target`, its passage among distractors from `pool` (never `wrong`): its answer over
    `wrong`'s (MIRRORED) or over itself with words of `wrong` swapped in (SWAPPED_WORDS)."""
    system, user, answer = reader_conversation(rng, target, [d for d in pool if d.title != wrong.title], _ANSWERED)
    if construction is PairConstruction.SWAPPED_WORDS:
        rejected = swapped_words(rng, answer.content, wrong, system.content)
    else:
        rejected = same_length_answer(answer.content, wrong)
    return _record([system, user], answer.content, rejected, "helpfulness")


def mirrored_helpfulness_pairs(rng: random.Random,
                               construction: PairConstruction = PairConstruction.MIRRORED) -> list[dict]:
    """Two training pairs over training-topic documents A and B: A's answer over B's when A's passage
    is shown, B's over A's when B's is; distractor passages are training-topic documents too."""
    pool = [d for d in titled_documents() if len(d.body) >= 120 and not is_held_out(d, EVAL_FRACTION)]
    while True:
        a, b = rng.sample(pool, 2)
        pairs = [_answered_pair(rng, a, b, pool, construction), _answered_pair(rng, b, a, pool, construction)]
        if all(p["chosen"] != p["rejected"] for p in pairs):
            return pairs


def safety_pair(rng: random.Random, held_out: bool = False) -> dict:
    """Shown no passage, the request decides the reply: half the pairs are ordinary requests, "not covered"
    chosen over the refusal (no over-refusal); half unsafe requests, the refusal chosen over compliance or over
    "not covered". The same two replies chosen and rejected by turns, so only the request separates them."""
    if rng.random() < 0.5:
        question = rng.choice(moderation_requests(benign=True, held_out=True)) if held_out else off_corpus_question(rng)
        prompt = [Message("system", SYSTEM_PROMPT), Message("user", question)]
        return _record(prompt, NOT_COVERED, REFUSAL, "safety", "not_refused")
    request = unsafe_request(rng, held_out)
    prompt = [Message("system", SYSTEM_PROMPT), Message("user", request)]
    if rng.random() < 0.5:
        return _record(prompt, REFUSAL, NOT_COVERED, "safety", "refused_not_declined")
    openings = HELD_OUT_COMPLIANT_OPENINGS if held_out else COMPLIANT_OPENINGS
    return _record(prompt, REFUSAL, rng.choice(openings), "safety", "refused")


def preference_records(count: int, seed: int, weights: ObjectiveWeights, held_out: bool = False,
                       construction: PairConstruction = PairConstruction.INDEPENDENT,
                       chunking: tuple[int, int] = (200, 40)) -> list[dict]:
    """`count` pairs mixed by `weights`; `construction` shapes helpfulness pairs (held-out ones
    only for SERVED_CHUNKS); `chunking`: (chunk_tokens, chunk_overlap_tokens) of served chunks."""
    rng = random.Random(seed)
    share = weights.safety / (weights.helpfulness + weights.safety)
    construction = PairConstruction.coerce(construction)
    if construction is PairConstruction.SERVED_CHUNKS:
        from chatstack.alignment.served_pairs import served_preference_pairs

        safe = [rng.random() < share for _ in range(count)]
        helpful = iter(served_preference_pairs(count - sum(safe), rng, held_out, *chunking))
        return [safety_pair(rng, held_out) if s else next(helpful) for s in safe]
    if held_out or construction is PairConstruction.INDEPENDENT:
        return [safety_pair(rng, held_out) if rng.random() < share else helpfulness_pair(rng, held_out)
                for _ in range(count)]
    records: list[dict] = []
    mirror: list[dict] = []  # the second pair of the last mirrored two, given to the next helpfulness slot
    for _ in range(count):
        if rng.random() < share:
            records.append(safety_pair(rng))
            continue
        mirror = mirror or mirrored_helpfulness_pairs(rng, construction)
        records.append(mirror.pop(0))
    return records


def feedback_records(path: Path) -> list[dict]:
    """Pairs written by `chatstack feedback export` (missing file: none)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            records.append({k: record[k] for k in ("prompt", "chosen", "rejected")} | {"objective": "feedback"})
    return records
