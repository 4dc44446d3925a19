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


def test_overlap_is_whole_lines_and_chunks_start_on_a_line():
    from tasks.chunk import rebuild

    text = "# Notes\n\n" + "".join(f"Line {i} says something about dosing and safety.\n" for i in range(120))
    chunks = chunk_markdown(text)
    assert len(chunks) > 3 and rebuild(chunks) == text
    for a, b in zip(chunks, chunks[1:]):
        assert text[b.start - 1] == "\n"  # a chunk starts at a line start
        shared = text[b.start : a.end]
        assert 0 < len(shared) <= 150 and shared.endswith("\n")  # whole lines carried over


def test_a_split_table_repeats_its_header_and_a_split_fence_is_closed_and_reopened():
    from tasks.chunk import rebuild

    table = "| Drug | Dose |\n|---|---|\n" + "".join(f"| drug {i} | {i} mg twice daily |\n" for i in range(80))
    code = "```python\n" + "".join(f"x_{i} = compute({i})  # step {i}\n" for i in range(80)) + "```\n"
    text = "# Doses\n\n" + table + "\n## Code\n\n" + code + "\nAfter the code.\n"
    chunks = chunk_markdown(text)
    assert rebuild(chunks) == text
    in_table = [c for c in chunks if "| drug 70 |" in c.content]
    assert in_table and all(c.content.startswith("| Drug | Dose |\n|---|---|\n") for c in in_table)
    fenced = [c for c in chunks if "x_" in c.content]
    assert len(fenced) > 1
    for c in fenced:
        assert c.content.count("```") % 2 == 0, c.content
    assert fenced[1].content.startswith("```python\n")
    assert all(len(c.content) <= CHUNK_CHARS for c in chunks)


def test_a_long_line_is_cut_at_sentence_ends():
    from tasks.chunk import rebuild

    text = "# Long\n\n" + " ".join(f"Sentence {i} is here." for i in range(300)) + "\n"
    chunks = chunk_markdown(text)
    assert rebuild(chunks) == text
    for c in chunks[1:]:
        assert text[c.start - 1] in "\n " and text[c.start : c.start + 8] == "Sentence"
