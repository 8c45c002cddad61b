"""A deterministic training corpus built only from text bundled with Python.

Two sources, both available offline on any CPython install:

* `pydoc_data.topics.topics`: the language reference that `help()` shows,
  split into one document per section heading;
* docstrings of standard-library modules, classes and functions, read with
  `ast` from the stdlib source files (nothing is imported or executed).

`documents()` gives the plain texts for language modelling and
`chat_examples()` turns the same documents into single-turn conversations
("What is json.dumps?" -> first paragraphs of its docstring).
"""

from __future__ import annotations

import ast
import functools
import os
import re
import sysconfig
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydoc_data.topics import topics as REFERENCE_TOPICS

from chatstack.text.chat_template import Message

MIN_DOCUMENT_CHARS = 60
MAX_DOCUMENT_CHARS = 6000
MAX_ANSWER_CHARS = 600

# Directories under the stdlib that hold tests, tools, bundled code or binaries.
SKIPPED_DIRS = frozenset(
    {"test", "tests", "idlelib", "site-packages", "turtledemo", "__pycache__",
     "ensurepip", "lib-dynload", "encodings", "pydoc_data"}
)
SKIPPED_FILES = frozenset({"this.py", "antigravity.py"})

QUESTION_TEMPLATES = (
    "What is {name}?",
    "Explain {name}.",
    "Tell me about {name}.",
    "What does the documentation say about {name}?",
)

# A heading line followed by an underline of one repeated character.
_HEADING = re.compile(r"^(\S[^\n]*)\n([*=\-~^])\2+\n", re.MULTILINE)
_TABLE_ROW = re.compile(r"^\s*[+|].*$\n?", re.MULTILINE)
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_BLANK_RUNS = re.compile(r"\n{3,}")


@dataclass(frozen=True)
class Document:
    """One piece of reference text and the name it documents."""

    title: str  # e.g. 'List displays' or 'json.dumps'
    body: str

    @property
    def text(self) -> str:
        return f"{self.title}\n\n{self.body}"


def clean_text(text: str) -> str:
    """Normalise whitespace, drop ASCII tables and control characters."""
    text = _CONTROL_CHARS.sub("", text.expandtabs(4))
    text = _TABLE_ROW.sub("", text)
    text = "\n".join(line.rstrip() for line in text.splitlines())
    return _BLANK_RUNS.sub("\n\n", text).strip()


def truncate_paragraphs(text: str, max_chars: int) -> str:
    """Whole leading paragraphs up to `max_chars`; the first one cut at a sentence if needed."""
    kept: list[str] = []
    for paragraph in text.split("\n\n"):
        if sum(len(p) + 2 for p in kept) + len(paragraph) > max_chars:
            break
        kept.append(paragraph)
    if kept:
        return "\n\n".join(kept)
    head = text[:max_chars]
    cut = head.rfind(". ")
    if cut > 0:
        return head[: cut + 1]
    return head.rsplit(" ", 1)[0] if " " in head else head


def reference_documents() -> Iterator[Document]:
    """One document per section of the language reference, in a fixed order."""
    seen: set[str] = set()
    for key in sorted(REFERENCE_TOPICS):
        topic = REFERENCE_TOPICS[key]
        headings = list(_HEADING.finditer(topic))
        for index, heading in enumerate(headings):
            end = headings[index + 1].start() if index + 1 < len(headings) else len(topic)
            body = clean_text(topic[heading.end() : end])
            if body in seen:  # several topics ('if', 'else') share one section
                continue
            seen.add(body)
            yield Document(title=heading.group(1).strip(), body=body)


def stdlib_source_files(stdlib_dir: Path) -> Iterator[tuple[str, Path]]:
    """(dotted module name, path) of public stdlib modules, sorted."""
    for root, dirnames, filenames in os.walk(stdlib_dir):
        dirnames[:] = sorted(
            d for d in dirnames
            if d not in SKIPPED_DIRS and not d.startswith(("_", ".", "config-"))
        )
        relative = Path(root).relative_to(stdlib_dir)
        for filename in sorted(filenames):
            if not filename.endswith(".py") or filename in SKIPPED_FILES:
                continue
            if filename.startswith("_") and filename != "__init__.py":
                continue
            parts = [*relative.parts, filename[:-3]]
            if parts[-1] == "__init__":
                parts.pop()
            if parts:
                yield ".".join(parts), Path(root) / filename


def module_docstrings(module_name: str, source: str) -> Iterator[tuple[str, str]]:
    """(qualified name, docstring) for a module and its public classes/functions."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    stack: list[tuple[str, ast.AST]] = [(module_name, tree)]
    while stack:
        name, node = stack.pop(0)
        docstring = ast.get_docstring(node, clean=True)
        if docstring:
            yield name, docstring
        for child in getattr(node, "body", []):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                if not child.name.startswith("_"):
                    stack.append((f"{name}.{child.name}", child))


def docstring_documents(stdlib_dir: Path) -> Iterator[Document]:
    seen: set[str] = set()
    for module_name, path in stdlib_source_files(stdlib_dir):
        source = path.read_text(encoding="utf-8", errors="replace")
        for name, docstring in module_docstrings(module_name, source):
            body = clean_text(docstring)
            if body in seen:
                continue
            seen.add(body)
            yield Document(title=name, body=truncate_paragraphs(body, MAX_DOCUMENT_CHARS))


@functools.lru_cache(maxsize=8)
def titled_documents(max_chars: int | None = None) -> tuple[Document, ...]:
    """Reference sections then docstrings, long enough to be useful, up to `max_chars`."""
    stdlib_dir = Path(sysconfig.get_paths()["stdlib"])
    sources = (reference_documents(), docstring_documents(stdlib_dir))
    selected: list[Document] = []
    total = 0
    for source in sources:
        for document in source:
            if len(document.body) < MIN_DOCUMENT_CHARS:
                continue
            if max_chars is not None and total + len(document.text) > max_chars:
                return tuple(selected)
            selected.append(document)
            total += len(document.text)
    return tuple(selected)


def documents(max_chars: int | None = None) -> list[str]:
    """Plain-text documents (title line, blank line, body) for language modelling."""
    return [document.text for document in titled_documents(max_chars)]


def in_sentence(title: str) -> str:
    """`title` as it reads inside a sentence: 'List displays' -> 'list displays', 'json.dumps' unchanged."""
    return title[0].lower() + title[1:] if title[:2].istitle() else title


def question_for(title: str) -> str:
    """A question about `title`; the phrasing is a stable function of the title."""
    template = QUESTION_TEMPLATES[zlib.crc32(title.encode("utf-8")) % len(QUESTION_TEMPLATES)]
    return template.format(name=in_sentence(title))


def chat_example(document: Document) -> list[Message]:
    return [
        Message("user", question_for(document.title)),
        Message("assistant", truncate_paragraphs(document.body, MAX_ANSWER_CHARS)),
    ]


def chat_examples(max_chars: int | None = None) -> list[list[Message]]:
    """Single-turn conversations asking about each document's title."""
    return [chat_example(document) for document in titled_documents(max_chars)]
