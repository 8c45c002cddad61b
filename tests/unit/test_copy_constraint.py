"""Quote-bound decoding: the tracker on token ids alone, and its constraint built from a real prompt."""

from __future__ import annotations

import pytest
import torch

from chatstack.backends.base import (
    FinishReason, GenerationBackend, GenerationOutput, GenerationRequest, SamplingParams,
)
from chatstack.backends.copy_constraint import CopyConstraint, CopySource, CopyTracker, Mode
from chatstack.model.tokenizer import MIN_VOCAB_SIZE, train_tokenizer
from chatstack.rag.passage_copy import copy_constraint
from chatstack.rag.retriever import Passage, fenced_passages, with_passages
from chatstack.serving.chat_request import ChatRequest
from chatstack.serving.chat_service import ChatService
from chatstack.sessions.store import SessionStore
from chatstack.text.chat_template import Message, render_chat

STOP = 0
CITE_1, CITE_2 = (90, 91, 99), (90, 92, 99)  # " [", "1" / "2", "]"
FIRST = CopySource((10, 11, 12, 13, 14, 15), frozenset({2, 5}), CITE_1)  # sentences end at 12 and 15
SECOND = CopySource((20, 11, 12, 30, 31), frozenset({4}), CITE_2)
CONSTRAINT = CopyConstraint((FIRST, SECOND), enter_after=2)
VOCAB = 100


def decode_greedily(tracker: CopyTracker, preferences: list[list[int]]) -> list[int]:
    """Each step the 'model' ranks `preferences[step]` first (best first): the tracker picks among them."""
    out: list[int] = []
    for ranked in preferences:
        tracker.sync(out)
        logits = torch.full((VOCAB,), -10.0)
        for rank, token in enumerate(ranked):
            logits[token] = 10.0 - rank
        out.append(int(torch.argmax(tracker.mask(logits))))
    return out


def test_decoding_is_free_until_generated_tokens_match_a_passage_span():
    tracker = CopyTracker(CONSTRAINT, (STOP,))
    tracker.sync([5, 6, 7])
    assert tracker.mode is Mode.FREE and tracker.allowed() is None
    tracker.sync([5, 6, 7, 11])  # one token of a span is not enough at enter_after 2
    assert tracker.allowed() is None
    tracker.sync([5, 6, 7, 11, 12])  # 11, 12 lies in both passages
    assert tracker.mode is Mode.QUOTING
    assert tracker.allowed() == sorted({13, 30, STOP, 90})  # both continuations; a sentence ends at 12 in FIRST


def test_a_quote_runs_on_exactly_and_the_citation_names_its_own_passage():
    tracker = CopyTracker(CONSTRAINT, (STOP,))
    # the model drifts after two quoted tokens (wants 77, then 78) and tries to cite [1] for SECOND's words
    out = decode_greedily(tracker, [[20], [11], [77, 12], [78, 30], [31], [90], [91, 92], [99], [STOP]])
    assert out == [20, 11, 12, 30, 31, 90, 92, 99, STOP]
    tracker.sync(out[:-1])
    assert tracker.mode is Mode.FREE  # after the citation the model may end or quote again


def test_an_answer_opening_a_passage_sentence_is_bound_from_its_first_token():
    opened = CopySource(FIRST.token_ids, FIRST.sentence_ends, CITE_1, frozenset({(40, 0), (43, 3)}))
    constraint = CopyConstraint((opened, SECOND), enter_after=2)
    tracker = CopyTracker(constraint, (STOP,))
    tracker.sync([43])  # 43: the reply form of the word at position 3 ("The" for the passage's " The")
    assert tracker.mode is Mode.QUOTING and tracker.allowed() == [14]
    later = CopyTracker(constraint, (STOP,))
    later.sync([7, 43])  # only the answer's first token opens a quote: later ones bind by enter_after
    assert later.mode is Mode.FREE


def test_no_ending_mid_sentence():
    tracker = CopyTracker(CONSTRAINT, (STOP,))
    tracker.sync([10, 11, 12, 13])
    assert STOP not in tracker.allowed() and 90 not in tracker.allowed()
    assert tracker.allowed() == [14]
    tracker.sync([10, 11, 12, 13, 14, 15])  # the passage's end
    assert tracker.allowed() == [STOP, 90]


def test_a_stop_token_ends_quoting_and_an_unmasked_token_releases_it():
    tracker = CopyTracker(CONSTRAINT, (STOP,))
    tracker.sync([10, 11, 12, STOP])
    assert tracker.mode is Mode.FREE
    other = CopyTracker(CONSTRAINT, (STOP,))
    other.sync([10, 11, 55])  # a backend that ignored the mask: decoding runs free again, never raises
    assert other.mode is Mode.FREE and other.allowed() is None


def test_syncing_again_after_a_resume_gives_the_same_state():
    tokens = [20, 11, 12, 30, 31, 90, 92]
    once, twice = CopyTracker(CONSTRAINT, (STOP,)), CopyTracker(CONSTRAINT, (STOP,))
    once.sync(tokens)
    for end in range(len(tokens) + 1):
        twice.sync(tokens[:end])
        twice.sync(tokens[:end])
    assert (once.mode, once.allowed()) == (twice.mode, twice.allowed()) == (Mode.CITING, [99])


@pytest.mark.parametrize("kwargs, match", [
    ({"sources": ()}, "at least one source"),
    ({"sources": (FIRST,), "enter_after": 0}, "enter_after must be >= 1"),
])
def test_bad_constraints_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CopyConstraint(**kwargs)


def test_source_positions_must_index_its_tokens():
    with pytest.raises(ValueError, match="sentence_ends must index token_ids"):
        CopySource((1, 2), frozenset({2}), CITE_1)


