"""The quote-bound decoding constraint for a rendered prompt (`backends/copy_constraint.py`).

Each retrieved passage becomes a `CopySource`: the token ids its text has *inside the
prompt* (so a quoted span is the very tokens the model attended to), the positions whose
token ends a sentence, and the tokens of its citation " [n]", the form the reader is
trained to cite in (`alignment/reader_data.py`). Paragraph ends and a colon closing its line
count as sentence ends too, so a quote that runs into a grammar listing or a code block can stop.
"""

from __future__ import annotations

import re

from chatstack.backends.copy_constraint import CopyConstraint, CopySource
from chatstack.rag.retriever import Passage, defanged, fence

SENTENCE_FINAL = re.compile(r"[.!?][\"')\]]*$")


def copy_constraint(tokenizer, prompt_text: str, prompt_ids: tuple[int, ...], passages: list[Passage],
                    enter_after: int = 2) -> CopyConstraint | None:
    """The constraint for a prompt holding `passages` (rendered by `with_passages`); None when it has
    none, or when the tokenizer does not split the prompt as `prompt_ids` or a citation apart."""
    if not passages:
        return None
    encoded = tokenizer(prompt_text, add_special_tokens=False, return_offsets_mapping=True)
    if tuple(encoded["input_ids"]) != tuple(prompt_ids):
        return None
    offsets = encoded["offset_mapping"]
    sources, searched_from = [], 0
    for n, passage in enumerate(passages, start=1):
        fenced = fence(n, passage)
        at = prompt_text.find(fenced, searched_from)
        citation = _citation_ids(tokenizer, n)
        if at < 0 or citation is None:
            return None
        searched_from = at + len(fenced)
        text = defanged(passage.text)
        start = at + fenced.index(text)
        source = _source(tokenizer, prompt_text, prompt_ids, offsets, start, start + len(text), citation)
        if source is not None:
            sources.append(source)
    return CopyConstraint(tuple(sources), enter_after) if sources else None


def _source(tokenizer, prompt_text: str, prompt_ids, offsets, start: int, end: int,
            citation: tuple[int, ...]) -> CopySource | None:
    """The prompt tokens lying wholly within characters [start, end), and the openings of its sentences:
    each sentence's first word, encoded as a reply would start with it, where that is one token."""
    inside = [j for j, (a, b) in enumerate(offsets) if start <= a and b <= end and b > a]
    if not inside:
        return None
    ends = frozenset(k for k, j in enumerate(inside) if _ends_sentence(prompt_text, offsets[j][1], end))
    token_ids = tuple(prompt_ids[j] for j in inside)
    starts = [0] + [k + 1 for k in sorted(ends) if k + 1 < len(inside)]
    openings = set()
    for k in starts:
        while k < len(inside) and not prompt_text[offsets[inside[k]][0]:offsets[inside[k]][1]].strip():
            k += 1  # a line break between sentences: the sentence opens at the next token
        word = prompt_text[offsets[inside[k]][0]:offsets[inside[k]][1]].strip() if k < len(inside) else ""
        opening = tokenizer.encode(word, add_special_tokens=False) if word else []
        if len(opening) == 1:
            openings.add((opening[0], k))
    return CopySource(token_ids, ends, citation, frozenset(openings))


def _ends_sentence(text: str, at: int, end: int) -> bool:
    """A sentence (or a paragraph) ends just before `at`: sentence-final punctuation followed by a space
    or the passage's end, a colon ending its line (what follows is a listing), or a blank line next."""
    if at == end:
        return True
    if text.startswith("\n\n", at) or (text[at - 1] == ":" and text[at] == "\n"):
        return True
    return bool(SENTENCE_FINAL.search(text[max(0, at - 4):at])) and text[at].isspace()


def _citation_ids(tokenizer, n: int) -> tuple[int, ...] | None:
    """Tokens of " [n]" as they follow a sentence; None where the tokenizer merges them with it."""
    sentence = tokenizer.encode("It ends here.", add_special_tokens=False)
    cited = tokenizer.encode(f"It ends here. [{n}]", add_special_tokens=False)
    if cited[:len(sentence)] != sentence or len(cited) == len(sentence):
        return None
    return tuple(cited[len(sentence):])
