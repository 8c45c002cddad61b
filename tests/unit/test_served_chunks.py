"""Reader conversations over passages shaped as the demo deployment retrieves them."""

from __future__ import annotations

import re

import pytest

from chatstack import project
from chatstack.alignment.reader_data import SYSTEM_PROMPT, ReaderMix, reader_conversations
from chatstack.alignment.served_chunks import NOT_COVERED, first_prose_sentences, served_sections
from chatstack.config import config_from_dict, load_config
from chatstack.recipes import load_recipe
from chatstack.rag.chunking import ChunkingParams, chunk_document
from chatstack.rag.demo_corpus import write_python_topics
from chatstack.rag.documents import read_document
from chatstack.rag.embedder import token_offsets

CHUNKS = ReaderMix(refusal=0, unanswerable=0, multi_turn=0, distractors=2, passages="chunks", chunk_tokens=120,
                   chunk_overlap_tokens=24)
_REFERENCE = re.compile(r'<reference n="(\d+)" source="(.*?)">\n(.*?)\n</reference>', re.DOTALL)


def shown(system: str) -> dict[int, tuple[str, str]]:
    return {int(n): (label, text) for n, label, text in _REFERENCE.findall(system)}


def flat(text: str) -> str:
    return " ".join(text.split())


def test_first_prose_sentences_skip_grammar_tables_code_and_cut_off_sentences():
    text = ('continued from the chunk before.\n\n'
            'assert_stmt ::= "assert" expression\n\n'
            '| "s.pop()" | removes it |\n\n'
            '   if x:\n       pass\n\n'
            'Assert statements are a convenient way to insert debugging\nassertions into a program.  More follows.\n')
    assert first_prose_sentences(text) == ("Assert statements are a convenient way to insert debugging assertions "
                                           "into a program.")
    assert first_prose_sentences("| a | b |\n\n   code\n") == ""
    assert first_prose_sentences("This one is short.  The second sentence is kept with it.  Not a third.") == (
        "This one is short. The second sentence is kept with it.")
    assert first_prose_sentences("Too short.\n\nThe next paragraph has enough words.") == (
        "The next paragraph has enough words.")


def test_passages_are_ingest_chunks_labelled_as_retrieval_labels_them():
    path = write_python_topics() / "assert.txt"
    chunks = chunk_document(read_document(path, "python_topics/assert.txt"), token_offsets(), ChunkingParams(120, 24), "t")
    section = next(s for s in served_sections(120, 24) if s.source == "python_topics/assert.txt")
    assert [c.text for c in section.chunks] == [c.text for c in chunks if c.section == section.section]
    for system, _question, _answer in reader_conversations(30, 0, CHUNKS):
        for label, _text in shown(system.content).values():
            assert re.fullmatch(r"python_topics/[\w-]+\.txt § .+", label)


def test_answers_copy_a_prose_sentence_of_the_cited_chunk_of_the_asked_section():
    for system, question, answer in reader_conversations(80, 0, CHUNKS):
        text, citation = answer.content.rsplit(" [", 1)
        label, passage = shown(system.content)[int(citation.rstrip("]"))]
        assert flat(text) in flat(passage)
        name, asked = label.rsplit(" > ", 1)[-1].rsplit(" § ", 1)[-1].lower(), question.content.lower()
        keyword = re.search(r'"([^"]+)"', name)
        answer_words = {w.lower() for w in re.findall(r"\w{4,}", text)}
        assert (name in asked or (keyword and keyword.group(1) in asked)
                or len(answer_words & set(re.findall(r"\w{4,}", asked))) >= 2), (question, label)
        assert len(shown(system.content)) == 3


def test_unanswerable_questions_show_no_chunk_of_the_asked_section():
    mix = ReaderMix(refusal=0, unanswerable=1.0, multi_turn=0, distractors=2, passages="chunks", chunk_tokens=120,
                    chunk_overlap_tokens=24)
    for system, question, answer in reader_conversations(40, 0, mix):
        assert "do not cover" in answer.content
        name = answer.content.split("do not cover ", 1)[1].split(", so I", 1)[0]
        assert all(not label.endswith(name) for label, _ in shown(system.content).values())


def cited_labels(conversation) -> set[str]:
    system, *turns = conversation
    return {shown(system.content)[int(m.content.rsplit(" [", 1)[1].rstrip("]"))][0]
            for m in turns if m.role == "assistant"}


def test_chunk_conversations_are_split_by_section_in_every_turn():
    mix = ReaderMix(refusal=0, unanswerable=0, multi_turn=1.0, distractors=2, passages="chunks", chunk_tokens=120,
                    chunk_overlap_tokens=24)
    train = set().union(*(cited_labels(c) for c in reader_conversations(300, 0, mix)))
    held = set().union(*(cited_labels(c) for c in reader_conversations(60, 0, mix, held_out=True)))
    assert train and held and not train & held


def test_the_demo_reader_is_trained_on_the_demo_deployments_chunks():
    mix = load_recipe(project.ROOT / "training" / "recipes" / "demo_sft.yaml")["mix"]
    retrieval = load_config(project.ROOT / "deploy" / "demo.toml").retrieval
    assert mix["passages"] == "chunks"
    assert (mix["chunk_tokens"], mix["chunk_overlap_tokens"]) == (retrieval.chunk_tokens, retrieval.chunk_overlap_tokens)


@pytest.mark.parametrize(("raw", "field"), [({"passages": "pages"}, "passages"), ({"chunk_tokens": 8}, "chunk_tokens"),
                                            ({"chunk_overlap_tokens": 150}, "chunk_overlap_tokens"),
                                            ({"by_words": 1.5}, "by_words")])