PASSAGES = [Passage("Lists are mutable sequences. They hold items in order.", "stdtypes.txt", 0.9, "Lists"),
            Passage("A tuple is immutable! Use one for fixed records.", "stdtypes.txt", 0.8, "Tuples")]


@pytest.fixture(scope="module")
def tokenizer():
    lines = [f"{p.text} {i}" for i in range(200) for p in PASSAGES] + ["It ends here. [1] [2]"] * 50
    return train_tokenizer(lines, vocab_size=max(MIN_VOCAB_SIZE, 400))


def test_constraint_from_a_rendered_prompt_holds_each_passage_as_the_prompt_tokenizes_it(tokenizer):
    text = render_chat([Message("system", with_passages("Be helpful.", PASSAGES)), Message("user", "Lists?")],
                       add_generation_prompt=True)
    ids = tuple(tokenizer.encode(text, add_special_tokens=False))
    constraint = copy_constraint(tokenizer, text, ids, PASSAGES)
    assert len(constraint.sources) == 2
    for source, passage in zip(constraint.sources, PASSAGES):
        assert tokenizer.decode(source.token_ids) == passage.text
        assert any(source.token_ids == ids[i:i + len(source.token_ids)] for i in range(len(ids)))
        ends = [tokenizer.decode(source.token_ids[:i + 1]) for i in sorted(source.sentence_ends)]
        sentences = passage.text.replace("! ", "!|").replace(". ", ".|").split("|")
        assert ends == [" ".join(sentences[:k + 1]) for k in range(len(sentences))]
        opened = sorted(tokenizer.decode([t]) + tokenizer.decode(source.token_ids[i + 1:i + 3])
                        for t, i in source.openings)
        assert opened == sorted(tokenizer.decode(tokenizer.encode(s)[:3]) for s in sentences
                                if len(tokenizer.encode(s.split()[0])) == 1)
        assert opened  # "Lists", "They", "A", "Use" are words of the tokenizer's corpus
    assert tokenizer.decode(constraint.sources[1].citation) == " [2]"


def test_passages_read_back_from_a_rendered_prompt_give_the_same_constraint(tokenizer):
    tricky = Passage("A fence in text: </reference> stays inside.", "notes.md", 0.5, 'The "try" statement')
    text = render_chat([Message("system", with_passages("Be helpful.", [*PASSAGES, tricky])),
                        Message("user", "Lists?")], add_generation_prompt=True)
    ids = tuple(tokenizer.encode(text, add_special_tokens=False))
    read_back = fenced_passages(text)
    assert [p.source for p in read_back] == ["stdtypes.txt § Lists", "stdtypes.txt § Tuples",
                                            'notes.md § The "try" statement']
    assert read_back[2].text == "A fence in text: </ reference> stays inside."
    assert copy_constraint(tokenizer, text, ids, read_back) == copy_constraint(tokenizer, text, ids,
                                                                                [*PASSAGES, tricky])
    assert fenced_passages(render_chat([Message("system", "Be helpful."), Message("user", "Hi")])) == []


def test_no_constraint_without_passages_or_for_ids_the_prompt_text_does_not_give(tokenizer):
    text = with_passages("Be helpful.", PASSAGES)
    ids = tuple(tokenizer.encode(text, add_special_tokens=False))
    assert copy_constraint(tokenizer, text, ids, []) is None
    assert copy_constraint(tokenizer, text, ids[:-1], PASSAGES) is None


class RecordingBackend(GenerationBackend):
    """Keeps what ChatService submits; streams nothing but the end."""

    def __init__(self):
        self.requests: list[GenerationRequest] = []

    @property
    def context_window(self) -> int:
        return 4096

    def submit(self, request: GenerationRequest) -> None:
        self.validate(request)
        self.requests.append(request)

    def stream(self, request_id: str, coalesce: bool = False):
        yield GenerationOutput(request_id, (), FinishReason.LENGTH)

    def cancel(self, request_id: str) -> None:
        pass


@pytest.mark.parametrize("configured, requested, passages, quote_bound", [
    (True, None, PASSAGES, True), (False, None, PASSAGES, False), (True, None, [], False),
    (False, True, PASSAGES, True), (True, False, PASSAGES, False)])
def test_chat_service_sends_the_constraint_when_the_request_or_the_deployment_asks(
        tokenizer, tmp_path, configured, requested, passages, quote_bound):
    backend = RecordingBackend()
    service = ChatService(backend, tokenizer, SessionStore(tmp_path / "s.sqlite"))
    service.copy_from_passages, service.copy_enter_after = configured, 3
    request = ChatRequest([Message("system", "Be helpful."), Message("user", "Lists?")], passages, False, "",
                          None, SamplingParams(max_tokens=8), (), True, quote_bound=requested)
    list(service.start("r1", request))
    sent = backend.requests[0]
    assert sent.prompt_token_ids == service.prompt_ids(request)
    assert (sent.copy is not None) is quote_bound
    if quote_bound:
        assert sent.copy.enter_after == 3
        assert [tokenizer.decode(s.token_ids) for s in sent.copy.sources] == [p.text for p in PASSAGES]


def test_a_colon_ending_its_line_and_a_paragraph_end_let_a_quote_stop(tokenizer):
    passage = Passage("Lists are written like this:\n   [1, 2]\nThey hold items\n\nin order", "s.txt", 0.9, "Lists")
    text = with_passages("Be helpful.", [passage])
    ids = tuple(tokenizer.encode(text, add_special_tokens=False))
    (source,) = copy_constraint(tokenizer, text, ids, [passage]).sources
    ends = [tokenizer.decode(source.token_ids[:i + 1]) for i in sorted(source.sentence_ends)]
    assert ends == ["Lists are written like this:", "Lists are written like this:\n   [1, 2]\nThey hold items",
                    passage.text]
