"""helpers.dataset.build: duplicates, the split by document, and the whole build on real PDFs with the
HTTP teacher served by a real OpenAI-compatible server on 127.0.0.1."""
import json
from pathlib import Path

import pytest

from fake_openai import API_KEY, FakeOpenAI, examples_for, passage_of
from helpers.common import resources as fixtures
from helpers.common.models import load_tokenizer
from helpers.common.resources import chitchat
from helpers.common.workspace import Workspace, workspace
from helpers.core.jsonl import DataError
from helpers.dataset.build import (DatasetConfig, build_dataset, check_leakage, dataset_card, deduplicate,
                                   default_dataset, input_pdfs, split_by_document)
from helpers.dataset.chunking import chunk_documents, chunk_text
from helpers.dataset.pdf import read_pdf, read_pdfs
from helpers.dataset.teacher import render_messages

REPO = Path(__file__).resolve().parent.parent.parent
PAPER = fixtures.fixture_pdf()
R_INTRO = REPO / "tests" / "material" / "R-intro.pdf"  # a second real document (material/NOTICE.md)
CHITCHAT = chitchat("train")


def row(i, out, src="a.pdf", ins="Explain what a Bethe lattice is and why it matters."):
    return {"instruction": ins, "input": "", "output": out, "source": src, "chunk_id": f"c{i}", "chunk_index": i,
            "item": 0}


def test_exact_and_near_duplicates_are_removed_with_reasons():
    long = ("A Bethe lattice is an infinite tree in which every node has the same number of neighbours, so it has "
            "no loops and mean field theory becomes exact on it when the connectivity is large.")
    rows = [row(0, long),
            row(1, long.upper().replace(",", "")),  # same words: exact after normalisation
            row(2, long.replace("infinite tree", "endless tree")),  # one word changed: near duplicate
            row(3, "It is a graph used in statistical physics."),
            row(4, long, ins="Summarise the key property of the lattice used in the paper.")]
    kept, dropped = deduplicate(rows, threshold=0.8)
    assert [r["chunk_id"] for r in kept] == ["c0", "c3", "c4"]
    assert dropped[0]["reason"] == "exact duplicate" and dropped[0]["duplicate_of"]["chunk_id"] == "c0"
    assert dropped[1]["reason"].startswith("near duplicate (Jaccard 0.")
    assert dropped[1]["duplicate_of"]["chunk_id"] == "c0"
    kept_strict, _ = deduplicate(rows, threshold=0.99)
    assert len(kept_strict) == 4  # only the exact duplicate goes at a 0.99 threshold


def test_split_by_document_is_disjoint_and_deterministic():
    rows = [row(i, f"answer {i} " * 5, src=f"doc{i % 7}.pdf") for i in range(70)]
    train, test, desc = split_by_document(rows, 0.2, seed=0)
    assert len(train) + len(test) == 70 and desc.startswith("by document")
    assert not {r["source"] for r in train} & {r["source"] for r in test}
    assert 14 <= len(test) <= 30
    assert split_by_document(list(reversed(rows)), 0.2, seed=0)[1] and \
        {r["source"] for r in split_by_document(list(reversed(rows)), 0.2, seed=0)[1]} == {r["source"] for r in test}
    seeds = {frozenset(r["source"] for r in split_by_document(rows, 0.2, seed=s)[1]) for s in range(6)}
    assert len(seeds) > 1
    one = [row(i, f"answer {i}", src="only.pdf") for i in range(10)]
    tr, te, desc1 = split_by_document(one, 0.2)
    assert [r["chunk_index"] for r in te] == [8, 9] and "only one document" in desc1