def test_bad_passage_settings_are_rejected(raw, field):
    with pytest.raises(ValueError, match=field):
        ReaderMix(**raw)


@pytest.mark.parametrize(("raw", "field"), [({"chunk_tokens": 600}, "chunk_tokens"),
                                            ({"chunk_tokens": 100, "chunk_overlap_tokens": 60}, "chunk_overlap_tokens")])
def test_bad_chunking_config_is_rejected(raw, field):
    with pytest.raises(ValueError, match=f"retrieval.{field}"):
        config_from_dict({"retrieval": raw})


def test_questions_retrieval_found_nothing_for_are_answered_not_covered_without_passages():
    mix = ReaderMix(refusal=0, unanswerable=0, no_passages=1.0, multi_turn=0, distractors=1, passages="chunks")
    for system, question, answer in reader_conversations(20, 0, mix):
        assert system.content == SYSTEM_PROMPT and answer.content == NOT_COVERED and question.content.endswith(("?", "."))
    half = ReaderMix(refusal=0, unanswerable=0, no_passages=0.5, multi_turn=0, distractors=1, passages="chunks")
    declined = [c[-1].content == NOT_COVERED for c in reader_conversations(200, 0, half)]
    assert 0.35 < sum(declined) / len(declined) < 0.65
    assert all(shown(c[0].content) for c in reader_conversations(200, 0, half) if c[-1].content != NOT_COVERED)


@pytest.mark.parametrize(("raw", "message"), [({"no_passages": 1.5}, "no_passages must be in"),
                                              ({"no_passages": 0.1}, "no_passages needs passages: chunks"),
                                              ({"refusal_with_passages": 0.3}, "refusal_with_passages needs passages"),
                                              ({"passages": "chunks", "refusal_with_passages": -0.1},
                                               "refusal_with_passages must be in"),
                                              ({"passages": "chunks", "no_passages": 0.6, "quote": 0.5},
                                               "must not exceed 1")])
def test_bad_no_passages_shares_are_rejected(raw, message):
    with pytest.raises(ValueError, match=message):
        ReaderMix(**raw)


def test_shown_nothing_unsafe_requests_and_ordinary_questions_are_many_and_never_the_same():
    """Refusal or "not covered" must follow from what is asked: both kinds are varied, drawn apart."""
    from chatstack.alignment.reader_data import UNSAFE_REQUESTS, moderation_requests
    from chatstack.safety.rules import REFUSAL

    mix = ReaderMix(refusal=0.5, unanswerable=0, no_passages=0.5, multi_turn=0, distractors=1, passages="chunks")
    conversations = reader_conversations(400, 0, mix)
    refused = {c[1].content for c in conversations if c[-1].content == REFUSAL}
    declined = {c[1].content for c in conversations if c[-1].content == NOT_COVERED}
    assert all(c[0].content == SYSTEM_PROMPT for c in conversations)  # neither shows a passage
    assert len(refused) > 80 and len(declined) > 80 and not refused & declined
    assert refused <= set(UNSAFE_REQUESTS) | set(moderation_requests()) and refused & set(UNSAFE_REQUESTS)
    assert not any("self-harm" in r or "kill myself" in r for r in refused)


def test_unsafe_requests_shown_unrelated_chunks_are_refused_all_the_same():
    from chatstack.safety.rules import REFUSAL

    mix = ReaderMix(refusal=1.0, unanswerable=0, multi_turn=0, distractors=1, passages="chunks",
                    refusal_with_passages=0.4)
    conversations = reader_conversations(200, 0, mix)
    assert all(c[-1].content == REFUSAL for c in conversations)
    with_chunks = [shown(c[0].content) for c in conversations if c[0].content != SYSTEM_PROMPT]
    assert 0.25 < len(with_chunks) / len(conversations) < 0.55
    assert all(1 <= len(passages) <= 2 for passages in with_chunks)
    assert all(label.startswith("python_topics/") for passages in with_chunks for label, _ in passages.values())
    none = ReaderMix(refusal=1.0, unanswerable=0, multi_turn=0, distractors=1, passages="chunks")
    assert all(c[0].content == SYSTEM_PROMPT for c in reader_conversations(50, 0, none))


def test_off_corpus_training_questions_share_no_long_word_with_the_evaluated_uncovered_ones():
    import random

    from chatstack.alignment.served_chunks import _LONG_WORD, UNCOVERED_EVAL, benign_look_alikes, off_corpus_question

    evaluated = set(_LONG_WORD.findall(UNCOVERED_EVAL.read_text(encoding="utf-8").lower()))
    assert len(benign_look_alikes()) > 300
    assert not any(evaluated & set(_LONG_WORD.findall(q.lower())) for q in benign_look_alikes())
    rng = random.Random(0)
    asked = [off_corpus_question(rng) for _ in range(400)]
    assert 0.2 < sum(q in benign_look_alikes() for q in asked) / len(asked) < 0.4


def test_held_out_conversations_refuse_held_out_requests():
    from chatstack.alignment.reader_data import HELD_OUT_UNSAFE_REQUESTS, moderation_requests
    from chatstack.safety.rules import REFUSAL

    mix = ReaderMix(refusal=1.0, unanswerable=0, multi_turn=0, distractors=1, passages="chunks")
    trained = {c[1].content for c in reader_conversations(100, 0, mix)}
    held = {c[1].content for c in reader_conversations(100, 0, mix, held_out=True) if c[-1].content == REFUSAL}
    assert held and held <= set(HELD_OUT_UNSAFE_REQUESTS) | set(moderation_requests(held_out=True))
    assert not held & trained
