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
