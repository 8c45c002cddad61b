"""The demo corpus: chatstack's own docs plus Python's bundled `pydoc_data.topics`.

`pydoc_data` ships with CPython (it backs `help("topics")`), so the corpus needs no
download. Each topic is written out as a text document that ingest reads like any other.
"""

from __future__ import annotations

from pathlib import Path

from chatstack import project

PYTHON_TOPICS_DIR = project.ARTIFACTS / "rag_corpus" / "python_topics"


def write_python_topics(out_dir: Path = PYTHON_TOPICS_DIR) -> Path:
    """Write one `<topic>.txt` per pydoc topic into `out_dir` (unchanged files are not rewritten)."""
    from pydoc_data.topics import topics

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in sorted(topics.items()):
        path = out_dir / f"{name}.txt"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
    return out_dir


def demo_corpus_paths() -> list[Path]:
    """What `make demo` ingests: docs/, README.md and the Python topics (less `DEMO_CORPUS_EXCLUDED`)."""
    return [project.ROOT / "docs", project.ROOT / "README.md", write_python_topics()]


# docs/training.md is the training lifecycle's record: it quotes the reader evaluation's questions and
# the demo model's answers to them, word for word. Indexed, those records outranked the Python topics
# for the questions they quote (the demo's own question among them), and a model's garbled answer came
# back as a cited source (docs/training.md, "On the AVX2 machine").
DEMO_CORPUS_EXCLUDED = (project.ROOT / "docs" / "training.md",)
