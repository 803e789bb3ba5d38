"""The general-ability (forgetting) section: the held / forgot / unclear rule on constructed paired
values, and the section of a real report of the tiny adapter on the embedded model."""
import json
import random

import pytest

from helpers.common.prompts import resolve_style
from helpers.common.resources import chitchat
from helpers.evaluation.config import EvalConfig, EvalInputs
from helpers.evaluation.general import GENERAL_METRICS, forgetting_verdict, general_report
from helpers.evaluation.stats import paired_bootstrap


def test_report_has_the_general_section_with_intervals(report):
    """The forgetting check on the tiny adapter: the bundled conversations' test split (here also the
    in-domain set, and the report says so), base vs tuned with paired intervals, the verdict line."""
    g = report["general"]
    assert g["bundled"] and g["same_as_in_domain"] and "IS the in-domain test set" in g["note"]
    assert g["n_examples"] == 4 and list(g["metrics"]) == list(GENERAL_METRICS)
    for name, m in g["metrics"].items():
        for which in ("base", "tuned", "diff"):
            assert len(m[which]["ci"]) == 2, name
    rel = g["metrics"]["perplexity"]["relative"]
    assert rel["ci"][0] <= rel["value"] <= rel["ci"][1]
    assert rel["value"] == pytest.approx(g["metrics"]["perplexity"]["tuned"]["value"]
                                         / g["metrics"]["perplexity"]["base"]["value"] - 1)
    # the general prompts are the in-domain ones here: the same base perplexity, computed again
    assert g["metrics"]["perplexity"]["base"]["value"] == pytest.approx(
        report["metrics"]["perplexity"]["base"]["value"], rel=1e-6)
    assert g["held"]["outcome"] in ("held", "forgot", "unclear")
    assert g["held"]["line"].startswith("general perplexity ") and g["held"]["line"].endswith(g["held"]["outcome"]) \
        or "too few general prompts" in g["held"]["line"]
    md = open(report["files"]["markdown"]).read()
    assert "## General ability" in md and f"**General ability: {g['held']['outcome']}.**" in md
    assert "| glued / implausible words (share) ↓ |" in md and "Leakage: 0 of 4 test rows (0%)" in md
    lk = report["leakage"]
    assert lk["flagged"] == 0 and lk["train_path"] == str(chitchat("train")) and lk["measured"] == 4
    general_answers = [json.loads(line) for line in open(report["files"]["general_answers"])]
    assert len(general_answers) == 4 and "tuned_glued_words" in general_answers[0]
    assert open(report["plots"][2], "rb").read(4) == b"\x89PNG"


def _general_metrics(ppl_base, ppl_tuned, degen_base=None, degen_tuned=None, n_boot=300):
    """A general section's metrics from constructed paired values (as compare_models builds them)."""
    out = {"perplexity": {"label": GENERAL_METRICS["perplexity"][0],
                          **paired_bootstrap(ppl_base, ppl_tuned, "ppl", n_boot, 0, relative=True)}}
    for name in ("repeated_3grams", "repeated_words", "glued_words", "stop_rate"):
        b = (degen_base or {}).get(name, [0.0] * len(ppl_base))
        t = (degen_tuned or {}).get(name, b)
        out[name] = {"label": GENERAL_METRICS[name][0], **paired_bootstrap(b, t, "mean", n_boot, 0)}
    return out


