"""Scoring of answers to the RAG QA questions over retrieved passages."""

from chatstack.evaluation.served_reader import report_of, score_answer
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
