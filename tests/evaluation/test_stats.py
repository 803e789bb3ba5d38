"""Paired bootstrap intervals, the verdict they support, and the comparison of base and tuned
on per-example scores of real text."""
import json
import math

import pytest

from helpers.common.resources import chitchat
from helpers.evaluation.config import EvalConfig
from helpers.evaluation.metrics import EvalError, rouge_scores, words
from helpers.evaluation.stats import METRICS, compare_models, paired_bootstrap, verdict


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


def test_paired_bootstrap_refuses_unpaired_values_and_reproduces_with_its_seed():
    with pytest.raises(EvalError, match="same non-zero number"):
        paired_bootstrap([0.1, 0.2], [0.1])
    with pytest.raises(EvalError, match="positive base value"):
        paired_bootstrap([0.0, 0.0], [0.1, 0.2], relative=True)
    vals = [0.1, 0.5, 0.3, 0.9, 0.2]
    a = paired_bootstrap(vals, vals[::-1], n_boot=100, seed=3)
    assert a == paired_bootstrap(vals, vals[::-1], n_boot=100, seed=3)
    assert "ci" not in paired_bootstrap(vals, vals, n_boot=0)["diff"]


def test_verdict_wording():
    assert verdict({"value": 0.1, "ci": [0.05, 0.2]}, False) == "base better"
    assert verdict({"value": -0.1, "ci": [-0.2, -0.05]}, False) == "tuned better"
    assert verdict({"value": 3.0, "ci": [1.0, 5.0]}, None) == "longer"
    assert verdict({"value": -3.0, "ci": [-5.0, -1.0]}, None) == "shorter"
    assert verdict({"value": 0.1}, True) == "no interval"


def test_compare_models_on_real_replies():
    """Tuned answers = the real references, base answers = their first three words: the tuned model is
    clearly better on ROUGE and longer, the same on perplexity pairs that are equal."""
    rows = [json.loads(line) for line in open(chitchat("test"), encoding="utf-8")][:30]
    refs = [r["messages"][1]["content"] for r in rows]
    base_ans = [" ".join(r.split()[:3]) for r in refs]
    per = {}
    for which, ans in (("base", base_ans), ("tuned", refs)):
        scores, _ = rouge_scores(ans, refs, "rouge-score")
        per[which] = {**scores, "answer_words": [len(words(a)) for a in ans],
                      "stop_rate": [1.0] * len(ans), "copy_rate": [0.0] * len(ans),
                      "ppl_pairs": [(2.0 * len(words(r)), len(words(r))) for r in refs]}
    metrics = compare_models(EvalConfig(bootstrap=200, seed=0), per)
    assert list(metrics) == list(METRICS)
    for name in ("rouge1", "rougeL"):
        assert metrics[name]["tuned"]["value"] == pytest.approx(1.0)
        assert metrics[name]["verdict"] == "tuned better"
    assert metrics["answer_words"]["verdict"] == "longer"
    assert metrics["perplexity"]["base"]["value"] == pytest.approx(math.exp(2.0))
    assert metrics["perplexity"]["relative"]["value"] == pytest.approx(0.0)
    assert metrics["perplexity"]["verdict"] == "no clear difference"
    assert metrics["rouge1"]["label"] == "ROUGE-1 F1" and metrics["rouge1"]["higher_is_better"] is True
