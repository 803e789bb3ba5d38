"""helpers.dataset.leakage: word 8-gram containment of test rows in the training text, on the bundled real
conversations and the real arXiv paper's chunks."""
import json

import pytest

from helpers.common.resources import chitchat, fixture_pdf
from helpers.dataset.leakage import (NGRAM, LeakageError, measure_leakage, ngram_hashes, row_text, training_passages)


def _rows(split):
    return [json.loads(line) for line in open(chitchat(split), encoding="utf-8")]


def _near_copy(row):
    """A real training conversation with a few words changed and its last turn dropped: what a
    teacher's second example from an overlapping chunk looks like next to the first."""
    msgs = [dict(m) for m in row["messages"][:-1]]
    for m in msgs[::3]:
        w = m["content"].split()
        if len(w) > 3:
            w[len(w) // 2] = "banana"
        m["content"] = " ".join(w)
    return {**row, "messages": msgs}


def test_independent_real_conversations_are_not_flagged():
    """The default threshold on real data: 100 held-out conversations against the 800 training ones."""
    res = measure_leakage(_rows("test"), _rows("train"))
    assert res.flagged == [] and res.share == 0.0
    s = res.summary()
    assert s["measured"] >= 90 and s["max_containment"] < 0.3 and s["mean_containment"] < 0.05
    assert "0 of 100 test rows (0%)" in res.line()


def test_a_near_copy_of_a_training_row_is_flagged_and_a_different_one_is_not():
    train = _rows("train")
    test = [_near_copy(train[17]), _rows("test")[3], _near_copy(train[400])]
    res = measure_leakage(test, train)
    assert res.flagged == [0, 2]
    assert res.scores[0] > 0.6 and res.scores[1] < 0.2
    assert res.witnesses[0] == "train row 17" and res.witnesses[2] == "train row 400"
    assert "2 of 3 test rows (67%)" in res.line()
    assert measure_leakage(test, train, threshold=0.99).flagged == []  # a threshold above the near copies


def test_a_test_answer_quoting_a_training_chunk_is_flagged_through_the_passages(tmp_path):
    from helpers.dataset.chunking import chunk_text
    from helpers.common.models import load_tokenizer
    from helpers.dataset.pdf import read_pdf
    chunks = chunk_text(read_pdf(fixture_pdf()).text, load_tokenizer("embedded/smollm2-135m-instruct"), 160, 16,
                        fixture_pdf().name)
    train = [{"instruction": f"What is passage {c.index} about?", "input": "", "output": c.text.split(". ")[0],
              "source": c.source, "chunk_id": c.id} for c in chunks[:6]]
    quoting = {"instruction": "Summarise the argument.", "input": "",
               "output": " ".join(chunks[2].text.split()[40:110]), "source": chunks[2].source, "chunk_id": "t1"}
    other = {"instruction": "Summarise the argument.", "input": "",
             "output": " ".join(chunks[20].text.split()[40:110]), "source": chunks[20].source, "chunk_id": "t2"}
    (tmp_path / "chunks.jsonl").write_text("".join(json.dumps({"chunk_id": c.id, "source": c.source, "index": c.index,
                                                               "text": c.text}) + "\n" for c in chunks))
    passages, desc = training_passages(train, tmp_path / "chunks.jsonl")
    assert len(passages) == 6 and "6 source chunks" in desc
    res = measure_leakage([quoting, other], train, passages)
    assert res.against_rows[0] < 0.5 <= res.against_passages[0]  # not in a training row, but in its chunk
    assert res.flagged == [0] and res.witnesses[0].startswith(f"chunk {chunks[2].id}")
    # without a chunks file: the corpus, for documents with no test row only
    (tmp_path / "pdf_text.jsonl").write_text(json.dumps({"source": chunks[0].source, "text": "x"}) + "\n")
    p2, d2 = training_passages(train, tmp_path / "missing.jsonl", tmp_path / "pdf_text.jsonl", [quoting])
    assert p2 == [] and "training rows only" in d2
    p3, d3 = training_passages(train, None, tmp_path / "pdf_text.jsonl", [{"source": "another.pdf"}])
    assert len(p3) == 1 and "training-only document" in d3


def test_short_rows_are_not_measured_and_row_text_covers_every_format():
    assert row_text({"instruction": "a", "input": "b", "output": "c"}) == "a\nb\nc"
    assert row_text({"messages": [{"role": "user", "content": "hi"},
                                  {"role": "assistant", "content": "yo"}]}) == "hi\nyo"
    assert row_text({"text": "raw"}) == "raw"
    assert len(ngram_hashes("one two three four five six seven eight nine")) == 2 and NGRAM == 8
    res = measure_leakage([{"instruction": "Hi", "output": "there"}], [{"instruction": "Hi", "output": "there"}])
    assert res.scores == [None] and res.flagged == [] and "1 row(s) under 8 words not measured" in res.line()
    with pytest.raises(LeakageError, match="threshold"):
        measure_leakage([], [], threshold=0)
