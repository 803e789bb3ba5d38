"""Evaluation: metrics on real text, perplexity and the adapter switch on the embedded model, a
real tiny adapter trained with helpers.train.loop, and the bad inputs notebook 05 must explain."""
import json
import math
import shutil
from pathlib import Path

import pytest

EMBEDDED = "embedded/smollm2-135m-instruct"

import torch  # noqa: E402
torch.set_num_threads(1)  # the CI box is shared: one thread is ~10x faster than two fighting

from helpers.common.resources import chitchat  # noqa: E402
from helpers.evaluation.report import GENERAL_METRICS, EvalConfig, evaluate_adapter, forgetting_verdict, load_references, paired_bootstrap, reference_sequences, sequence_nll, verdict
from helpers.evaluation.metrics import EvalError, copy_score, degeneration, implausible_word, is_copy, rouge_scores


@pytest.fixture(scope="session")
def adapter(tmp_path_factory, embedded_dir):
    """A real LoRA adapter: two steps of helpers.train.loop on the bundled chitchat conversations."""
    from helpers.train.loop import TrainConfig, train
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
                     bootstrap=200, n_show=2, rouge_backend="rouge-score", general_max_examples=4)
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
    from helpers.common.rows import held_out_turns
    from helpers.core.jsonl import read_jsonl
    from helpers.common.models import load_model
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
                           "bootstrap", "metrics", "examples", "leakage", "general", "device", "seconds", "plots"]
    assert list(saved["metrics"]) == ["rouge1", "rouge2", "rougeL", "perplexity", "answer_words", "stop_rate",
                                      "copy_rate"]
    out_dir = Path(files["json"]).parent  # the plots go to <output_dir>/plots by default, named <prefix>*.png
    assert report["plots"] == [str(out_dir / "plots" / f"eval_{n}.png") for n in ("metrics", "lengths", "general")]
    assert saved["metrics"]["rougeL"]["tuned"]["value"] == report["metrics"]["rougeL"]["tuned"]["value"]
    md = open(files["markdown"]).read()
    assert "| ROUGE-L F1 ↑ |" in md and "### Example 1" in md and "policy 'truncate'" in md
    assert all(open(p, "rb").read(4) == b"\x89PNG" for p in report["plots"])
    answers = [json.loads(l) for l in open(files["answers"])]
    assert len(answers) == 4 and all("base" in a and "tuned" in a for a in answers)


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
    assert g["metrics"]["perplexity"]["base"]["value"] == pytest.approx(report["metrics"]["perplexity"]["base"]["value"],
                                                                         rel=1e-6)
    assert g["held"]["outcome"] in ("held", "forgot", "unclear")
    assert g["held"]["line"].startswith("general perplexity ") and g["held"]["line"].endswith(g["held"]["outcome"]) \
        or "too few general prompts" in g["held"]["line"]
    md = open(report["files"]["markdown"]).read()
    assert "## General ability" in md and f"**General ability: {g['held']['outcome']}.**" in md
    assert "| glued / implausible words (share) ↓ |" in md and "Leakage: 0 of 4 test rows (0%)" in md
    lk = report["leakage"]
    assert lk["flagged"] == 0 and lk["train_path"] == str(chitchat("train")) and lk["measured"] == 4
    general_answers = [json.loads(l) for l in open(report["files"]["general_answers"])]
    assert len(general_answers) == 4 and "tuned_glued_words" in general_answers[0]
    assert open(report["plots"][2], "rb").read(4) == b"\x89PNG"


def _conversation_messages(split="test"):
    return [m["content"] for l in open(chitchat(split), encoding="utf-8") for m in json.loads(l)["messages"]]


def test_degeneration_figures_stay_quiet_on_real_conversations():
    msgs = _conversation_messages("test") + _conversation_messages("train")
    figs = [degeneration(m) for m in msgs]
    for k in ("repeated_3grams", "repeated_words", "glued_words"):
        vals = [f[k] for f in figs]
        assert sum(vals) / len(vals) < 0.003, k  # real text: almost never
        assert sum(v > 0 for v in vals) / len(vals) < 0.04, k
    tokens = [t for m in msgs for t in m.split()]
    flagged = [t for t in tokens if implausible_word(t)]
    assert len(flagged) / len(tokens) < 0.0005
    for ok in ("iPhone", "MacBook", "google.com", "https://x.org/a,b", "#tidepodchallenge", "e.g.", "YESSSSSSSSSSSSSSSSSS",
               "procrastinating", "3.14", "don't", "(really?)", "Hello!"):
        assert implausible_word(ok) is None, ok


