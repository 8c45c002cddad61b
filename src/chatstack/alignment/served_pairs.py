"""Preference pairs over passages shaped as the demo deployment retrieves them.

The SFT reader learns to copy a sentence from ingest's chunks, but at serving time it drifts
out of the quote after a few words, cites the wrong chunk, and never says a question is not
covered (a fixed "not covered" reply taught by SFT wins greedy decoding everywhere). DPO can
teach the choice SFT cannot: every pair puts two replies to one served prompt side by side.

- **covered** (the answer's chunk is shown): the copied, cited answer is chosen over one of
  - *drift*: the answer's opening words running on into words of another chunk, cut to the
    answer's length and ending, with its citation;
  - *wrong chunk*: a sentence of a shown distractor chunk, cited with that chunk's number;
  - *declined*: the "not covered" reply;
- **uncovered** (only chunks of other sections are shown): "not covered" is chosen over a
  sentence of a shown chunk, cited — the confident answer to the wrong question;
- **no passages** (retrieval found nothing; the question is about the corpus or not): "not
  covered" is chosen over a made-up answer (a sentence of a chunk the prompt does not show).
  Not over the safety refusal: with such pairs the DPO reader stopped refusing unsafe requests,
  which are no-passage prompts too (docs/training.md, "Saying what the documents do not cover").

"Not covered" is chosen in the uncovered and no-passage shares and rejected in as many covered
pairs (`KINDS` draws "declined" twice), so it cannot win by being the one fixed reply. Prompts,
questions and chunks are built by `served_chunks`, split by section path as the SFT reader data is.
"""

from __future__ import annotations

import random

from chatstack.alignment.reader_data import SYSTEM_PROMPT, title_is_held_out
from chatstack.alignment.served_chunks import (
    NOT_COVERED, ChunkedSection, answer_chunk, has_prose, neighbour_chunks, nothing_found_question, prose_sentences,
    question_and_answer, ranked, served_sections,
)
from chatstack.rag.retriever import Passage, with_passages
from chatstack.text.chat_template import Message

# drawn evenly: "not covered" is chosen in a third of the pairs and rejected in another third
KINDS = ("uncovered", "no_passages", "drift", "wrong_chunk", "declined", "declined")


def _record(prompt: list[Message], chosen: str, rejected: str, kind: str, section: ChunkedSection) -> dict:
    return {"prompt": [{"role": m.role, "content": m.content} for m in prompt],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}], "objective": "helpfulness", "kind": kind,
            "section": f"{section.source} § {section.section}"}  # the asked section, as retrieval labels it


def drifted(rng: random.Random, answer: str, donor: str) -> str:
    """`answer`'s first few words (at least two, at most half) running on into `donor`'s words:
    as many words as `answer`, ending in its last character. "" when either is too short."""
    words, foreign = answer.split(), donor.split()
    if len(words) < 4 or len(foreign) < len(words):
        return ""
    keep = rng.randint(2, len(words) // 2)
    start = rng.randrange(len(foreign) - (len(words) - keep) + 1)
    text = " ".join(words[:keep] + foreign[start:start + len(words) - keep])
    if answer[-1] in ".!?:;,)":
        text = text.rstrip(".!?:;,)") + answer[-1]
    return text


def _sentence_of(rng: random.Random, chunk: Passage) -> str:
    sentences = prose_sentences(chunk.text)
    return rng.choice(sentences) if sentences else ""


def served_pair(rng: random.Random, target: ChunkedSection, pool: list[ChunkedSection], kind: str,
                distractors: int = 1) -> dict | None:
    """One pair of `kind` about `target` (None when the drawn chunks give no such rejected reply)."""
    if kind == "no_passages":
        prompt = [Message("system", SYSTEM_PROMPT), Message("user", nothing_found_question(rng, target))]
        return _record(prompt, NOT_COVERED, f"{_sentence_of(rng, answer_chunk(rng, target))} [1]", kind, target)
    if kind == "uncovered":
        shown = neighbour_chunks(rng, target, pool, distractors + 1, same_file=rng.random() < 0.5)
        question, _ = question_and_answer(rng, target.name, answer_chunk(rng, target))
        n = rng.randrange(len(shown))
        wrong = _sentence_of(rng, shown[n])
        prompt = [Message("system", with_passages(SYSTEM_PROMPT, shown)), Message("user", question)]
        return _record(prompt, NOT_COVERED, f"{wrong} [{n + 1}]", kind, target) if wrong else None
    chunk = answer_chunk(rng, target)
    others = neighbour_chunks(rng, target, pool, distractors, same_file=True)
    passages = ranked(rng, chunk, others)
    question, answer = question_and_answer(rng, target.name, chunk)
    n = passages.index(chunk) + 1
    if kind == "declined":
        rejected = NOT_COVERED
    elif kind == "drift":
        text = drifted(rng, answer, " ".join(prose_sentences(rng.choice(others).text)))
        rejected = f"{text} [{n}]" if text else ""
    else:
        m = rng.randrange(len(others))
        wrong = _sentence_of(rng, others[m])
        rejected = f"{wrong} [{passages.index(others[m]) + 1}]" if wrong and wrong != answer else ""
    if not rejected:
        return None
    prompt = [Message("system", with_passages(SYSTEM_PROMPT, passages)), Message("user", question)]
    return _record(prompt, f"{answer} [{n}]", rejected, kind, target)


def served_preference_pairs(count: int, rng: random.Random, held_out: bool, chunk_tokens: int = 200,
                            chunk_overlap_tokens: int = 40, distractors: int = 1,
                            eval_fraction: float = 0.1) -> list[dict]:
    """`count` pairs about training sections (or, with `held_out`, held-out sections)."""
    pool = list(served_sections(chunk_tokens, chunk_overlap_tokens))
    targets = [s for s in pool if title_is_held_out(s.section, eval_fraction) == held_out and has_prose(s)]
    pairs: list[dict] = []
    for _ in range(count):
        kind = rng.choice(KINDS)
        for _ in range(100):
            pair = served_pair(rng, rng.choice(targets), pool, kind, distractors)
            if pair is not None:
                pairs.append(pair)
                break
        else:
            raise ValueError(f"no {kind} pair could be built from the chunk pool")
    return pairs
