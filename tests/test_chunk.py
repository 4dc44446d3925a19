"""Markdown chunking: headings outside code fences split sections; size and overlap hold."""

from __future__ import annotations

from tasks.chunk import CHUNK_CHARS, chunk_documents, chunk_markdown


def test_headings_split_and_paths_are_kept():
    text = "# Guide\n\nIntro " + "x " * 150 + "\n\n## Step 1\n\n" + "alpha " * 60 + "\n\n### Detail\n\n" + "beta " * 60
    chunks = chunk_markdown(text)
    assert [c.heading for c in chunks] == ["Guide", "Guide > Step 1", "Guide > Step 1 > Detail"]


def test_hash_lines_inside_code_fences_are_not_headings():
    text = "# Doc\n\n" + "intro " * 50 + "\n\n```python\n# not a heading\nprint(1)\n```\n\n" + "more " * 50
    chunks = chunk_markdown(text)
    assert len(chunks) == 1 and "# not a heading" in chunks[0].content


def test_long_sections_are_cut_with_overlap():
    sentences = " ".join(f"Sentence number {i} about signal detection." for i in range(200))
    chunks = chunk_markdown("# Long\n\n" + sentences)
    assert len(chunks) > 3 and all(len(c.content) <= CHUNK_CHARS for c in chunks)
    for a, b in zip(chunks, chunks[1:]):
        assert a.content[-60:].split()[-1] in b.content[:400]  # the overlap carries the tail over


def test_chunk_rows_have_deterministic_ids():
    doc = {"id": "d1", "legacy_key": "guide.md", "content": "# A\n\n" + "word " * 400}
    first, second = chunk_documents([doc], "t1"), chunk_documents([doc], "t1")
    assert [r["id"] for r in first] == [r["id"] for r in second]
    assert [r["legacy_key"] for r in first] == [f"guide.md#{i}" for i in range(len(first))]