def test_forgetting_verdict_wording():
    rnd = random.Random(1)
    base = [(rnd.uniform(20, 60), 20) for _ in range(40)]  # (nll, tokens) of 40 general references
    same = _general_metrics(base, base)
    v = forgetting_verdict(same, 0.02)
    assert v == {"outcome": "held", "worse": [],
                 "line": "general perplexity +0.0% [+0.0%, +0.0%] (tolerance +2%), no degeneration figure worse: held"}
    # every reference 0.1 nats per token less likely: perplexity x e^0.1 = +10.5%, interval far above 2%
    worse = _general_metrics(base, [(n + 0.1 * t, t) for n, t in base])
    v = forgetting_verdict(worse, 0.02)
    assert v["outcome"] == "forgot" and v["line"].startswith("general perplexity +10.5% [+10.5%, +10.5%]")
    # a 1% rise: held at a 2% tolerance, forgot at 0.5%
    slight = _general_metrics(base, [(n + 0.00995 * t, t) for n, t in base])
    assert forgetting_verdict(slight, 0.02)["outcome"] == "held"
    assert forgetting_verdict(slight, 0.005)["outcome"] == "forgot"
    # noisy: some references much better, some much worse, about 2% on the whole: the interval straddles 2%
    noisy = _general_metrics(base, [(n + t * (0.02 + rnd.choice([-0.3, 0.3])), t) for n, t in base])
    v = forgetting_verdict(noisy, 0.02)
    assert v["outcome"] == "unclear" and "too few general prompts to tell" in v["line"]
    # perplexity held, but the tuned answers repeat themselves and stop less: forgot, and says which
    rep_b, rep_t = [0.0] * 40, [0.2 + 0.01 * (i % 5) for i in range(40)]
    stop_b, stop_t = [1.0] * 40, [1.0 if i % 2 else 0.0 for i in range(40)]
    degen = _general_metrics(base, base, {"repeated_3grams": rep_b, "stop_rate": stop_b},
                             {"repeated_3grams": rep_t, "stop_rate": stop_t})
    v = forgetting_verdict(degen, 0.02)
    assert v["outcome"] == "forgot" and v["worse"] == ["repeated_3grams", "stop_rate"]
    assert ("worse: repeated word 3-grams (share) +0.220, answers that stopped at end of turn -0.500: forgot"
            in v["line"])
    # a repetition rise whose interval contains 0 does not count
    blip = _general_metrics(base, base, {"repeated_3grams": rep_b}, {"repeated_3grams": [0.5] + [0.0] * 39})
    assert forgetting_verdict(blip, 0.02)["outcome"] == "held"
    none = _general_metrics(base, base, n_boot=0)
    assert forgetting_verdict(none, 0.02)["outcome"] == "not decided"


def test_general_report_on_a_file_of_your_own(tmp_path, adapter, tuned_model):
    """GENERAL_PATH pointing at a JSONL of real conversations (not the in-domain set): scored on the one
    loaded model with the adapter off and on; LONG_PROMPTS='error' is eased to 'truncate' for it."""
    model, tok = tuned_model
    rows = [json.loads(line) for line in open(chitchat("train"), encoding="utf-8")][100:103]
    path = tmp_path / "general.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = EvalConfig(adapter_dir=str(adapter), general_path=str(path), general_max_examples=2, max_new_tokens=4,
                     batch_size=2, ppl_batch_size=2, bootstrap=0, long_prompts="error", max_context=16,
                     rouge_backend="rouge-score", n_show=1)
    inputs = EvalInputs(model_name="", template="auto", system=None, test_path=chitchat("test"),
                        out_dir=tmp_path / "eval", plots_dir=tmp_path / "plots")
    logged = []
    section, answers = general_report(cfg, model, tok, resolve_style(tok, "auto"), inputs, logged.append)
    assert section["path"] == str(path) and not section["bundled"] and not section["same_as_in_domain"]
    assert section["note"] == "your GENERAL_PATH" and section["n_examples"] == 2 and section["long_prompts"] == 2
    assert list(section["metrics"]) == list(GENERAL_METRICS) and section["held"]["outcome"] == "not decided"
    assert len(answers) == 2 and section["examples"] == answers[:1]
    assert logged[0] == f"General prompts {path}: 2" and logged[-1] == "General ability: " + section["held"]["line"]
    skipped = general_report(cfg.replace(general_path="none"), model, tok, "chat", inputs, logged.append)
    assert skipped == ({"skipped": "GENERAL_PATH='none': no forgetting check"}, [])
