"""What `generate` attaches to an answer: citations JSON and the grounding verdict.

`AnswerGrounding` loads the embedder once (lazily) and checks finished answers; it is
off when retrieval is disabled, and reports no verdict when the embedder is missing
rather than failing the answer.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

from chatstack.config import RetrievalSection
from chatstack.rag.grounding import GroundingParams, GroundingReport, check_grounding
from chatstack.rag.retriever import Passage

log = logging.getLogger(__name__)


def citations_json(passages: list[Passage]) -> str:
    """`[{"n": 1, "source": …, "section": …, "score": …, "chunk_id": …}, …]`, n as cited in the prompt."""
    return json.dumps([{"n": n, "source": p.source, "section": p.section, "score": round(p.score, 4),
                        "chunk_id": p.chunk_id} for n, p in enumerate(passages, start=1)], ensure_ascii=False)


class AnswerGrounding:
    def __init__(self, cfg: RetrievalSection, params: GroundingParams = GroundingParams()):
        self.cfg = cfg
        self.params = params
        self._embedder = None

    def check(self, answer: str, passages: list[Passage]) -> GroundingReport | None:
        """The grounding of `answer` in `passages`; None when retrieval is off or the embedder is unavailable."""
        if not self.cfg.enabled:
            return None
        embedder = self._load_embedder()
        return None if embedder is None else check_grounding(answer, passages, embedder, self.params)

    def _load_embedder(self):
        if self._embedder is None:
            from chatstack.rag.embedder import CachedEmbedder, OnnxEmbedder

            tokenizer_dir = Path(self.cfg.embedder_tokenizer_dir) if self.cfg.embedder_tokenizer_dir else None
            try:
                embedder = OnnxEmbedder(Path(self.cfg.embedder_onnx), tokenizer_dir, threads=self.cfg.embedder_threads)
            except (ValueError, OSError) as exc:
                log.warning("grounding check off: %s", exc)
                return None
            self._embedder = CachedEmbedder(embedder, store=self._sentence_vectors(embedder.dim))
        return self._embedder

    def _sentence_vectors(self, dim: int):
        """The passage sentences ingest embedded, or None (then they are embedded per answer)."""
        if not self.cfg.sentence_vectors:
            return None
        from chatstack.rag.sentence_vectors import SentenceVectors

        try:
            return SentenceVectors(Path(self.cfg.sentence_vectors), dim, read_only=True)
        except (OSError, ValueError, sqlite3.Error) as exc:
            log.warning("grounding check embeds passage sentences per answer: %s", exc)
            return None
