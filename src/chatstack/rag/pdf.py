"""PDF documents → titled sections, one per page, named by the outline heading and the page number.

A PDF has no headings to split at, but it has pages (what a reader cites) and often an
outline (bookmarks). Each page becomes a `Section` named "Heading > p. N" (the outline
entry that covers the page, when there is one), so chunks never cross a page and every
citation says where to look. Text comes from `pypdf` (pure Python); words hyphenated
across a line break are joined. Encrypted PDFs that need a password, corrupt files and
PDFs without a text layer (scans) are skipped with the reason.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from chatstack.rag.documents import Section, SkippedFile

_HYPHENATED = re.compile(r"(\w)-\n(\w)")
_SPACES = re.compile(r"[ \t\u00a0]+")


def page_label(number: int) -> str:
    return f"p. {number}"


def clean_page_text(text: str) -> str:
    """Join words hyphenated at a line end, squeeze runs of spaces, drop blank-line runs."""
    text = _HYPHENATED.sub(r"\1\2", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def parse_pdf(path: Path) -> tuple[str, list[Section]]:
    """(title, one section per page with text); SkippedFile for encrypted, corrupt or text-less PDFs."""
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError, PdfStreamError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # it warns about every minor syntax slip
    try:
        reader = PdfReader(str(path), strict=False)
        if reader.is_encrypted and not _opens_without_password(reader):
            raise SkippedFile("encrypted PDF (it needs a password)")
        headings = _outline_headings(reader)
        sections, current = [], ""
        for number, page in enumerate(reader.pages, start=1):
            current = headings.get(number, current)
            text = clean_page_text(page.extract_text() or "")
            heading = f"{current} > {page_label(number)}" if current else page_label(number)
            sections.append(Section(heading, text))
        title = _metadata_title(reader)
    except SkippedFile:
        raise
    except FileNotDecryptedError:
        raise SkippedFile("encrypted PDF (it needs a password)") from None
    except (PdfReadError, PdfStreamError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise SkippedFile(f"corrupt PDF ({type(exc).__name__}: {exc})") from None
    if not any(s.text for s in sections):
        raise SkippedFile("PDF without a text layer (a scan? OCR is not done)")
    return title, sections


def _opens_without_password(reader) -> bool:
    """Many PDFs are encrypted with an empty user password only to restrict editing."""
    try:
        return bool(reader.decrypt(""))
    except Exception:  # pypdf raises several types for unsupported or damaged encryption
        return False


def _metadata_title(reader) -> str:
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # a damaged info dictionary only costs the title
        return ""
    return " ".join(str(title).split()) if title else ""


def _outline_headings(reader) -> dict[int, str]:
    """1-based page number → heading path of the last outline entry starting on that page."""
    headings: dict[int, str] = {}

    def walk(items, path: list[str]) -> None:
        last: list[str] = path
        for item in items:
            if isinstance(item, list):  # the children of the entry before it
                walk(item, last)
                continue
            title = " ".join(str(getattr(item, "title", "") or "").split())
            last = [*path, title] if title else path
            try:
                page = reader.get_destination_page_number(item)
            except Exception:  # an entry pointing nowhere is left out
                continue
            if page is not None and page >= 0 and title:
                headings[page + 1] = " > ".join(last)

    try:
        walk(reader.outline, [])
    except Exception:  # a broken outline only costs the headings
        return {}
    return headings
