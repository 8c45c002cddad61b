"""Scoring of answers to the RAG QA questions over retrieved passages."""

import dataclasses

import pytest

from chatstack.evaluation.served_reader import (
    DEFAULT_UNCOVERED, CheckedReply, load_uncovered, report_of, score_answer, unsafe_requests,
)
from chatstack.rag.evaluate import Evidence, QAItem
from chatstack.rag.retriever import Passage

ITEM = QAItem("with", "What is the with statement used for?",
              (Evidence("python_topics/with.txt", "is used to wrap the execution of a block"),))
PASSAGES = [Passage("Other text about loops and suites.", "python_topics/for.txt", 0.6),
            Passage('The "with" statement is used to wrap the execution of a block with\nmethods defined by a '
                    "context manager.", "python_topics/with.txt", 0.5)]


def test_a_quoted_cited_answer_scores_on_every_count():
    a = score_answer(ITEM, PASSAGES, 'The "with" statement is used to wrap the execution of a block. [2]')
    assert a.evidence_passages == (2,) and a.cites_evidence and a.copied and a.evidence_recall == 1.0


def test_citing_the_wrong_passage_or_babbling_does_not_count():
    wrong = score_answer(ITEM, PASSAGES, 'The "with" statement is used to wrap the execution of a block. [1]')
    assert not wrong.cites_evidence and not wrong.copied and wrong.evidence_recall == 1.0
    babble = score_answer(ITEM, PASSAGES, "Zorp quux flim a block of wibble frobs. [2]")
    assert babble.cites_evidence and not babble.copied and 0 < babble.evidence_recall < 0.5
    out_of_range = score_answer(ITEM, PASSAGES, "Nothing here. [7]")
    assert not out_of_range.cites_evidence and not out_of_range.copied


def test_the_report_averages_over_every_question():
    report = report_of([score_answer(ITEM, PASSAGES, 'The "with" statement is used to wrap the execution of a block. [2]'),
                        score_answer(ITEM, PASSAGES[:1], "I do not know.")])
    assert (report.questions, report.with_evidence_retrieved) == (2, 1)
    assert report.cites_evidence == 0.5 and report.copied == 0.5 and 0 < report.evidence_recall < 1


def test_declines_are_counted_apart_for_covered_and_uncovered_questions():
    declined = score_answer(ITEM, PASSAGES, "The documents I was given do not cover that, so I cannot answer it.")
    assert declined.declined and not declined.cites_evidence
    answered = score_answer(ITEM, PASSAGES, 'The "with" statement is used to wrap the execution of a block. [2]')
    uncovered = [CheckedReply("u1", "Who wrote Emma?", "The documents I was given do not cover that.", 0, True),
                 CheckedReply("u2", "How do I tune a guitar?", "I can't help with that request.", 0, False),
                 CheckedReply("u3", "What is a pod?", "The following methods can be defined. [1]", 2, False)]
    report = report_of([declined, answered], uncovered)
    assert report.declined_covered == 0.5 and report.uncovered == 3 and report.declined_uncovered == 1 / 3
    assert "declined 0.50" in report.summary() and "3 uncovered questions: declined 0.33" in report.summary()
    assert report_of([answered]).uncovered == 0 and "uncovered" not in report_of([answered]).summary()


def test_the_shipped_uncovered_questions_load_and_a_bad_line_is_named(tmp_path):
    items = load_uncovered(DEFAULT_UNCOVERED)
    assert len(items) >= 20 and len({qid for qid, _ in items}) == len(items)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "question": "Fine?"}\n{"id": "b"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: .*'question'"):
        load_uncovered(bad)


def test_unsafe_requests_cover_the_trained_held_out_and_blind_ones_and_the_summary_counts_unseen_apart():
    from chatstack.alignment.reader_data import HELD_OUT_UNSAFE_REQUESTS, UNSAFE_REQUESTS, moderation_requests
    from chatstack.safety.dataset import BLIND_PATH, load_literal_examples

    requests = unsafe_requests()
    assert {r for _, r, trained in requests if trained} == set(UNSAFE_REQUESTS)
    unseen = {r for _, r, trained in requests if not trained}
    blind = {e.text: e.label for e in load_literal_examples(BLIND_PATH)}
    assert set(HELD_OUT_UNSAFE_REQUESTS) < unseen and len(unseen) >= 4 + 7 * 3
    assert {blind[r] for r in unseen - set(HELD_OUT_UNSAFE_REQUESTS)} == \
        {"malware_cyber", "jailbreak", "violence", "weapons_drugs", "hate_harassment", "privacy", "sexual_minors"}
    assert not unseen & set(moderation_requests())  # none is a refusal the reader trains on
    assert len({qid for qid, _, _ in requests}) == len(requests)
    replies = [CheckedReply("trained-1", "a", "I can't help with that request.", 0, True, trained=True),
               CheckedReply("trained-2", "b", "Sure.", 0, False, trained=True),
               CheckedReply("held-out-1", "c", "I can't help with that request.", 0, True),
               CheckedReply("x", "d", "The documents I was given do not cover that.", 0, False)]
    report = report_of([], unsafe=replies)
    assert report.refused_unsafe == 0.5 and report.refused_unseen == 0.5
    assert report.summary().endswith("4 unsafe requests: refused 0.50 (2 unseen: 0.50)")
    trained_only = report_of([], unsafe=replies[:1] + replies[3:])
    assert trained_only.refused_unsafe == 0.5 and trained_only.refused_unseen == 0.0
