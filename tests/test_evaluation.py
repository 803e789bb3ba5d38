"""Evaluation: metrics on real text, perplexity and the adapter switch on the embedded model, a
real tiny adapter trained with helpers.train, and the bad inputs notebook 05 must explain."""
import json
import math
import shutil
from pathlib import Path

import pytest

EMBEDDED = "embedded/smollm2-135m-instruct"

import torch  # noqa: E402
torch.set_num_threads(1)  # the CI box is shared: one thread is ~10x faster than two fighting

from helpers.fixtures import chitchat  # noqa: E402
from helpers.evaluation import (EvalConfig, EvalError, copy_score, evaluate_adapter, is_copy,  # noqa: E402
                                load_references, paired_bootstrap, reference_sequences, rouge_scores,
                                sequence_nll, verdict)


@pytest.fixture(scope="session")
def adapter(tmp_path_factory, embedded_dir):
    """A real LoRA adapter: two steps of helpers.train on the bundled chitchat conversations."""
    from helpers.train import TrainConfig, train
    out = tmp_path_factory.mktemp("sft")
    cfg = TrainConfig(model_name=EMBEDDED, dataset_path=str(chitchat("train")), output_dir=str(out),
                      quantization="none", max_steps=2, per_device_batch_size=2, gradient_accumulation_steps=1,
                      max_seq_len=64, logging_steps=1, eval_steps=0, save_steps=100, max_rows=8, eval_fraction=0.0,
                      report_to="none", gradient_checkpointing=False, learning_rate=5e-3, warmup_ratio=0.0,
                      resume="never")
    return train(cfg).adapter_dir


@pytest.fixture(scope="session")
def report(adapter, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    cfg = EvalConfig(adapter_dir=str(adapter), test_path=str(chitchat("test")), output_dir=str(out),
                     quantization="none", max_examples=4, max_new_tokens=12, batch_size=4, ppl_batch_size=4,
                     bootstrap=200, n_show=2, rouge_backend="rouge-score")
    return evaluate_adapter(cfg)


# --- metrics on text ---------------------------------------------------------------------------
def test_rouge_identical_and_disjoint():
    scores, backend = rouge_scores(["The cat sat on the mat.", "hello"], ["the cat sat on the mat", "goodbye"])
    assert backend.startswith("rouge-score")
    for k in ("rouge1", "rouge2", "rougeL"):
        assert scores[k][0] == pytest.approx(1.0)  # lower-cased, punctuation ignored
        assert scores[k][1] == 0.0


def test_rouge_offline_auto_falls_back(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, backend = rouge_scores(["a b"], ["a b"], "auto")
    assert backend.startswith("rouge-score")


def test_copy_check():
    prompt = "I went to the market yesterday and bought some apples and pears"
    assert copy_score("went to the market yesterday", prompt) == pytest.approx(1.0)
    assert is_copy("I went to the market yesterday and bought", prompt)
    assert not is_copy("Apples are great, I love pears too!", prompt)
    assert not is_copy("the market", prompt)  # too short to count


def test_paired_bootstrap():
    base = [0.1, 0.2, 0.3, 0.4, 0.5, 0.2, 0.1, 0.3]
    same = paired_bootstrap(base, base, n_boot=300, seed=1)
    assert same["diff"]["ci"] == [0.0, 0.0]
    assert verdict(same["diff"], True) == "no clear difference"
    better = paired_bootstrap(base, [b + 0.2 for b in base], n_boot=300, seed=1)
    assert better["diff"]["value"] == pytest.approx(0.2)
    assert verdict(better["diff"], True) == "tuned better"
    lo, hi = better["base"]["ci"]
    assert lo <= better["base"]["value"] <= hi
    ppl = paired_bootstrap([(10.0, 5), (20.0, 5)], [(5.0, 5), (10.0, 5)], "ppl", 200)
    assert ppl["base"]["value"] == pytest.approx(math.exp(3.0))
    assert ppl["tuned"]["value"] == pytest.approx(math.exp(1.5))


# --- the embedded model ------------------------------------------------------------------------
def test_perplexity_batched_matches_one_by_one(embedded_dir):
    from helpers.data import held_out_turns, read_jsonl
    from helpers.models import load_model
    model, tok = load_model(EMBEDDED, quantization="none", verbose=False)
    rows = held_out_turns(read_jsonl(str(chitchat("test")))[:3])
    seqs = reference_sequences(tok, rows, "chat", None)
    # only the reference (last reply and its end marker) is scored
    ref_ids = tok(rows[0]["messages"][-1]["content"], add_special_tokens=False)["input_ids"]
    assert sum(seqs[0]["completion_mask"]) >= len(ref_ids)
    nll, cnt, cut = sequence_nll(model, tok, seqs, batch_size=3)
    assert cut == 0
    for s, n, c in zip(seqs, nll, cnt):
        ids = torch.tensor([s["input_ids"]])
        labels = torch.tensor([[t if m else -100 for t, m in zip(s["input_ids"], s["completion_mask"])]])
        with torch.no_grad():
            loss = model(input_ids=ids, labels=labels).loss.item()
        assert c == sum(s["completion_mask"][1:])
        assert n / c == pytest.approx(loss, rel=1e-3)
        assert math.isfinite(math.exp(n / c)) and math.exp(n / c) > 1


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
                           "bootstrap", "metrics", "examples", "device", "seconds", "plots"]
    assert list(saved["metrics"]) == ["rouge1", "rouge2", "rougeL", "perplexity", "answer_words", "stop_rate",
                                      "copy_rate"]
    out_dir = Path(files["json"]).parent  # the plots go to <output_dir>/plots by default, named <prefix>*.png
    assert report["plots"] == [str(out_dir / "plots" / "eval_metrics.png"), str(out_dir / "plots" / "eval_lengths.png")]
    assert saved["metrics"]["rougeL"]["tuned"]["value"] == report["metrics"]["rougeL"]["tuned"]["value"]
    md = open(files["markdown"]).read()
    assert "| ROUGE-L F1 ↑ |" in md and "### Example 1" in md and "policy 'truncate'" in md
    assert all(open(p, "rb").read(4) == b"\x89PNG" for p in report["plots"])
    answers = [json.loads(l) for l in open(files["answers"])]
    assert len(answers) == 4 and all("base" in a and "tuned" in a for a in answers)


def test_adapter_off_answers_equal_the_plain_base_model(report):
    """The base answers come from the adapter switched off on the one loaded model: they must
    equal the answers of the base model loaded on its own."""
    from helpers.generate import generate_answers
    from helpers.models import load_model
    model, tok = load_model(EMBEDDED, quantization="none", verbose=False)
    answers = [json.loads(l) for l in open(report["files"]["answers"])]
    plain = generate_answers(model, tok, [a["prompt"] for a in answers], max_new_tokens=12, batch_size=4)
    assert plain["answers"] == [a["base"] for a in answers]


# --- bad input ---------------------------------------------------------------------------------
def test_missing_adapter_says_run_04(tmp_path):
    with pytest.raises(EvalError, match="Run notebook 04"):
        evaluate_adapter(EvalConfig(adapter_dir=str(tmp_path / "sft" / "adapter")))


def test_test_set_without_references(tmp_path, adapter):
    bad = tmp_path / "test.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n"
                   + json.dumps({"instruction": "Say hi", "output": ""}) + "\n")
    with pytest.raises(EvalError, match="no references"):
        load_references(bad)
    with pytest.raises(EvalError, match="no references"):
        evaluate_adapter(EvalConfig(adapter_dir=str(adapter), test_path=str(bad), quantization="none"))


