"""BM25 and reciprocal-rank fusion on small fixed texts."""

import numpy as np
import pytest

from chatstack.rag.lexical import BM25Index, BM25Params, reciprocal_rank_fusion, top_rows

TEXTS = [
    "The global statement declares names in the module namespace.",
    "A function body runs in a new local namespace.",
    "Classes have a namespace too; methods see the class namespace through self.",
    "Lists are mutable sequences.",
]


def test_a_rare_literal_word_ranks_its_text_first():
    index = BM25Index(TEXTS)
    assert index.top("what does global do?", 2) == [0]  # only text 0 has "global"; zero scores are left out
    assert index.top("mutable list", 4)[0] == 3  # "lists" matches "list" through the stemmer


def test_common_words_weigh_less_than_rare_ones():
    index = BM25Index(TEXTS)
    namespace, module = index.scores("namespace"), index.scores("module")
    assert namespace[0] > 0 and module[0] > namespace[0]  # "namespace" is in 3 of 4 texts, "module" in 1
    assert namespace[2] > namespace[1]  # term frequency counts, with saturation


def test_context_words_count_less_than_the_querys_own():
    index = BM25Index(["remove a printer", "add a user to a group", "remove a user from a group"])
    plain = index.scores("remove")
    assert plain[0] > plain[2] > 0 and plain[1] == 0  # alone, "remove" prefers the short printer text
    ranked = index.top("remove", 3, context=("add a user to a group",))
    assert ranked[0] == 2 and ranked.index(1) > ranked.index(2)


def test_empty_and_unknown_queries_score_zero():
    index = BM25Index(TEXTS)
    assert not index.scores("").any() and index.top("zzz qqq", 3) == []
    assert BM25Index([]).top("global", 3) == []


def test_bm25_params_are_checked():
    with pytest.raises(ValueError, match="k1"):
        BM25Params(k1=-1)
    with pytest.raises(ValueError, match="bm25 b"):
        BM25Params(b=1.5)


def test_top_rows_orders_best_first_with_stable_ties():
    assert list(top_rows(np.array([0.1, 0.9, 0.5, 0.9]), 3)) == [1, 3, 2]
    assert list(top_rows(np.array([0.3]), 5)) == [0] and len(top_rows(np.array([]), 2)) == 0


def test_reciprocal_rank_fusion_rewards_agreement():
    # 7 is second in both rankings, 1 and 4 are each first in one and absent from the other
    assert reciprocal_rank_fusion([[1, 7, 2], [4, 7, 3]])[0] == 7
    assert reciprocal_rank_fusion([[1, 2], [2, 1]]) == [1, 2]  # exact tie: lower id first
    with pytest.raises(ValueError, match="rrf k"):
        reciprocal_rank_fusion([[1]], k=0)