def _doc_rows(pdf, n_rows, tmp_path, per_chunk=2):
    """``n_rows`` rows from the real chunks of a real PDF (``per_chunk`` examples per chunk)."""
    tok = load_tokenizer("embedded/smollm2-135m-instruct")
    chunks = chunk_text(read_pdf(pdf).text, tok, 128, 16, Path(pdf).name)
    assert len(chunks) * per_chunk >= n_rows
    return [{"instruction": f"What does passage {c.index} say?", "input": "", "output": c.text[:200],
             "source": c.source, "chunk_id": c.id, "chunk_index": c.index, "item": k}
            for c in chunks for k in range(per_chunk)][:n_rows]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_lopsided_documents_never_give_most_rows_to_test(tmp_path, seed):
    """The issue's case: one long manual (430 rows) and one short paper (56), TEST_FRACTION=0.1."""
    import copy
    paper = _doc_rows(PAPER, 56, tmp_path)
    manual = copy.deepcopy(paper)  # a second, longer document: the paper's chunks under another name, x8
    manual = [dict(r, source="manual.pdf", chunk_id=f"m{k}-{r['chunk_id']}", chunk_index=k * 100 + r["chunk_index"])
              for k in range(8) for r in manual][:430]
    rows = manual + paper
    train, test, desc = split_by_document(rows, 0.1, seed=seed)
    assert len(train) + len(test) == 486
    assert desc.startswith("by document") and {r["source"] for r in test} == {"1111.2011v2.pdf"}
    assert len(test) == 56 and "56 of 486 rows (12%" in desc  # near the asked 10%, never the manual's 430
    # a paper too large to be the test split alone (200 rows, 41%): split by position, said so
    rows2 = manual + [dict(r, chunk_id=f"p{k}-{r['chunk_id']}", chunk_index=k * 100 + r["chunk_index"])
                      for k in range(4) for r in paper][:200]
    train, test, desc = split_by_document(rows2, 0.1, seed=seed)
    assert desc.startswith("by position within documents") and "manual.pdf: 430" in desc
    assert 0.07 * 630 <= len(test) <= 0.13 * 630
    assert {r["source"] for r in test} == {"manual.pdf", "1111.2011v2.pdf"}
    for src in ("manual.pdf", "1111.2011v2.pdf"):  # each document's held-out rows are its last chunks
        tr_idx = [r["chunk_index"] for r in train if r["source"] == src]
        te_idx = [r["chunk_index"] for r in test if r["source"] == src]
        assert max(tr_idx) < min(te_idx)
    assert not {r["chunk_id"] for r in train} & {r["chunk_id"] for r in test}


