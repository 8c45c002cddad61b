"""PDF ingest on real PDFs written by pypdf: pages, outline headings, encrypted and corrupt files."""

from pathlib import Path

import pytest
from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

from chatstack.rag.chunking import ChunkingParams
from chatstack.rag.documents import SkippedFile, read_document
from chatstack.rag.ingest import Ingestor, discover
from chatstack.rag.pdf import clean_page_text
from chatstack.rag.service import MilvusRetriever
from chatstack.rag.store import VectorStore

PAGES = [
    ["Installing the server", "Run make install to set up the virtual environment."],
    ["The gRPC port is 8001 and the HTTP port is 8000.", "Clients connect to the gRPC port."],
    ["To rotate the log files, send SIGHUP to the server pro-", "cess; it reopens every log."],
]


def write_pdf(path: Path, pages: list[list[str]], outline: dict[str, int] | None = None,
              password: str | None = None, title: str | None = None) -> Path:
    """A real PDF: one Helvetica text line per string, an optional outline, title and password."""
    writer = PdfWriter()
    font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                             NameObject("/BaseFont"): NameObject("/Helvetica")})
    font_ref = writer._add_object(font)
    for lines in pages:
        page = writer.add_blank_page(612, 792)
        ops = "".join(f"BT /F1 11 Tf 72 {720 - 16 * i} Td ({line}) Tj ET\n" for i, line in enumerate(lines))
        stream = DecodedStreamObject()
        stream.set_data(ops.encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font_ref})})
    for heading, page_index in (outline or {}).items():
        writer.add_outline_item(heading, page_index)
    if title:
        writer.add_metadata({"/Title": title})
    if password:
        writer.encrypt(password)
    with open(path, "wb") as out:
        writer.write(out)
    return path


def test_pages_become_sections_named_by_outline_heading_and_page(tmp_path):
    pdf = write_pdf(tmp_path / "manual.pdf", PAGES, outline={"Setup": 0, "Operations": 2}, title="Server manual")
    document = read_document(pdf, "manual.pdf")
    assert document.title == "Server manual"
    assert [s.heading for s in document.sections] == ["Setup > p. 1", "Setup > p. 2", "Operations > p. 3"]
    assert "gRPC port is 8001" in document.sections[1].text
    assert "server process; it reopens" in document.sections[2].text  # hyphenation across lines joined


def test_without_outline_sections_are_pages_and_title_is_the_file_name(tmp_path):
    document = read_document(write_pdf(tmp_path / "notes.pdf", PAGES[:2]), "notes.pdf")
    assert document.title == "notes" and [s.heading for s in document.sections] == ["p. 1", "p. 2"]


def test_empty_password_encryption_is_read_but_a_real_password_skips(tmp_path):
    assert read_document(write_pdf(tmp_path / "open.pdf", PAGES[:1], password=""), "open.pdf").sections
    with pytest.raises(SkippedFile, match="encrypted PDF"):
        read_document(write_pdf(tmp_path / "locked.pdf", PAGES[:1], password="s3cret"), "locked.pdf")


def test_corrupt_and_textless_pdfs_are_skipped_with_the_reason(tmp_path):
    good = write_pdf(tmp_path / "good.pdf", PAGES).read_bytes()
    (tmp_path / "cut.pdf").write_bytes(good[: len(good) // 3])
    (tmp_path / "junk.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 8)
    for name in ("cut.pdf", "junk.pdf"):
        with pytest.raises(SkippedFile, match="corrupt PDF|no text|text layer"):
            read_document(tmp_path / name, name)
    with pytest.raises(SkippedFile, match="text layer"):
        read_document(write_pdf(tmp_path / "scan.pdf", [[], []]), "scan.pdf")


def test_clean_page_text():
    assert clean_page_text("exam-\nple  text\r\n\n\n\nnext\u00a0 page") == "example text\n\nnext page"


def test_pdf_is_ingested_and_cited_by_page(tmp_path, embedder, offsets):
    root = tmp_path / "docs"
    root.mkdir()
    write_pdf(root / "manual.pdf", PAGES, outline={"Setup": 0, "Operations": 2})
    write_pdf(root / "locked.pdf", PAGES, password="s3cret")
    store = VectorStore.open(str(tmp_path / "rag.db"), "docs")
    report = Ingestor(store, embedder, offsets, ChunkingParams(64, 8)).ingest([discover(root)])
    hits = MilvusRetriever(store, embedder, "default", -1.0).search("Which port does gRPC use?", 1)
    store.close()
    assert report.files == 1 and [(Path(p).name, r) for p, r in report.skipped] == [
        ("locked.pdf", "encrypted PDF (it needs a password)")]
    assert (hits[0].source, hits[0].section) == ("docs/manual.pdf", "Setup > p. 2")
