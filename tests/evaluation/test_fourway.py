"""helpers.evaluation.fourway: the verdict rule over the four ways, the hit rate, and the retrieval
baseline end to end on the embedded model with a real tiny adapter, held-out questions made from the
bundled paper's chunks (the kit's own PDF reader and chunker) and a rerun that generates nothing."""
import json

import pytest

from helpers.common.resources import fixture_pdf
from helpers.evaluation.config import EvalConfig
from helpers.evaluation.fourway import four_way_verdict, hit_rate
from helpers.evaluation.markdown import retrieval_markdown
from helpers.evaluation.report import evaluate_adapter
from helpers.evaluation.retrieval import Passage


def _scores(base, tuned, base_rag, tuned_rag, n=40):
    """Per-question scores with exactly the given means and a spread of their own for each way (seeded)."""
    import random
    out = {}
    for j, (w, m) in enumerate((("base", base), ("tuned", tuned), ("base_rag", base_rag), ("tuned_rag", tuned_rag))):
        rng = random.Random(j)
        noise = [rng.gauss(0, 0.05) for _ in range(n)]
        out[w] = [m + x - sum(noise) / n for x in noise]
    return out


@pytest.mark.parametrize("means,outcome", [
    ((0.10, 0.20, 0.20, 0.35), "both together are best"),
    ((0.10, 0.15, 0.30, 0.31), "retrieval alone does as well"),
    ((0.10, 0.30, 0.15, 0.30), "fine-tuning helped"),
    ((0.10, 0.20, 0.20, 0.20), "fine-tuning helped, retrieval alone does as well"),
    ((0.10, 0.10, 0.20, 0.20), "retrieval alone does as well"),
    ((0.10, 0.10, 0.10, 0.10), "no clear difference"),
])
def test_the_verdict_follows_the_intervals(means, outcome):
    v = four_way_verdict(_scores(*means), n_boot=300, seed=0)
    assert v["outcome"] == outcome
    assert v["line"].lower().startswith(outcome.split(",")[0])
    assert set(v["diffs"]) == {"tuned-base", "base_rag-base", "tuned_rag-base", "base_rag-tuned", "tuned_rag-tuned",
                               "tuned_rag-base_rag"}
    assert four_way_verdict(_scores(*means), n_boot=0)["outcome"] == "no interval"


def test_hit_rate_counts_the_source_chunk_in_the_top_k():
    p = [Passage(c, "doc", 0, "t", 1.0) for c in ("a", "b", "c")]
    rows = [{"chunk_id": "a"}, {"chunk_id": "c"}, {"chunk_id": "z"}, {"chunk_id": "b"}, {}]
    h = hit_rate(rows, [p[:1], p, p, [], p], n_boot=200)
    assert h["n"] == 4 and h["hits"] == 2 and h["value"] == 0.5 and 0 <= h["ci"][0] <= 0.5 <= h["ci"][1] <= 1
    assert "no chunk_id" in hit_rate([{}, {}], [p, p])["skipped"]


@pytest.fixture(scope="module")
def paper_dataset(tmp_path_factory, smol_tokenizer):
    """A held-out set of 4 questions made from the paper's chunks (each row names its chunk) and the
    chunks.jsonl beside it, as notebook 02 writes them."""
    from helpers.dataset.chunking import chunk_text
    from helpers.dataset.pdf import read_pdf
    folder = tmp_path_factory.mktemp("dataset")
    chunks = chunk_text(read_pdf(fixture_pdf()).text, smol_tokenizer, 160, 16, fixture_pdf().name)
    (folder / "chunks.jsonl").write_text("".join(json.dumps({"chunk_id": c.id, "source": c.source, "index": c.index,
                                                             "text": c.text}) + "\n" for c in chunks))
    rows = []
    for c in chunks[4:8]:
        w = c.text.split()
        rows.append({"instruction": "What does the paper say about " + " ".join(w[30:40]) + "?", "input": "",
                     "output": " ".join(w[40:70]), "source": c.source, "chunk_id": c.id})
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_four_ways_scored_and_a_rerun_generates_nothing(paper_dataset, adapter, tmp_path):
    cfg = EvalConfig(adapter_dir=str(adapter), test_path=str(paper_dataset / "test.jsonl"), output_dir=str(tmp_path),
                     quantization="none", max_new_tokens=8, batch_size=4, bootstrap=100, general_path="none",
                     rouge_backend="rouge-score", n_show=2, retrieval_k=2)
    logs = []
    rep = evaluate_adapter(cfg, log=logs.append)
    r = rep["retrieval"]
    assert r["k"] == 2 and r["chunks_path"] == str(paper_dataset / "chunks.jsonl")
    assert list(r["ways"]) == ["base", "tuned", "base_rag", "tuned_rag"]
    assert r["hit_rate"]["n"] == 4 and r["hit_rate"]["hits"] >= 3
    assert r["verdict"]["outcome"] in {"both together are best", "retrieval alone does as well", "fine-tuning helped",
                                       "fine-tuning helped, retrieval alone does as well", "no clear difference"}
    answers = [json.loads(line) for line in open(rep["files"]["answers"])]
    assert [a["way"] for a in answers] == ["closed"] * 4 + ["retrieval"] * 4
    rag = answers[4:]
    assert all(a["prompt"].count("Passages from your documents") == 1 and len(a["passages"]) <= 2 for a in rag)
    assert [a["reference"] for a in rag] == [a["reference"] for a in answers[:4]]
    assert sum(a["hit"] for a in rag) == r["hit_rate"]["hits"]
    assert any("Answers: 16 generated, 0 reused" in x for x in logs), logs
    md = open(rep["files"]["markdown"]).read()
    assert "## Retrieval baseline" in md and r["verdict"]["line"] in md and "| tuned + retrieved passages |" in md
    assert "Retrieval hit rate: the question's own source chunk is among the top 2" in retrieval_markdown(rep)

    logs.clear()
    again = evaluate_adapter(cfg, log=logs.append)
    assert any("Answers: 0 generated, 16 reused" in x for x in logs), logs
    assert again["retrieval"]["ways"] == r["ways"]


def test_without_chunks_or_with_k_0_the_report_says_why(paper_dataset, adapter, tmp_path):
    import shutil
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(paper_dataset / "test.jsonl", folder / "test.jsonl")
    base = dict(adapter_dir=str(adapter), test_path=str(folder / "test.jsonl"), quantization="none",
                max_new_tokens=4, max_examples=2, batch_size=4, bootstrap=0, general_path="none",
                rouge_backend="rouge-score")
    rep = evaluate_adapter(EvalConfig(**base, output_dir=str(tmp_path / "a")), log=lambda *_: None)
    assert "Notebook 02 writes chunks.jsonl" in rep["retrieval"]["skipped"]
    assert "Retrieval baseline: not measured: No chunks" in open(rep["files"]["markdown"]).read()
    rep = evaluate_adapter(EvalConfig(**base, output_dir=str(tmp_path / "b"), retrieval_k=0), log=lambda *_: None)
    assert rep["retrieval"] == {"skipped": "RETRIEVAL_K=0: no retrieval baseline"}
