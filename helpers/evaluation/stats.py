"""Statistics of base against tuned: paired bootstrap intervals over the same resampled prompts for
both models, so a small test set does not oversell a difference, and the verdict each interval supports."""
from __future__ import annotations

from helpers.evaluation.config import EvalConfig
from helpers.evaluation.metrics import EvalError

# name -> (label, higher is better: True / False / None for "neither")
METRICS = {
    "rouge1": ("ROUGE-1 F1", True),
    "rouge2": ("ROUGE-2 F1", True),
    "rougeL": ("ROUGE-L F1", True),
    "perplexity": ("perplexity of the references (reply tokens)", False),
    "answer_words": ("answer length (words)", None),
    "stop_rate": ("answers that stopped by themselves (EOS)", True),
    "copy_rate": ("answers that copy the prompt", False),
}


def _stat(values, kind: str):
    """The statistic over the last-but-one axis: a mean, or a corpus perplexity of (nll, n) pairs."""
    import numpy as np
    if kind == "ppl":
        return np.exp(values[..., 0].sum(-1) / np.maximum(values[..., 1].sum(-1), 1))
    return values.mean(-1)


def paired_bootstrap(base, tuned, kind: str = "mean", n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
                     relative: bool = False) -> dict:
    """Point values and (1 - alpha) percentile intervals for base, tuned and tuned - base, from the
    same resampled examples for both models (a paired bootstrap). ``relative=True`` adds
    ``"relative"``: tuned / base - 1 (for a perplexity: +0.05 = 5% higher), from the same resamples.

    base, tuned: per-example values (kind "mean") or (nll, n_tokens) pairs (kind "ppl")."""
    import numpy as np
    b, t = np.asarray(base, dtype=float), np.asarray(tuned, dtype=float)
    if b.shape != t.shape or len(b) == 0:
        raise EvalError(f"bootstrap needs the same non-zero number of base and tuned values ({b.shape} vs {t.shape})")
    out = {"base": {"value": float(_stat(b, kind))}, "tuned": {"value": float(_stat(t, kind))}}
    out["diff"] = {"value": out["tuned"]["value"] - out["base"]["value"]}
    if relative:
        if out["base"]["value"] <= 0:
            raise EvalError("a relative change needs a positive base value")
        out["relative"] = {"value": out["tuned"]["value"] / out["base"]["value"] - 1}
    if n_boot:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, len(b), size=(n_boot, len(b)))
        sb, st = _stat(b[idx], kind), _stat(t[idx], kind)
        arrays = [("base", sb), ("tuned", st), ("diff", st - sb)]
        if relative:
            arrays.append(("relative", st / np.where(sb > 0, sb, np.nan) - 1))
        for name, arr in arrays:
            lo, hi = np.nanquantile(arr, [alpha / 2, 1 - alpha / 2])
            out[name]["ci"] = [float(lo), float(hi)]
    return out


def verdict(diff: dict, higher_is_better: bool | None) -> str:
    """What a difference's interval supports: "tuned better", "base better" or "no clear difference"."""
    ci = diff.get("ci")
    if higher_is_better is None:
        return "longer" if ci and ci[0] > 0 else ("shorter" if ci and ci[1] < 0 else "no clear difference")
    if not ci:
        return "no interval"
    if ci[0] > 0 or ci[1] < 0:
        up = ci[0] > 0
        return "tuned better" if up == higher_is_better else "base better"
    return "no clear difference"


def compare_models(cfg: EvalConfig, per: dict[str, dict[str, list]], table: dict | None = None) -> dict[str, dict]:
    """Each metric of ``table`` (METRICS) for base, tuned and tuned - base with paired bootstrap
    intervals, and its verdict; perplexity also as a relative change."""
    metrics = {}
    for name, (label, hib) in (table or METRICS).items():
        if name == "perplexity":
            bs = paired_bootstrap(per["base"]["ppl_pairs"], per["tuned"]["ppl_pairs"], "ppl", cfg.bootstrap, cfg.seed,
                                  relative=True)
        else:
            bs = paired_bootstrap(per["base"][name], per["tuned"][name], "mean", cfg.bootstrap, cfg.seed)
        metrics[name] = {"label": label, "higher_is_better": hib, **bs, "verdict": verdict(bs["diff"], hib)}
    return metrics
