"""Base against tuned on one set of prompts, on the embedded model with a real tiny adapter: the
held-out rows and their references, the context policy, both models' answers and scores."""
import json

import pytest

from helpers.common.generate import generate_answers
from helpers.common.models import load_model
from helpers.common.prompts import resolve_style
from helpers.common.resources import chitchat
from helpers.evaluation.config import EvalConfig
from helpers.evaluation.metrics import EvalError
from helpers.evaluation.perplexity import perplexity
from helpers.evaluation.report import evaluate_adapter
from helpers.evaluation.scoring import compare_on, load_references, prompt_source
from helpers.evaluation.stats import METRICS

EMBEDDED = "embedded/smollm2-135m-instruct"


def test_load_references_cuts_each_conversation_at_its_reference(tmp_path, capsys):
    rows, missing = load_references(chitchat("test"), "first", max_examples=3)
    assert len(rows) == 3 and missing == []
    assert all(r["messages"][-1]["role"] == "assistant" and len(r["messages"]) == 2 for r in rows)
    last, _ = load_references(chitchat("test"), "last", max_examples=1)
    assert last[0]["messages"][-1]["content"].startswith("AND WHIPPED CREAM!")
    # the copy check's source: everything the model was given, without the reference
    assert prompt_source(last[0]).startswith("I like vanilla\nI love the smell of mint!")
    assert "AND WHIPPED CREAM" not in prompt_source(last[0])
    assert prompt_source({"instruction": "Sum up", "input": "a text", "output": "x"}) == "Sum up\na text"
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(json.dumps({"instruction": "Say hi", "output": ""}) + "\n"
                     + json.dumps({"instruction": "Say hi", "output": "hi"}) + "\n")
    rows, missing = load_references(mixed)
    assert missing == [0] and rows[0]["output"] == "hi"
    assert "1 held-out row(s) have no reference" in capsys.readouterr().out
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(EvalError, match="is empty"):
        load_references(empty)


def test_test_set_without_references(tmp_path, adapter):
    bad = tmp_path / "test.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n"
                   + json.dumps({"instruction": "Say hi", "output": ""}) + "\n")
    with pytest.raises(EvalError, match="no references"):
        load_references(bad)
    with pytest.raises(EvalError, match="no references"):
        evaluate_adapter(EvalConfig(adapter_dir=str(adapter), test_path=str(bad), quantization="none"))


def test_compare_on_scores_both_models_on_the_same_prompts(adapter, tuned_model):
    """The adapter switched off and on for the same prompts: the tuned reference perplexity differs
    from the base one, every metric has both models, and each answers row carries both answers."""
    model, tok = tuned_model
    rows, _ = load_references(chitchat("test"), "first", max_examples=3)
    cfg = EvalConfig(adapter_dir=str(adapter), max_new_tokens=6, batch_size=3, ppl_batch_size=3, bootstrap=50,
                     rouge_backend="rouge-score")
    logged = []
    found = compare_on(cfg, model, tok, rows, resolve_style(tok, "auto"), None, logged.append)
    assert [r["id"] for r in found.fit.rows] == [r["id"] for r in rows] and found.fit.long_idx == []
    assert found.refs == [r["messages"][-1]["content"] for r in rows]
    assert list(found.metrics) == list(METRICS) and found.backend.startswith("rouge-score")
    base, tuned = (perplexity(found.results[w]["nll"], found.results[w]["count"]) for w in ("base", "tuned"))
    assert found.metrics["perplexity"]["base"]["value"] == pytest.approx(base)
    assert found.metrics["perplexity"]["tuned"]["value"] == pytest.approx(tuned) and tuned != pytest.approx(base)
    assert found.results["base"]["count"] == found.results["tuned"]["count"]  # the same reference tokens
    assert [line.split(":")[0] for line in logged] == ["base", "tuned"]
    assert len(found.answers) == 3 and all({"prompt", "reference", "base", "tuned", "base_ppl", "tuned_rougeL"}
                                           <= set(a) for a in found.answers)
    assert [a["prompt"] for a in found.answers] == found.fit.prompts


def test_adapter_off_answers_equal_the_plain_base_model(report):
    """The base answers come from the adapter switched off on the one loaded model: they must
    equal the answers of the base model loaded on its own."""
    model, tok = load_model(EMBEDDED, quantization="none", verbose=False)
    answers = [json.loads(line) for line in open(report["files"]["answers"])]
    plain = generate_answers(model, tok, [a["prompt"] for a in answers], max_new_tokens=12, batch_size=4)
    assert plain["answers"] == [a["base"] for a in answers]


def test_prompts_longer_than_the_context(tmp_path, adapter):
    base = dict(adapter_dir=str(adapter), test_path=str(chitchat("test")), quantization="none", max_examples=2,
                max_new_tokens=4, batch_size=2, bootstrap=0, max_context=20, output_dir=str(tmp_path / "e"),
                general_max_examples=2)
    with pytest.raises(EvalError, match="longer than the context allows"):
        evaluate_adapter(EvalConfig(**base, long_prompts="error"))
    rep = evaluate_adapter(EvalConfig(**base, long_prompts="truncate"))
    assert rep["long_prompts"]["count"] == 2 and rep["n_examples"] == 2
    assert "keep their last tokens" in open(rep["files"]["markdown"]).read()
    with pytest.raises(EvalError, match="nothing left"):
        evaluate_adapter(EvalConfig(**base, long_prompts="skip"))
