import numpy as np
import torch

from chatstack.rag.embedder import bundled_model_dir, encode_batch
from chatstack.rag.onnx_export import load_pooled_encoder

TEXTS = ["hi", "A list comprehension builds a list from an iterable in one expression. " * 6, "Ensembles chain models."]


def test_onnx_matches_torch_within_1e4_on_a_padded_batch(embedder):
    inputs = encode_batch(embedder.tokenizer, TEXTS)
    assert inputs["attention_mask"].min() == 0  # the batch really is padded
    with torch.no_grad():
        reference = load_pooled_encoder(bundled_model_dir())(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    np.testing.assert_allclose(embedder.embed(TEXTS), reference.numpy(), atol=1e-4)


def test_vectors_are_unit_length_and_order_preserving(embedder):
    vectors = embedder.embed(TEXTS, batch_size=2)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[1], embedder.embed_one(TEXTS[1]), atol=1e-5)
    assert embedder.embed([]).shape == (0, embedder.dim) == (0, 384)


def test_similar_texts_score_higher_than_unrelated(embedder):
    query, related, unrelated = embedder.embed(
        ["How do I build a list from a loop?", "List comprehensions create lists from iterables.",
         "The Triton metrics port exports Prometheus counters."])
    assert query @ related > query @ unrelated + 0.2


class CountingEmbedder:
    """Delegates to the real embedder and records what it was asked to embed."""

    def __init__(self, embedder):
        self.embedder, self.dim, self.calls = embedder, embedder.dim, []

    def embed(self, texts):
        self.calls.append(list(texts))
        return self.embedder.embed(texts)


def test_cached_embedder_returns_the_same_vectors_and_embeds_each_text_once(embedder):
    from chatstack.rag.embedder import CachedEmbedder

    counting = CountingEmbedder(embedder)
    cached = CachedEmbedder(counting, capacity=3)
    texts = ["How do I sort a list?", "Tuples are immutable.", "How do I sort a list?"]
    first = cached.embed(texts)
    np.testing.assert_allclose(first, embedder.embed(texts), atol=1e-6)
    assert counting.calls == [["How do I sort a list?", "Tuples are immutable."]]  # duplicates embedded once
    again = cached.embed(["Tuples are immutable.", "A set has no order."])
    np.testing.assert_array_equal(again[0], first[1])
    assert counting.calls[-1] == ["A set has no order."] and (cached.hits, cached.misses) == (1, 3)
    cached.embed(["Dicts map keys to values."])  # capacity 3: the least recently used text is dropped
    cached.embed(["How do I sort a list?"])
    assert counting.calls[-1] == ["How do I sort a list?"]


def test_cached_embedder_is_safe_to_share_between_threads(embedder):
    from concurrent.futures import ThreadPoolExecutor

    from chatstack.rag.embedder import CachedEmbedder

    texts = [f"Sentence number {i} about lists." for i in range(12)]
    expected = embedder.embed(texts)
    cached = CachedEmbedder(embedder, capacity=5)  # smaller than the texts: evictions while others read
    jobs = [[texts[(start + k) % 12] for k in range(4)] for start in range(48)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(cached.embed, jobs))
    for job, got in zip(jobs, results):
        np.testing.assert_allclose(got, expected[[texts.index(t) for t in job]], atol=1e-6)
