"""Reading operator documents (text, Markdown, HTML, PDF) into titled sections.

A `Document` keeps the structure the chunker needs: each `Section` is the text under
one heading, named by its heading path ("Install > From source").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

SUPPORTED_SUFFIXES = {".txt": "text", ".text": "text", ".rst": "text", ".md": "markdown", ".markdown": "markdown",
                      ".html": "html", ".htm": "html", ".pdf": "pdf"}
MAX_FILE_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class Section:
    heading: str  # heading path, "" before the first heading
    text: str


@dataclass(frozen=True)
class Document:
    source: str  # how citations name the file, e.g. "docs/rag.md"
    title: str
    sections: tuple[Section, ...]


class SkippedFile(ValueError):
    """A file that ingest leaves out; the message says why."""


def read_document(path: Path, source: str, max_bytes: int = MAX_FILE_BYTES) -> Document:
    """Parse `path` by its suffix; raises SkippedFile for unsupported, oversized, binary or empty files."""
    kind = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise SkippedFile(f"unsupported file type {path.suffix or '(none)'!r}; supported: {sorted(SUPPORTED_SUFFIXES)}")
    size = path.stat().st_size
    if size > max_bytes:
        raise SkippedFile(f"file is {size} bytes, over the {max_bytes}-byte limit")
    if kind == "pdf":
        from chatstack.rag.pdf import parse_pdf

        return _document(source, path, *parse_pdf(path))
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        raise SkippedFile("binary file (NUL bytes)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SkippedFile(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    parse = {"text": parse_text, "markdown": parse_markdown, "html": parse_html}[kind]
    return _document(source, path, *parse(text))


def _document(source: str, path: Path, title: str, sections: list[Section]) -> Document:
    kept = tuple(s for s in sections if s.text.strip())
    if not kept:
        raise SkippedFile("empty file (no text)")
    return Document(source=source, title=title or path.stem, sections=kept)


_UNDERLINE = re.compile(r"^([=\-*~^#+])\1{2,}\s*$")


def parse_text(text: str) -> tuple[str, list[Section]]:
    """Plain text; reST-style underlined headings ("Title" over "*****") split sections.

    Heading levels follow the order in which underline characters first appear, as in reST.
    """
    lines = text.splitlines()
    levels: list[str] = []
    path: list[str] = []
    title = ""
    sections: list[Section] = []
    body: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        underline = lines[i + 1] if i + 1 < len(lines) else ""
        match = _UNDERLINE.match(underline)
        if match and line.strip() and len(underline.strip()) >= len(line.strip()) - 2:
            sections.append(Section(" > ".join(path), "\n".join(body).strip()))
            body = []
            if match.group(1) not in levels:
                levels.append(match.group(1))
            level = levels.index(match.group(1))
            path = path[:level] + [line.strip()]
            title = title or line.strip()
            i += 2
            continue
        body.append(line)
        i += 1
    sections.append(Section(" > ".join(path), "\n".join(body).strip()))
    return title, sections


_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def parse_markdown(text: str) -> tuple[str, list[Section]]:
    """Split at ATX headings outside code fences; the first H1 is the title."""
    title = ""
    path: list[str] = []
    sections: list[Section] = []
    lines: list[str] = []
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match is None:
            lines.append(line)
            continue
        sections.append(Section(" > ".join(path), "\n".join(lines).strip()))
        lines = []
        level, heading = len(match.group(1)), match.group(2)
        if level == 1 and not title:
            title = heading
        path = path[:level - 1] + [""] * max(0, level - 1 - len(path)) + [heading]
        path = [p for p in path if p]
    sections.append(Section(" > ".join(path), "\n".join(lines).strip()))
    return title, sections


class _HtmlSections(HTMLParser):
    BLOCKS = {"p", "div", "li", "ul", "ol", "br", "tr", "table", "pre", "section", "article", "blockquote", "dd", "dt"}
    SKIP = {"script", "style", "noscript", "template"}
    HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.sections: list[Section] = []
        self._path: list[str] = []
        self._parts: list[str] = []
        self._heading: list[str] | None = None
        self._heading_level = 0
        self._in_title = False
        self._skip_depth = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self._skip_depth += 1
        elif tag == "title":
            self._in_title = True
        elif tag in self.HEADINGS:
            self._flush()
            self._heading, self._heading_level = [], self.HEADINGS[tag]
        elif tag in self.BLOCKS:
            self._parts.append("\n\n" if tag in {"p", "pre", "div", "section", "table"} else "\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in self.HEADINGS and self._heading is not None:
            heading = " ".join("".join(self._heading).split())
            self._path = self._path[:self._heading_level - 1] + [heading]
            if self._heading_level == 1 and not self.title:
                self.title = heading
            self._heading = None

    def handle_data(self, data):
        if self._skip_depth:
            return
        if self._in_title:
            self.title = self.title or data.strip()
        elif self._heading is not None:
            self._heading.append(data)
        else:
            self._parts.append(data)

    def _flush(self):
        text = re.sub(r"\n\s*\n\s*", "\n\n", "".join(self._parts)).strip()
        self.sections.append(Section(" > ".join(p for p in self._path if p), text))
        self._parts = []

    def close(self):
        super().close()
        self._flush()


def parse_html(text: str) -> tuple[str, list[Section]]:
    """Visible text split at <h1>…<h6>; <title> (else the first H1) is the title."""
    parser = _HtmlSections()
    parser.feed(text)
    parser.close()
    return parser.title, parser.sections