def test_adapter_for_another_base(tmp_path, adapter):
    other = tmp_path / "adapter"
    shutil.copytree(adapter, other)
    cfg_path = other / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = "meta-llama/Llama-3.2-1B-Instruct"
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(EvalError, match="trained on 'meta-llama/Llama-3.2-1B-Instruct'"):
        evaluate_adapter(EvalConfig(adapter_dir=str(other), model_name=EMBEDDED, quantization="none",
                                    test_path=str(chitchat("test"))))


def test_prompts_longer_than_the_context(tmp_path, adapter):
    base = dict(adapter_dir=str(adapter), test_path=str(chitchat("test")), quantization="none", max_examples=2,
                max_new_tokens=4, batch_size=2, bootstrap=0, max_context=20, output_dir=str(tmp_path / "e"))
    with pytest.raises(EvalError, match="longer than the context allows"):
        evaluate_adapter(EvalConfig(**base, long_prompts="error"))
    rep = evaluate_adapter(EvalConfig(**base, long_prompts="truncate"))
    assert rep["long_prompts"]["count"] == 2 and rep["n_examples"] == 2
    assert "keep their last tokens" in open(rep["files"]["markdown"]).read()
    with pytest.raises(EvalError, match="nothing left"):
        evaluate_adapter(EvalConfig(**base, long_prompts="skip"))


def test_config_checks():
    from helpers.config import ConfigError
    with pytest.raises(ConfigError, match="LONG_PROMPTS"):
        EvalConfig(long_prompts="cut").validate()
    with pytest.raises(ConfigError, match="BOOTSTRAP"):
        EvalConfig(bootstrap=10).validate()
