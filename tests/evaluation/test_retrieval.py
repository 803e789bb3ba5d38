"""helpers.evaluation.retrieval: a BM25 index of the bundled real paper's chunks (made by the kit's own
PDF reader and chunker), questions made from those chunks, k, the token budget of the passages and the
messages for chunks that are missing or empty."""
import json

import pytest

from helpers.common.resources import fixture_pdf
from helpers.evaluation.retrieval import (CUT_MARK, PASSAGES_HEADER, QUESTION_RULE, ChunkIndex, RetrievalError,
                                          ask_with_passages, passages_block, question_of, read_chunks, with_passages)


@pytest.fixture(scope="module")
def paper_chunks(smol_tokenizer):
    from helpers.dataset.chunking import chunk_text
    from helpers.dataset.pdf import read_pdf
    chunks = chunk_text(read_pdf(fixture_pdf()).text, smol_tokenizer, 160, 16, fixture_pdf().name)
    return [{"chunk_id": c.id, "source": c.source, "index": c.index, "text": c.text} for c in chunks]


def _question(chunk: dict) -> str:
    """A question made from a chunk: a run of its own words in the middle, as a teacher's question
    about it repeats its terms."""
    w = chunk["text"].split()
    return "What does the paper say about " + " ".join(w[len(w) // 2: len(w) // 2 + 12]) + "?"


def test_questions_made_from_the_paper_find_their_own_chunk(paper_chunks):
    index = ChunkIndex(paper_chunks, name="paper")
    assert len(index) == len(paper_chunks) > 20
    assert "from 1 document" in index.describe()
    found = index.search_many([_question(c) for c in paper_chunks], k=3)
    hits = [any(p.chunk_id == c["chunk_id"] for p in ps) for c, ps in zip(paper_chunks, found)]
    assert sum(hits) / len(hits) >= 0.8
    top1 = index.search(_question(paper_chunks[5]), k=1)
    assert len(top1) == 1 and top1[0].chunk_id == paper_chunks[5]["chunk_id"] and top1[0].score > 0


def test_k_bounds_the_passages_best_first(paper_chunks):
    index = ChunkIndex(paper_chunks)
    q = _question(paper_chunks[3])
    three, ten = index.search(q, 3), index.search(q, 10)
    assert len(three) == 3 and [p.chunk_id for p in ten[:3]] == [p.chunk_id for p in three]
    assert [p.score for p in ten] == sorted((p.score for p in ten), reverse=True)
    assert len(index.search(q, 10_000)) <= len(paper_chunks)  # k above the number of chunks: all that match
    assert index.search("the of and to a", 3) == []  # stop words alone match nothing
    assert index.search("zyxwvut qqqq", 3) == []  # words in no chunk match nothing
    with pytest.raises(RetrievalError, match="at least 1"):
        index.search(q, 0)


def test_missing_or_empty_chunks_are_refused_with_what_to_do(tmp_path):
    with pytest.raises(RetrievalError, match="Notebook 02 writes chunks.jsonl"):
        read_chunks(tmp_path / "chunks.jsonl")
    (tmp_path / "chunks.jsonl").write_text("")
    with pytest.raises(RetrievalError, match="is empty"):
        ChunkIndex.from_file(tmp_path / "chunks.jsonl")
    (tmp_path / "chunks.jsonl").write_text(json.dumps({"chunk_id": "a", "text": "  "}) + "\n")
    with pytest.raises(RetrievalError, match="row 1: a chunk needs a non-empty 'text'"):
        read_chunks(tmp_path / "chunks.jsonl")
    with pytest.raises(RetrievalError, match="holds none"):
        ChunkIndex([])


def test_passages_fit_the_budget_with_a_visible_cut(paper_chunks, smol_tokenizer):
    index = ChunkIndex(paper_chunks)
    found = index.search(_question(paper_chunks[7]), 3)

    def n(t):
        return len(smol_tokenizer(t, add_special_tokens=False)["input_ids"])
    block, used = passages_block(found, smol_tokenizer, 10_000)
    assert used == found and block.startswith(PASSAGES_HEADER) and "[1] 1111.2011v2.pdf #" in block
    assert CUT_MARK not in block
    budget = n(block) // 2
    cut, used = passages_block(found, smol_tokenizer, budget)
    assert n(cut) <= budget and cut.endswith(CUT_MARK) and 1 <= len(used) < 3
    assert passages_block(found, smol_tokenizer, 5) == ("", [])  # no room: no passages at all


def test_the_question_carries_the_passages(paper_chunks):
    row = {"instruction": "What is a Bethe lattice?", "input": "", "output": "A tree.", "chunk_id": "x"}
    block = PASSAGES_HEADER + "\n\n[1] doc #0\nsome text"
    asked = with_passages(row, block)
    assert asked["instruction"] == ask_with_passages("What is a Bethe lattice?", block)
    assert asked["instruction"].endswith(QUESTION_RULE + "\nWhat is a Bethe lattice?") and asked["output"] == "A tree."
    assert question_of(row) == "What is a Bethe lattice?" and with_passages(row, "") == row
    conv = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                         {"role": "user", "content": "What is it?"}, {"role": "assistant", "content": "A tree."}]}
    asked = with_passages(conv, block)
    assert asked["messages"][2]["content"].startswith(PASSAGES_HEADER) and asked["messages"][0]["content"] == "hi"
    assert conv["messages"][2]["content"] == "What is it?" and question_of(conv) == "What is it?"