def test_degeneration_figures_fire_on_constructed_degenerate_text():
    """Seed 004's symptoms built from real messages: words glued / spaces lost, repeated phrases and words."""
    import random
    rnd = random.Random(0)
    msgs = [m for m in _conversation_messages("test") if len(m.split()) >= 12][:60]
    assert len(msgs) >= 40

    def glue(text):  # lose the spaces inside runs of 3-5 words, and after sentence marks
        w, out = text.split(), []
        while w:
            k = rnd.randint(3, 5)
            out.append("".join(w[:k]))
            w = w[k:]
        return " ".join(out).replace(". ", ".").replace("? ", "?")

    def repeat(text):  # a phrase said again and again
        w = text.split()
        return " ".join(w[:6] + w[2:6] * 4)

    def stutter(text):
        return " ".join(x for t in text.split() for x in (t, t))

    real = [degeneration(m) for m in msgs]
    glued = [degeneration(glue(m))["glued_words"] for m in msgs]
    assert sum(glued) / len(glued) > 0.3 and sum(g > 0 for g in glued) / len(glued) > 0.9
    assert sum(degeneration(repeat(m))["repeated_3grams"] for m in msgs) / len(msgs) > 0.4
    assert min(degeneration(stutter(m))["repeated_words"] for m in msgs) >= 0.3
    assert max(r["glued_words"] for r in real) < 0.1 and max(r["repeated_words"] for r in real) < 0.1
    assert implausible_word("storeYesterday") == "case join" and implausible_word("thatI") == "case join"
    assert implausible_word("cool.What") == "punctuation join" and implausible_word("yes,I") == "punctuation join"
    assert implausible_word("Iwenttothestoreyesterday") == "long"


def _general_metrics(ppl_base, ppl_tuned, degen_base=None, degen_tuned=None, n_boot=300):
    """A general section's metrics from constructed paired values (as _compare_models builds them)."""
    out = {"perplexity": {"label": GENERAL_METRICS["perplexity"][0],
                          **paired_bootstrap(ppl_base, ppl_tuned, "ppl", n_boot, 0, relative=True)}}
    for name in ("repeated_3grams", "repeated_words", "glued_words", "stop_rate"):
        b = (degen_base or {}).get(name, [0.0] * len(ppl_base))
        t = (degen_tuned or {}).get(name, b)
        out[name] = {"label": GENERAL_METRICS[name][0], **paired_bootstrap(b, t, "mean", n_boot, 0)}
    return out


def test_forgetting_verdict_wording():
    import random
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
    assert "worse: repeated word 3-grams (share) +0.220, answers that stopped at end of turn -0.500: forgot" in v["line"]
    # a repetition rise whose interval contains 0 does not count
    blip = _general_metrics(base, base, {"repeated_3grams": rep_b}, {"repeated_3grams": [0.5] + [0.0] * 39})
    assert forgetting_verdict(blip, 0.02)["outcome"] == "held"
    none = _general_metrics(base, base, n_boot=0)
    assert forgetting_verdict(none, 0.02)["outcome"] == "not decided"


def test_leaked_rows_can_be_dropped_and_the_general_check_skipped(tmp_path, adapter):
    """A held-out set with two near copies of training conversations: flagged, and left out with
    DROP_LEAKED; GENERAL_PATH='none' skips the forgetting section."""
    train = [json.loads(l) for l in open(chitchat("train"), encoding="utf-8")]
    test = [json.loads(l) for l in open(chitchat("test"), encoding="utf-8")][:2]
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


def test_adapter_off_answers_equal_the_plain_base_model(report):
    """The base answers come from the adapter switched off on the one loaded model: they must
    equal the answers of the base model loaded on its own."""
    from helpers.common.generate import generate_answers
    from helpers.common.models import load_model
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
                max_new_tokens=4, batch_size=2, bootstrap=0, max_context=20, output_dir=str(tmp_path / "e"),
                general_max_examples=2)
    with pytest.raises(EvalError, match="longer than the context allows"):
        evaluate_adapter(EvalConfig(**base, long_prompts="error"))
    rep = evaluate_adapter(EvalConfig(**base, long_prompts="truncate"))
    assert rep["long_prompts"]["count"] == 2 and rep["n_examples"] == 2
    assert "keep their last tokens" in open(rep["files"]["markdown"]).read()
    with pytest.raises(EvalError, match="nothing left"):
        evaluate_adapter(EvalConfig(**base, long_prompts="skip"))


def test_config_checks():
    from helpers.core.config import ConfigError
    with pytest.raises(ConfigError, match="LONG_PROMPTS"):
        EvalConfig(long_prompts="cut").validate()
    with pytest.raises(ConfigError, match="BOOTSTRAP"):
        EvalConfig(bootstrap=10).validate()
    with pytest.raises(ConfigError, match="FORGETTING_TOLERANCE"):
        EvalConfig(forgetting_tolerance=-0.1).validate()
    with pytest.raises(ConfigError, match="LEAKAGE_THRESHOLD"):
        EvalConfig(leakage_threshold=0).validate()