def test_build_from_real_pdfs_with_the_http_teacher(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMA_KIT_WORKDIR", str(tmp_path / "ws"))
    monkeypatch.setenv("TEACHER_API_KEY", API_KEY)
    ws = workspace(use_drive=False)
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(PAPER.read_bytes()[:2500])
    pdfs = [PAPER, broken, R_INTRO]
    with FakeOpenAI(plan=["invalid_json"], n_examples=2) as fake:
        cfg = DatasetConfig(tokenizer="embedded/smollm2-135m-instruct", chunk_tokens=256, chunk_overlap=32,
                            max_chunks=8, teacher="http", teacher_base_url=fake.base_url, teacher_model="llama-3.3-70b",
                            pairs_per_chunk=2, concurrency=2, request_timeout=10, test_fraction=0.3,
                            price_input_per_m=0.59, price_output_per_m=0.79, curate_min_grade=0)
        s = build_dataset(cfg, ws, pdfs=pdfs, verbose=False)
        n_requests = sum(fake.requests.values())
        s2 = build_dataset(cfg, ws, pdfs=pdfs, verbose=False)  # rerun: everything comes from the store
        assert sum(fake.requests.values()) == n_requests == 8
    assert s2["teacher"]["resumed"] == 8 and s2["teacher"]["answered"] == 0 and s2["train"] == s["train"]
    assert s["pdf_problems"][0]["file"] == "broken.pdf" and "corrupt" in s["pdf_problems"][0]["reason"]
    d = ws.data("dataset")
    train = [json.loads(x) for x in (d / "train.jsonl").read_text().splitlines()]
    test = [json.loads(x) for x in (d / "test.jsonl").read_text().splitlines()]
    rejects = [json.loads(x) for x in (d / "rejects.jsonl").read_text().splitlines()]
    assert s["examples_from_teacher"] == 14  # 7 good answers x 2 examples; the invalid one is a reject
    assert len(train) + len(test) + s["leakage"]["dropped"] == s["kept"] == 14 - s["duplicates_removed"]
    assert [r["reason"] for r in rejects if r["reason"].startswith("unparseable")] and "answer" in rejects[0]
    assert set(train[0]) == {"instruction", "input", "output", "source", "chunk_id"}
    assert not {r["source"] for r in train} & {r["source"] for r in test}
    from datasets import load_dataset
    files = {"train": str(d / "train.jsonl")} | ({"test": str(d / "test.jsonl")} if test else {})
    ds = load_dataset("json", data_files=files, cache_dir=str(tmp_path / "hf"))
    assert ds["train"].num_rows == len(train) and ds["train"][0]["instruction"] == train[0]["instruction"]
    card = (d / "card.md").read_text()
    assert "| train (`train.jsonl`) | %d |" % len(train) in card and "unparseable JSON" in card
    assert "1111.2011v2.pdf" in card and "broken.pdf" in card and "llama-3.3-70b" in card
    assert "Write {n} training examples" in card  # the prompt, as used
    assert s["teacher"]["total_cost_usd"] > 0
    corpus = [json.loads(x) for x in ws.data("corpus", "pdf_text.jsonl").read_text().splitlines()]
    assert corpus[0]["source"] == "1111.2011v2.pdf" and "Bethe lattice" in corpus[0]["text"]
    assert API_KEY not in card and API_KEY not in (d / "build_summary.json").read_text()
    # leakage: measured on the real paper's rows, on the card, and nothing lost
    leaked = [json.loads(x) for x in (d / "test_leaked.jsonl").read_text().splitlines()]
    assert s["leakage"]["test_rows"] == len(test) + len(leaked) and s["leakage"]["dropped"] == len(leaked)
    assert "## Train/test leakage" in card and s["leakage"]["line"][1:] in card
    assert f"| test rows moved out as leaked (`test_leaked.jsonl`) | {len(leaked)} |" in card
    chunk_rows = [json.loads(x) for x in (d / "chunks.jsonl").read_text().splitlines()]
    assert len(chunk_rows) == 8 and {r["chunk_id"] for r in train} <= {c["chunk_id"] for c in chunk_rows}


def test_a_build_finishes_past_a_refused_chunk_and_splits_one_too_long(tmp_path, monkeypatch):
    """A teacher that refuses 1 chunk in 10 with HTTP 400 and whose context is too small for the longest
    one: the build finishes, every answer delivered is stored, the long chunk's parts give examples, and
    the card lists the refused chunk with the teacher's message; a rerun asks only for that chunk."""
    monkeypatch.setenv("LLAMA_KIT_WORKDIR", str(tmp_path / "ws"))
    monkeypatch.setenv("TEACHER_API_KEY", API_KEY)
    ws = workspace(use_drive=False)
    pdfs = [PAPER, R_INTRO]
    chunks = chunk_documents(read_pdfs(pdfs, verbose=False)[0], load_tokenizer("embedded/smollm2-135m-instruct"),
                             256, 32, 10)
    users = [len(render_messages(c.text, c.source, 2)[1]["content"]) for c in chunks]
    n_split = users.count(max(users))
    refused = next(c for c, u in zip(chunks, users) if u < max(users))
    middle = refused.text[len(refused.text) // 2 - 30:len(refused.text) // 2 + 30]
    with FakeOpenAI(refuse={middle: "400"}, context_chars=max(users) - 1, delay=0.05) as fake:
        cfg = DatasetConfig(tokenizer="embedded/smollm2-135m-instruct", chunk_tokens=256, chunk_overlap=32,
                            max_chunks=10, teacher="http", teacher_base_url=fake.base_url,
                            teacher_model="llama-3.3-70b", pairs_per_chunk=2, concurrency=4, request_timeout=10,
                            test_fraction=0.3, curate_min_grade=0)
        s = build_dataset(cfg, ws, pdfs=pdfs, verbose=False)
        delivered = sum(fake.delivered.values())
        assert delivered == 10 - 1 + n_split and set(fake.delivered.values()) == {1}
        d = ws.data("dataset")
        stored = [json.loads(x) for x in (d / "teacher_answers.jsonl").read_text().splitlines()]
        assert len([r for r in stored if r["answer"]]) == delivered  # every answer paid for is stored
        assert len([r for r in stored if r.get("split")]) == n_split
        assert s["teacher"]["failed"] == 1 and s["teacher"]["split"] == n_split
        assert s["examples_from_teacher"] == 2 * delivered  # the parts' examples are kept
        card = (d / "card.md").read_text()
        assert "## Chunks the teacher did not answer" in card and (
            f"- {refused.source} chunk {refused.index} (`{refused.id}`): refused by the teacher (HTTP 400: Your "
            "request was flagged by our content filter.)") in card
        assert f"- chunks split in parts, too long for the teacher's context: {n_split}" in card
        summary = json.loads((d / "build_summary.json").read_text())
        assert [f["chunk_id"] for f in summary["failed_chunks"]] == [refused.id]
        rejects = [json.loads(x) for x in (d / "rejects.jsonl").read_text().splitlines()]
        assert [r["chunk_id"] for r in rejects if r["reason"].startswith("no answer yet: refused")] == [refused.id]
        fake.refuse.clear()
        s2 = build_dataset(cfg, ws, pdfs=pdfs, verbose=False)
        assert sum(fake.requests.values()) == delivered + n_split + 2  # once more: the refused chunk alone
    assert s2["teacher"]["answered"] == 1 and s2["teacher"]["failed"] == 0 and s2["teacher"]["resumed"] == 9
    assert s2["examples_from_teacher"] == 2 * (delivered + 1)
    assert "## Chunks the teacher did not answer" not in (d / "card.md").read_text()


def teacher_and_grader(messages):
    """The teacher's examples; as grader, the second example of each chunk is not self-contained."""
    if not messages[0]["content"].startswith("You grade"):
        return json.dumps({"examples": examples_for(passage_of(messages), 2)})
    if "answer number 2" in messages[-1]["content"]:
        return '{"faithful": 5, "self_contained": 2, "useful": 4, "reason": "It only makes sense beside the section."}'
    return '{"faithful": 5, "self_contained": 5, "useful": 4, "reason": "Supported and clear."}'


def test_build_curates_the_examples_with_the_teachers_grades(tmp_path, monkeypatch):
    """The teacher grades each example it wrote: those below CURATE_MIN_GRADE go to rejects.jsonl with the
    grades, the card shows the distribution and a dropped example, and a rerun asks nothing again."""
    monkeypatch.setenv("LLAMA_KIT_WORKDIR", str(tmp_path / "ws"))
    monkeypatch.setenv("TEACHER_API_KEY", API_KEY)
    ws = workspace(use_drive=False)
    with FakeOpenAI(reply=teacher_and_grader) as fake:
        cfg = DatasetConfig(tokenizer="embedded/smollm2-135m-instruct", chunk_tokens=256, chunk_overlap=32,
                            max_chunks=4, teacher="http", teacher_base_url=fake.base_url, teacher_model="llama-3.3-70b",
                            pairs_per_chunk=2, test_fraction=0.3, price_input_per_m=0.59, price_output_per_m=0.79)
        s = build_dataset(cfg, ws, pdfs=[PAPER], verbose=False)
        assert len(fake.bodies) == 4 + 8  # 4 chunks, then a grade for each of their 8 examples
        grading = fake.bodies[-1]
        assert grading["max_tokens"] < 1024 and grading["temperature"] == 0.0
        s2 = build_dataset(cfg, ws, pdfs=[PAPER], verbose=False)
        assert len(fake.bodies) == 12 and s2["curation"]["cached"] == 8 and s2["train"] == s["train"]
    d = ws.dataset
    assert s["examples_from_teacher"] == 8 and s["curated_out"] == 4 and s["kept"] == 4 - s["duplicates_removed"]
    rejects = [json.loads(x) for x in d.rejects.read_text().splitlines()]
    out = [r for r in rejects if r["reason"] == "graded below CURATE_MIN_GRADE=3"]
    assert len(out) == 4 and all(r["grade"]["self_contained"] == 2 for r in out)
    assert all("answer number 1" in r["output"] for r in json.loads("[" + ",".join(
        d.train.read_text().splitlines() + d.test.read_text().splitlines()) + "]"))
    card = d.card.read_text()
    assert "## Curation (the teacher's grades)" in card and "| graded below CURATE_MIN_GRADE (dropped) | 4 |" in card
    assert "| 2 | 0 | 4 | 0 | 4 |" in card and '"It only makes sense beside the section."' in card
    assert len(d.grades.read_text().splitlines()) == 8
    assert json.loads(d.summary.read_text())["curation"]["dropped"] == 4


def test_no_pdfs_says_where_it_looked_and_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LLAMA_KIT_WORKDIR", str(tmp_path / "ws"))
    monkeypatch.delenv("SMOKE", raising=False)
    ws = workspace(use_drive=False)
    downloads = ws.data("arxiv", "pdfs")
    with pytest.raises(FileNotFoundError, match="does not exist") as exc:
        input_pdfs(DatasetConfig(), ws)
    assert str(downloads) in str(exc.value) and "Run notebook 01" in str(exc.value) and "PDF_DIR" in str(exc.value)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("not a PDF")
    with pytest.raises(FileNotFoundError, match="has no .pdf files") as exc:
        input_pdfs(DatasetConfig(pdf_dir=str(tmp_path / "mine")), ws)
    assert str(tmp_path / "mine") in str(exc.value)
    with pytest.raises(FileNotFoundError, match="was given no PDFs"):
        build_dataset(DatasetConfig(), ws, pdfs=[], verbose=False)
    monkeypatch.setenv("SMOKE", "1")  # a smoke run falls back to the paper that ships with the kit, and says so
    assert input_pdfs(DatasetConfig(), workspace(use_drive=False)) == [PAPER]
    assert "using the arXiv paper that ships with the kit" in capsys.readouterr().out


def test_leaked_test_rows_are_moved_out_and_counted_on_the_card(tmp_path):
    """The by-position split of the real paper: a test row whose answer repeats the overlap its
    chunk shares with the last training chunk is flagged and moved to test_leaked.jsonl; a test
    row written from its own passage is kept."""
    chunks = chunk_text(read_pdf(PAPER).text, load_tokenizer("embedded/smollm2-135m-instruct"), 160, 32, PAPER.name)
    cols = ("instruction", "input", "output", "source", "chunk_id")
    mk = lambda c, text: {"instruction": f"What does passage {c.index} say?", "input": "", "output": text,  # noqa: E731
                          "source": c.source, "chunk_id": c.id}
    train = [mk(c, c.text.split(". ")[0]) for c in chunks[:8]]
    w8 = chunks[8].text.split()  # the start of chunk 8: the overlap it shares with chunk 7
    k = max(k for k in range(1, len(w8)) if " ".join(w8[:k]) in chunks[7].text)
    assert k >= 15
    head = " ".join(w8[:k])
    test = [mk(chunks[8], head), mk(chunks[9], " ".join(chunks[9].text.split()[60:100]))]
    kept, leak = check_leakage(DatasetConfig(), train, test, chunks, tmp_path / "test_leaked.jsonl", cols)
    assert [r["output"] for r in kept] == [test[1]["output"]]
    assert leak["flagged"] == 1 and leak["dropped"] == 1 and leak["flagged_rows"][0]["witness"].startswith(
        f"chunk {chunks[7].id}")
    moved = [json.loads(x) for x in (tmp_path / "test_leaked.jsonl").read_text().splitlines()]
    assert len(moved) == 1 and moved[0]["output"] == head and moved[0]["containment"] >= 0.5
    kept2, leak2 = check_leakage(DatasetConfig(drop_leaked_test=False), train, test, chunks,
                                 tmp_path / "t2.jsonl", cols)
    assert len(kept2) == 2 and leak2["flagged"] == 1 and leak2["dropped"] == 0
    card = dataset_card({"pdfs": 1, "documents": [], "pdf_problems": [], "tokenizer": "t", "chunk_tokens": 160,
                         "chunk_overlap": 32, "chunks": 10, "chunks_per_source": {}, "kept": 3,
                         "examples_from_teacher": 3, "duplicates_removed": 0, "train": 8, "test": 1,
                         "split": "x", "leakage": leak, "rejects": 0, "rejects_by_reason": {}, "prompt": "p",
                         "system": "s", "pairs_per_chunk": 1, "teacher_url": "",
                         "teacher": {"teacher": "t", "backend": "local", "total_prompt_tokens": 0,
                                     "total_completion_tokens": 0, "total_cost_usd": 0.0, "answered": 0,
                                     "resumed": 0, "failed": 0}}, train, kept)
    assert "| test rows moved out as leaked (`test_leaked.jsonl`) | 1 |" in card
    assert "## Train/test leakage" in card and "1 of 2 test rows (50%)" in card


# --- default_dataset: what notebooks 04 and 07 train on when DATASET_PATH is "" (never silently) -----------
def ws_at(data_dir: Path, smoke: bool) -> Workspace:
    """A workspace whose data folder is ``data_dir``."""
    return Workspace(root=REPO, data_dir=Path(data_dir), out_dir=Path(data_dir) / "outputs",
                     local_dir=Path(data_dir) / "local", plots_dir=Path(data_dir) / "plots", on_colab=False,
                     drive=False, smoke=smoke)


def write_dataset(folder: Path, n: int) -> Path:
    rows = [json.loads(line) for line in CHITCHAT.read_text().splitlines()[:n]]
    path = folder / "dataset" / "train.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_small_dataset_is_an_error_outside_smoke(tmp_path):
    built = write_dataset(tmp_path, 3)
    with pytest.raises(DataError) as exc:
        default_dataset(ws_at(tmp_path, smoke=False))
    msg = str(exc.value)
    assert str(built) in msg and "only 3 example(s)" in msg and "notebook 02" in msg
    assert f'DATASET_PATH="{built}"' in msg and str(CHITCHAT) in msg  # both ways out, spelled out


def test_small_dataset_under_smoke_falls_back_in_a_box(tmp_path, capsys):
    write_dataset(tmp_path, 3)
    assert default_dataset(ws_at(tmp_path, smoke=True)) == CHITCHAT
    out = capsys.readouterr().out
    assert out.startswith("!!!!") and "SMOKE: NOT TRAINING ON NOTEBOOK 02'S DATASET" in out and str(CHITCHAT) in out


def test_enough_rows_train_on_notebook_02s_dataset(tmp_path):
    built = write_dataset(tmp_path, 25)
    assert default_dataset(ws_at(tmp_path, smoke=False)) == built


def test_no_dataset_trains_on_the_bundled_data_and_says_so(tmp_path, capsys):
    assert default_dataset(ws_at(tmp_path, smoke=False)) == CHITCHAT
    out = capsys.readouterr().out
    assert "!!" in out and "no dataset from notebook 02" in out.lower() and "DATASET_PATH" in out
