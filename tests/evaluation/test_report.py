"""The whole evaluation on the embedded model with a real tiny adapter: report.json, report.md,
answers.jsonl and the plots, the leakage check and its DROP_LEAKED option."""
import json
from pathlib import Path

import pytest

from helpers.common.resources import chitchat
from helpers.evaluation.config import EvalConfig
from helpers.evaluation.report import evaluate_adapter


def test_report(report, adapter):
    assert report["n_examples"] == 4
    assert report["rouge_backend"].startswith("rouge-score")
    for name, m in report["metrics"].items():
        for which in ("base", "tuned"):
            lo, hi = m[which]["ci"]
            assert lo - 1e-9 <= m[which]["value"] <= hi + 1e-9, name
    ppl = report["metrics"]["perplexity"]
    assert 1 < ppl["base"]["value"] < 1e4 and 1 < ppl["tuned"]["value"] < 1e4
    assert ppl["base"]["value"] != pytest.approx(ppl["tuned"]["value"], rel=1e-4)  # the adapter is on for "tuned"
    files = report["files"]
    saved = json.loads(open(files["json"]).read())
    assert list(saved) == ["model_name", "adapter_dir", "test_path", "quantization", "template", "system_prompt",
                           "n_examples", "reference_turn", "rows_without_reference", "reference_words",
                           "reference_tokens_scored", "long_prompts", "generation", "rouge_backend", "copy_check",
                           "bootstrap", "metrics", "examples", "leakage", "general", "retrieval", "device", "seconds",
                           "plots"]
    assert list(saved["metrics"]) == ["rouge1", "rouge2", "rougeL", "perplexity", "answer_words", "stop_rate",
                                      "copy_rate"]
    out_dir = Path(files["json"]).parent  # the plots go to <output_dir>/plots by default, named <prefix>*.png
    assert report["plots"] == [str(out_dir / "plots" / f"eval_{n}.png") for n in ("metrics", "lengths", "general")]
    assert saved["metrics"]["rougeL"]["tuned"]["value"] == report["metrics"]["rougeL"]["tuned"]["value"]
    md = open(files["markdown"]).read()
    assert "| ROUGE-L F1 ↑ |" in md and "### Example 1" in md and "policy 'truncate'" in md
    assert all(open(p, "rb").read(4) == b"\x89PNG" for p in report["plots"])
    answers = [json.loads(line) for line in open(files["answers"])]
    assert len(answers) == 4 and all("base" in a and "tuned" in a and a["way"] == "closed" for a in answers)
    assert "not measured: No chunks to retrieve from" in saved["retrieval"]["skipped"]  # chitchat has no chunks


def test_leaked_rows_can_be_dropped_and_the_general_check_skipped(tmp_path, adapter):
    """A held-out set with two near copies of training conversations: flagged, and left out with
    DROP_LEAKED; GENERAL_PATH='none' skips the forgetting section."""
    train = [json.loads(line) for line in open(chitchat("train"), encoding="utf-8")]
    test = [json.loads(line) for line in open(chitchat("test"), encoding="utf-8")][:2]
    leaked = [dict(train[5], id="copy-5"), dict(train[9], id="copy-9")]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in test + leaked))
    base = dict(adapter_dir=str(adapter), test_path=str(path), quantization="none", max_new_tokens=4, batch_size=4,
                bootstrap=0, general_path="none", rouge_backend="rouge-score")
    rep = evaluate_adapter(EvalConfig(**base, output_dir=str(tmp_path / "a")))
    assert rep["leakage"]["flagged"] == 2 and rep["n_examples"] == 4 and rep["leakage"]["dropped"] == 0
    assert [r["row"] for r in rep["leakage"]["flagged_rows"]] == [2, 3]
    assert rep["general"] == {"skipped": "GENERAL_PATH='none': no forgetting check"}
    md = open(rep["files"]["markdown"]).read()
    assert "Leakage: 2 of 4 test rows (50%)" in md and "reported only" in md and "no forgetting check" in md
    rep = evaluate_adapter(EvalConfig(**base, output_dir=str(tmp_path / "b"), drop_leaked=True))
    assert rep["n_examples"] == 2 and rep["leakage"]["dropped"] == 2
    assert "2 left out of the scores (DROP_LEAKED)" in open(rep["files"]["markdown"]).read()
