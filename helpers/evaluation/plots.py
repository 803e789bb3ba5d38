"""The evaluation report's figures (notebook 05): metric bars with 95% CI, answer lengths, and the
general-ability (forgetting) section, base against tuned."""
from __future__ import annotations

from pathlib import Path

from helpers.common.plots import figure_module, integer_ticks, model_color, save
from helpers.evaluation.metrics import words


def plot_report(report: dict, per: dict, refs: list[str], plots_dir: Path, prefix: str = "eval_") -> list[Path]:
    """The plots of an evaluation report (``helpers.evaluation.report``), those written: ``<prefix>metrics.png``,
    metric bars with 95% CI error bars, ``<prefix>lengths.png``, the answer-length histogram, and,
    when the report has a general section, ``<prefix>general.png`` (``plot_general``).

    ``per``: the per-example values of each model (``per["base"]["answer_words"]``, ...);
    ``refs``: the reference answers."""
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    p1 = _plot_eval_metrics(report, plots_dir / f"{prefix}metrics.png")
    p2 = _plot_eval_lengths(per, refs, plots_dir / f"{prefix}lengths.png")
    general = report.get("general") or {}
    p3 = plot_general(general, plots_dir / f"{prefix}general.png") if "metrics" in general else None
    return [p for p in (p1, p2, p3) if p is not None]


def plot_general(general: dict, path: Path) -> Path:
    """The forgetting check: base and tuned on the general prompts with 95% CI error bars: the
    degeneration figures and ROUGE-L (left), general perplexity (right); the title carries the
    verdict ("held", "forgot", "unclear") and the relative perplexity change."""
    m = general["metrics"]
    fig, ax1, ax2 = _base_tuned_figure(
        m, ["repeated_3grams", "repeated_words", "glued_words", "stop_rate", "rougeL"],
        ["repeated\n3-grams", "repeated\nwords", "glued\nwords", "stopped at\nend of turn", "ROUGE-L"], 8)
    ax1.set_ylabel("mean over general prompts")
    ax1.set_title(f"general prompts ({general['n_examples']}): {general['held']['outcome']}", fontsize=10)
    rel = m["perplexity"].get("relative", {})
    ax2.set_title(f"general perplexity ↓\n{rel.get('value', 0):+.1%}" + (
        f" [{rel['ci'][0]:+.1%}, {rel['ci'][1]:+.1%}]" if "ci" in rel else ""), fontsize=9)
    return save(fig, path)


def _base_tuned_figure(m: dict, names: list[str], labels: list[str], fontsize=None):
    """The base/tuned figure of the evaluation report and the forgetting check: the metrics ``names``
    as paired bars with 95% CI error bars (left, ticks ``labels``), perplexity (right). Returns
    (figure, left axes, right axes) for the caller's titles."""
    plt = figure_module()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), dpi=110, gridspec_kw={"width_ratios": [4, 1]})
    w = 0.38
    for k, which in enumerate(("base", "tuned")):
        color = model_color(which)  # the same colour for a model in every figure
        _paired_bars(ax1, m, names, which, k, w, color)
        lo, hi = _error_bar(m["perplexity"][which])
        ax2.bar([(k - 0.5) * w], [m["perplexity"][which]["value"]], w, yerr=[[lo], [hi]], capsize=3, color=color)
    ax1.set_xticks(range(len(names)), labels, fontsize=fontsize)
    ax1.legend()
    ax1.grid(axis="y", alpha=0.3)
    ax2.set_xticks([-w / 2, w / 2], ["base", "tuned"])
    ax2.grid(axis="y", alpha=0.3)
    return fig, ax1, ax2


def _paired_bars(ax, m: dict, names: list[str], which: str, k: int, w: float, color: str) -> None:
    """One model's bars (``which``: base or tuned, ``k``: its slot 0 or 1) for the metrics ``names``,
    with their 95% CI error bars."""
    bars = [_error_bar(m[n][which]) for n in names]
    ax.bar([i + (k - 0.5) * w for i in range(len(names))], [m[n][which]["value"] for n in names], w,
           yerr=[[b[0] for b in bars], [b[1] for b in bars]], capsize=3, label=which, color=color)


def _error_bar(d: dict) -> tuple[float, float]:
    """Below and above a value to the ends of its interval (0, 0 without one)."""
    v = d["value"]
    lo, hi = d.get("ci", [v, v])
    return max(0.0, v - lo), max(0.0, hi - v)


def _plot_eval_metrics(report: dict, path: Path) -> Path:
    """Base and tuned side by side: ROUGE, stop and copy rates (left), reference perplexity (right)."""
    fig, ax1, ax2 = _base_tuned_figure(report["metrics"], ["rouge1", "rouge2", "rougeL", "stop_rate", "copy_rate"],
                                       ["ROUGE-1", "ROUGE-2", "ROUGE-L", "stopped", "copies"])
    ax1.set_ylabel("mean over held-out prompts")
    ax1.set_title(f"base vs tuned, {report['n_examples']} prompts (95% CI)")
    ax2.set_title("reference perplexity ↓")
    return save(fig, path)


def _plot_eval_lengths(per: dict, refs: list[str], path: Path) -> Path:
    """Histogram of answer lengths in words: base, tuned and the references."""
    plt = figure_module()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    data = [per["base"]["answer_words"], per["tuned"]["answer_words"], [len(words(r)) for r in refs]]
    top = max(1, max(max(d) if d else 0 for d in data))
    bins = list(range(0, top + 2, max(1, (top + 1) // 25)))
    names = ["base", "tuned", "reference"]
    ax.hist(data, bins=bins, label=names, color=[model_color(n) for n in names])
    integer_ticks(ax.yaxis)  # a count of prompts
    ax.set_xlabel("answer length (words)")
    ax.set_ylabel("prompts")
    ax.set_title("answer length: base, tuned and the references")
    ax.legend()
    ax.grid(alpha=0.3)
    return save(fig, path)
