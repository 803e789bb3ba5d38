"""The general-ability (forgetting) section: base against tuned on general prompts (by default the
bundled real conversations' test split), with the degeneration checks, and whether general ability
held, by the rule the report's Markdown states."""
from __future__ import annotations

from pathlib import Path

from helpers.common.resources import chitchat
from helpers.evaluation.config import EvalConfig, EvalInputs
from helpers.evaluation.scoring import compare_on, load_references

# the general (forgetting) section: perplexity and ROUGE of the general references, the degeneration check
GENERAL_METRICS = {
    "perplexity": ("perplexity of the general references", False),
    "rouge1": ("ROUGE-1 F1", True),
    "rougeL": ("ROUGE-L F1", True),
    "repeated_3grams": ("repeated word 3-grams (share)", False),
    "repeated_words": ("word repeated right after itself (share)", False),
    "glued_words": ("glued / implausible words (share)", False),
    "stop_rate": ("answers that stopped at end of turn", True),
    "answer_words": ("answer length (words)", None),
}
# the degeneration figures that decide "held": +1 = a rise is worse, -1 = a fall is worse
DEGENERATION = {"repeated_3grams": 1, "repeated_words": 1, "glued_words": 1, "stop_rate": -1}


def forgetting_verdict(metrics: dict, tolerance: float = 0.02) -> dict:
    """Whether general ability held, from the general section's metrics: "forgot" when the
    interval of the relative change of perplexity lies above +``tolerance`` or a degeneration
    figure got worse with an interval excluding 0, "held" when the perplexity interval lies at or
    below +``tolerance`` and none got worse, else "unclear"; without intervals, "not decided".
    Returns ``{"outcome": "held" | "forgot" | "unclear" | "not decided", "line", "worse"}``
    where ``worse`` names the degeneration figures that got worse with an interval excluding 0."""
    rel = metrics["perplexity"]["relative"]
    worse = []
    for name, sign in DEGENERATION.items():
        ci = metrics.get(name, {}).get("diff", {}).get("ci")
        if ci and ((sign > 0 and ci[0] > 0) or (sign < 0 and ci[1] < 0)):
            worse.append(name)
    ppl = f"general perplexity {rel['value']:+.1%}"
    if "ci" not in rel:
        return {"outcome": "not decided", "worse": [],
                "line": f"{ppl} (no interval: BOOTSTRAP=0): not decided"}
    lo, hi = rel["ci"]
    ppl += f" [{lo:+.1%}, {hi:+.1%}] (tolerance +{tolerance:.0%})"
    degen = ("worse: " + ", ".join(f"{metrics[n]['label']} {metrics[n]['diff']['value']:+.3f}" for n in worse)
             if worse else "no degeneration figure worse")
    if lo > tolerance or worse:
        outcome, why = "forgot", ""
    elif hi <= tolerance:
        outcome, why = "held", ""
    else:
        outcome = "unclear"
        why = f" (the perplexity interval reaches past +{tolerance:.0%}: too few general prompts to tell)"
    return {"outcome": outcome, "worse": worse, "line": f"{ppl}, {degen}: {outcome}{why}"}


def _general_path(cfg: EvalConfig) -> Path | None:
    """The general prompts' file: GENERAL_PATH, the bundled conversations' test split for "",
    None for "none"."""
    if cfg.general_path.strip().lower() == "none":
        return None
    if cfg.general_path:
        return Path(cfg.general_path)
    return chitchat("test")


def general_report(cfg: EvalConfig, model, tok, style: str, inputs: EvalInputs, log,
                   cache=None) -> tuple[dict, list[dict]]:
    """The forgetting section: base vs tuned on the general prompts (the same loaded model, the
    adapter off and on), perplexity, ROUGE and the degeneration check with paired intervals, and
    whether general ability held. Returns the section and its answers rows ([] when skipped)."""
    path = _general_path(cfg)
    if path is None:
        return {"skipped": "GENERAL_PATH='none': no forgetting check"}, []
    rows, missing = load_references(path, cfg.reference_turn, cfg.general_max_examples)
    same = path.resolve() == Path(inputs.test_path).resolve()
    log(f"General prompts {path}: {len(rows)}" + (" (the same set as the in-domain test set)" if same else ""))
    gcfg = cfg.replace(long_prompts="truncate") if cfg.long_prompts == "error" else cfg
    found = compare_on(gcfg, model, tok, rows, style, inputs.system, log, GENERAL_METRICS, cache)
    held = forgetting_verdict(found.metrics, cfg.forgetting_tolerance)
    log("General ability: " + held["line"])
    bundled = not cfg.general_path
    note = ("the general set IS the in-domain test set (both are the bundled conversations' test split): "
            "the two sections measure the same prompts" if same else
            "the bundled real conversations' test split (chit-chat the base model can hold)" if bundled else
            "your GENERAL_PATH")
    return {"path": str(path), "bundled": bundled, "same_as_in_domain": same, "note": note,
            "n_examples": len(found.fit.rows), "rows_without_reference": len(missing),
            "long_prompts": len(found.fit.long_idx), "tolerance": cfg.forgetting_tolerance,
            "metrics": found.metrics, "held": held, "examples": found.answers[: cfg.n_show]}, found.answers
