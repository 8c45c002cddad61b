"""Exact and near-duplicate detection with MinHash-LSH over word shingles (streaming)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from datasketch import MinHash, MinHashLSH

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class DedupConfig:
    shingle_words: int = 5
    num_perm: int = 128
    threshold: float = 0.7  # estimated Jaccard similarity above which a document is a near-duplicate

    def __post_init__(self) -> None:
        if self.shingle_words < 1:
            raise ValueError(f"shingle_words must be >= 1, got {self.shingle_words}")
        if not 16 <= self.num_perm <= 1024:
            raise ValueError(f"num_perm must be in [16, 1024], got {self.num_perm}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")


def normalized_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def shingles(words: list[str], size: int) -> set[str]:
    if len(words) <= size:
        return {" ".join(words)}
    return {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}


class Deduplicator:
    """Feed documents in order; `check` says whether one repeats an earlier kept document."""

    def __init__(self, cfg: DedupConfig = DedupConfig()):
        self.cfg = cfg
        self.lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
        self.exact: dict[str, str] = {}
        self.kept_ids: list[str] = []  # LSH keys are positions here, so repeated doc ids are fine

    def _minhash(self, words: list[str]) -> MinHash:
        signature = MinHash(num_perm=self.cfg.num_perm, seed=1)
        signature.update_batch([s.encode("utf-8") for s in shingles(words, self.cfg.shingle_words)])
        return signature

    def check(self, doc_id: str, text: str) -> tuple[str, str | None]:
        """("keep", None), ("exact_duplicate", of_id) or ("near_duplicate", of_id); kept docs are indexed."""
        words = normalized_words(text)
        digest = hashlib.sha1(" ".join(words).encode("utf-8")).hexdigest()
        if digest in self.exact:
            return "exact_duplicate", self.exact[digest]
        signature = self._minhash(words)
        matches = self.lsh.query(signature)
        if matches:
            return "near_duplicate", self.kept_ids[min(matches)]
        self.exact[digest] = doc_id
        self.lsh.insert(len(self.kept_ids), signature)
        self.kept_ids.append(doc_id)
        return "keep", None
