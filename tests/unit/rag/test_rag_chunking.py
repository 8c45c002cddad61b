import pytest

from chatstack.rag.chunking import ChunkingParams, chunk_document, chunk_id, split_spans
from chatstack.rag.documents import SkippedFile, parse_html, parse_markdown, parse_text, read_document

MARKDOWN = """# Guide

Intro paragraph.

## Install

Run make install.

```
# not a heading inside a fence
```

### From source

Clone it.

## Use

Run make demo.
"""

HTML = """<html><head><title>Page</title><style>p{}</style></head><body>
<h1>Top</h1><p>First &amp; one.</p><script>var x = 1;</script>
<h2>Sub</h2><p>Second.</p><ul><li>item</li></ul></body></html>"""


def test_markdown_sections_follow_heading_paths_and_skip_fenced_code():
    title, sections = parse_markdown(MARKDOWN)
    assert title == "Guide"
    named = {s.heading: s.text for s in sections if s.text}
    assert list(named) == ["Guide", "Guide > Install", "Guide > Install > From source", "Guide > Use"]
    assert "# not a heading" in named["Guide > Install"]


def test_html_sections_drop_scripts_and_styles():
    title, sections = parse_html(HTML)
    assert title == "Page"
    named = {s.heading: s.text for s in sections if s.text}
    assert named == {"Top": "First & one.", "Top > Sub": "Second.\n\nitem"}


def test_text_underlined_headings_become_sections():
    title, sections = parse_text("Lists\n*****\n\nA list.\n\nSlicing\n=======\n\nA slice.\n")
    assert title == "Lists"
    assert [(s.heading, s.text) for s in sections if s.text] == [("Lists", "A list."), ("Lists > Slicing", "A slice.")]


def _words(n: int, sentence_every: int = 12) -> str:
    return " ".join(f"word{i}." if i % sentence_every == sentence_every - 1 else f"word{i}" for i in range(n))


def test_chunks_respect_token_size_overlap_and_cover_the_text(offsets):
    params = ChunkingParams(max_tokens=40, overlap_tokens=8)
    text = _words(300, sentence_every=4)
    spans = split_spans(text, offsets(text), params)
    assert len(spans) > 5
    assert all(len(offsets(text[a:b])) <= params.max_tokens for a, b in spans)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start < end  # consecutive chunks overlap
        assert text[start - 1] == " "  # and the overlap starts at a word
    assert all(text[b - 1] == "." for a, b in spans[:-1])  # cut at sentence ends


def test_chunks_prefer_paragraph_breaks(offsets):
    text = _words(25, 5) + "\n\n" + _words(25, 5)
    spans = split_spans(text, offsets(text), ChunkingParams(max_tokens=64, overlap_tokens=0))
    assert text[spans[0][0]:spans[0][1]] == _words(25, 5)


def test_chunk_ids_are_stable_and_change_with_content_position_and_tenant(tmp_path, offsets):
    path = tmp_path / "guide.md"
    path.write_text(MARKDOWN)
    first = chunk_document(read_document(path, "guide.md"), offsets, ChunkingParams(), "t1")
    again = chunk_document(read_document(path, "guide.md"), offsets, ChunkingParams(), "t1")
    assert [c.chunk_id for c in first] == [c.chunk_id for c in again]
    assert len({c.chunk_id for c in first}) == len(first)
    base = chunk_id("t1", "guide.md", 0, "Guide", "Intro paragraph.")
    assert base != chunk_id("t1", "guide.md", 0, "Guide", "Intro paragraph!")
    assert base != chunk_id("t1", "guide.md", 1, "Guide", "Intro paragraph.")
    assert base != chunk_id("t2", "guide.md", 0, "Guide", "Intro paragraph.")


@pytest.mark.parametrize("name, content, reason", [
    ("empty.md", b"  \n\n", "empty"),
    ("blob.txt", b"abc\x00def", "binary"),
    ("latin1.txt", "caf\u00e9".encode("latin-1"), "not UTF-8"),
    ("image.png", b"\x89PNG", "unsupported file type '.png'"),
    ("big.txt", b"x" * 2048, "over the 1024-byte limit"),
])
def test_unreadable_files_are_skipped_with_a_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SkippedFile, match=reason):
        read_document(path, name, max_bytes=1024)


@pytest.mark.parametrize("kwargs", [{"max_tokens": 8}, {"max_tokens": 600}, {"max_tokens": 100, "overlap_tokens": 60}])
def test_bad_chunking_params_name_the_field(kwargs):
    with pytest.raises(ValueError, match="_tokens must be in"):
        ChunkingParams(**kwargs)
