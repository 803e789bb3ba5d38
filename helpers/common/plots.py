"""The kit's plots, each a PNG: loss curves, the evaluation report's, the sweep's.

* ``plot_losses`` / ``plot_overlay``: loss curves of one run or several (notebooks 03, 04);
* ``plot_report``: an evaluation report's metric bars and answer lengths, and its general
  (forgetting) section: base vs tuned on general prompts (notebook 05, ``helpers.evaluation.report``);
* ``plot_sweep``: a sweep's overlays, one figure per varied hyperparameter, per-epoch averages
  (notebook 07, ``helpers.sweep.runner``).

``log_history`` is the list of dicts a Hugging Face trainer keeps (``trainer.state.log_history``,
saved by ``helpers.train.loop`` as ``log_history.json``): lines with ``loss`` (train), lines with
``eval_loss``, each with ``step`` and ``epoch``. matplotlib is imported when a plot is drawn.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path


def loss_series(log_history: list[dict]) -> dict[str, list[tuple[float, float, float]]]:
    """``{"train": [(step, epoch, loss)], "eval": [...]}`` from a log history."""
    train, ev = [], []
    for h in log_history:
        step, epoch = h.get("step"), h.get("epoch")
        if step is None:
            continue
        if "loss" in h and h["loss"] is not None:
            train.append((step, epoch or 0.0, float(h["loss"])))
        if "eval_loss" in h:
            ev.append((step, epoch or 0.0, float(h["eval_loss"])))
    # a resumed run may log the same step twice: keep the last value of each step
    dedup = lambda xs: sorted({s: (s, e, v) for s, e, v in xs}.values())  # noqa: E731
    return {"train": dedup(train), "eval": dedup(ev)}


def load_history(path: str | Path) -> list[dict]:
    path = Path(path)
    if path.suffix == ".jsonl":
        return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    return json.loads(path.read_text())


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str | Path) -> Path:
    """Lay out, write (creating the folder) and close a figure."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_losses(log_history: list[dict], path: str | Path, title: str = "loss") -> Path | None:
    """Train and validation loss against optimizer step, with epochs on a second axis."""
    s = loss_series(log_history)
    if not s["train"] and not s["eval"]:
        print("No loss values logged yet: nothing to plot.")
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if s["train"]:
        ax.plot([x[0] for x in s["train"]], [x[2] for x in s["train"]], label="train loss", lw=1.4)
    if s["eval"]:
        ax.plot([x[0] for x in s["eval"]], [x[2] for x in s["eval"]], "o-", label="validation loss", lw=1.6)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean per trained token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    pts = s["train"] or s["eval"]
    if pts and pts[-1][1] and pts[-1][0]:
        ratio = pts[-1][1] / pts[-1][0]
        sec = ax.secondary_xaxis("top", functions=(lambda x: x * ratio, lambda e: e / ratio))
        sec.set_xlabel("epoch")
    return _save(fig, path)


def plot_overlay(curves: dict[str, list[dict]], path: str | Path, title: str, which: str = "train",
                 x: str = "step") -> Path | None:
    """Several runs' loss curves on one axis (``which``: "train" or "eval"; ``x``: "step" or "epoch")."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    drawn = 0
    for label, hist in curves.items():
        pts = loss_series(hist)[which]
        if not pts:
            continue
        xi = 0 if x == "step" else 1
        ax.plot([p[xi] for p in pts], [p[2] for p in pts], ("o-" if which == "eval" else "-"), label=label, lw=1.4)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("optimizer step" if x == "step" else "epoch")
    ax.set_ylabel(("validation" if which == "eval" else "train") + " loss (per token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------
# Evaluation report (notebook 05)
# ----------------------------------------------------------------------------------------------
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
        ["repeated\n3-grams", "repeated\nwords", "glued\nwords", "stopped at\nend of turn", "ROUGE-L"], "#d62728", 8)
    ax1.set_ylabel("mean over general prompts")
    ax1.set_title(f"general prompts ({general['n_examples']}): {general['held']['outcome']}", fontsize=10)
    rel = m["perplexity"].get("relative", {})
    ax2.set_title(f"general perplexity ↓\n{rel.get('value', 0):+.1%}" + (
        f" [{rel['ci'][0]:+.1%}, {rel['ci'][1]:+.1%}]" if "ci" in rel else ""), fontsize=9)
    return _save(fig, path)


def _base_tuned_figure(m: dict, names: list[str], labels: list[str], tuned_color: str, fontsize=None):
    """The base/tuned figure of the evaluation report and the forgetting check: the metrics ``names``
    as paired bars with 95% CI error bars (left, ticks ``labels``), perplexity (right). Returns
    (figure, left axes, right axes) for the caller's titles."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), dpi=110, gridspec_kw={"width_ratios": [4, 1]})
    w = 0.38
    for k, (which, color) in enumerate((("base", "#8c8c8c"), ("tuned", tuned_color))):
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
                                       ["ROUGE-1", "ROUGE-2", "ROUGE-L", "stopped", "copies"], "#1f77b4")
    ax1.set_ylabel("mean over held-out prompts")
    ax1.set_title(f"base vs tuned, {report['n_examples']} prompts (95% CI)")
    ax2.set_title("reference perplexity ↓")
    return _save(fig, path)


def _plot_eval_lengths(per: dict, refs: list[str], path: Path) -> Path:
    """Histogram of answer lengths in words: base, tuned and the references."""
    from helpers.evaluation.report import words
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    data = [per["base"]["answer_words"], per["tuned"]["answer_words"], [len(words(r)) for r in refs]]
    top = max(1, max(max(d) if d else 0 for d in data))
    bins = list(range(0, top + 2, max(1, (top + 1) // 25)))
    ax.hist(data, bins=bins, label=["base", "tuned", "reference"], color=["#8c8c8c", "#1f77b4", "#2ca02c"])
    ax.set_xlabel("answer length (words)")
    ax.set_ylabel("prompts")
    ax.set_title("answer length: base, tuned and the references")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------
# Sweep (notebook 07)
# ----------------------------------------------------------------------------------------------
def run_history(row: dict) -> list[dict]:
    """The log history saved in a sweep run's folder (``row["run_dir"]``); [] when it has none."""
    from helpers.common.run import RunDir
    return RunDir(row["run_dir"]).history()


def _value_key(encoded: str):
    """Sort hyperparameter values (JSON-encoded) numerically when they are numbers."""
    v = json.loads(encoded)
    return (0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0.0, encoded)


def plot_sweep(rows: list[dict], plots_dir: Path, prefix: str) -> list[Path]:
    """Overlay plots of a sweep's finished and pruned runs (``helpers.sweep.runner`` result rows): all
    runs' train and validation loss (``<prefix>_train_loss.png``, ``<prefix>_eval_loss.png``), one
    figure per varied hyperparameter (``<prefix>_<param>.png``: runs that differ only in it side
    by side), and per-epoch averages when runs span two epochs or more (``<prefix>_epochs.png``)."""
    from helpers.sweep.runner import run_label
    runs = [r for r in rows if r.get("status") in ("done", "pruned")]
    if not runs:
        return []
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    hist = {r["name"]: run_history(r) for r in runs}
    label = {r["name"]: run_label(r["params"]) + (" (pruned)" if r["status"] == "pruned" else "") for r in runs}
    written: list[Path] = []
    for which in ("train", "eval"):
        p = plot_overlay({label[r["name"]]: hist[r["name"]] for r in runs}, plots_dir / f"{prefix}_{which}_loss.png",
                         title=f"{prefix}: {'train' if which == 'train' else 'validation'} loss, all runs", which=which)
        if p:
            written.append(p)
    varied = _varied_params(runs)
    for param in varied:
        path = plots_dir / f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', param)}.png"
        written.append(_plot_sweep_param(runs, hist, param, varied, path, prefix))
    p = _plot_sweep_epochs(runs, hist, label, plots_dir / f"{prefix}_epochs.png", prefix)
    if p:
        written.append(p)
    return written


def _varied_params(runs: list[dict]) -> list[str]:
    """The hyperparameters that take more than one value across the runs, in first-seen order."""
    keys: list[str] = []
    for r in runs:
        for k in r["params"]:
            if k not in keys:
                keys.append(k)
    return [k for k in keys if len({json.dumps(r["params"].get(k)) for r in runs}) > 1]


def _plot_sweep_param(runs: list[dict], hist: dict[str, list[dict]], param: str, varied: list[str],
                      path: Path, prefix: str) -> Path:
    """The effect of one hyperparameter: loss curves of runs that differ only in it (one panel per
    setting of the other varied ones), or, when no two runs do (random search, explicit runs),
    final validation loss against its value."""
    from helpers.sweep.runner import run_label
    others = [k for k in varied if k != param]
    groups: dict[str, list[dict]] = {}
    for r in runs:
        g = run_label({o: r["params"].get(o) for o in others}) or "all runs"
        groups.setdefault(g, []).append(r)
    comparable = {g: rs for g, rs in groups.items() if len({json.dumps(x["params"].get(param)) for x in rs}) > 1}
    if comparable:
        fig = _sweep_param_curves(runs, hist, param, comparable, prefix)
    else:
        fig = _sweep_param_scatter(runs, param, prefix)
    return _save(fig, path)


def _sweep_param_curves(runs: list[dict], hist: dict[str, list[dict]], param: str,
                        comparable: dict[str, list[dict]], prefix: str):
    """Up to six panels, one per group of runs that differ only in ``param``: their train and
    validation loss, one colour per value of ``param``."""
    from helpers.sweep.runner import run_label
    plt = _plt()
    shown = list(comparable.items())[:6]
    ncol = min(3, len(shown))
    nrow = math.ceil(len(shown) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.8 * nrow), dpi=110, squeeze=False)
    values = sorted({json.dumps(r["params"].get(param)) for r in runs}, key=_value_key)
    colors = {v: (plt.cm.tab10(i) if len(values) <= 10 else plt.cm.viridis(i / max(1, len(values) - 1)))
              for i, v in enumerate(values)}
    for ax, (g, rs) in zip(axes.flat, shown):
        for r in sorted(rs, key=lambda x: _value_key(json.dumps(x["params"].get(param)))):
            s = loss_series(hist[r["name"]])
            c = colors[json.dumps(r["params"].get(param))]
            lab = run_label({param: r["params"].get(param)}) + (" (pruned)" if r["status"] == "pruned" else "")
            if s["train"]:
                ax.plot([p[0] for p in s["train"]], [p[2] for p in s["train"]], "-", color=c, lw=1.0,
                        alpha=0.55, label=f"{lab} train")
            if s["eval"]:
                ax.plot([p[0] for p in s["eval"]], [p[2] for p in s["eval"]], "o--", color=c, lw=1.8,
                        ms=3.5, label=f"{lab} validation")
        ax.set_title(g, fontsize=9)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss (per trained token)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    more = f" ({len(comparable) - len(shown)} more groups not shown)" if len(comparable) > len(shown) else ""
    fig.suptitle(f"{prefix}: effect of {param}{more}", fontsize=11)
    return fig


def _sweep_param_scatter(runs: list[dict], param: str, prefix: str):
    """Final validation loss of each run against its value of ``param`` (done and pruned runs
    marked apart; a log axis when numbers span 20x or more)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for status, marker in (("done", "o"), ("pruned", "x")):
        pts = [(r["params"].get(param), r.get("eval_loss")) for r in runs if r["status"] == status
               and isinstance(r.get("eval_loss"), (int, float))]
        pts = [(x, y) for x, y in pts if isinstance(x, (int, float)) and not isinstance(x, bool)] or \
              [(str(x), y) for x, y in pts]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker, ls="", label=status, ms=6)
    nums = [r["params"].get(param) for r in runs if isinstance(r["params"].get(param), (int, float))]
    if nums and min(nums) > 0 and max(nums) / min(nums) >= 20:
        ax.set_xscale("log")
    ax.set_xlabel(param)
    ax.set_ylabel("final validation loss (per token)")
    ax.set_title(f"{prefix}: validation loss against {param}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _plot_sweep_epochs(runs: list[dict], hist: dict[str, list[dict]], label: dict[str, str], path: Path,
                       prefix: str) -> Path | None:
    """Per-epoch average train loss and end-of-epoch validation loss of every run; None when no
    run spans two epochs."""
    from helpers.sweep.runner import per_epoch
    epochs = {r["name"]: r.get("per_epoch") or per_epoch(hist[r["name"]]) for r in runs}
    if max((len(e["epoch"]) for e in epochs.values()), default=0) < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for i, r in enumerate(runs):
        e = epochs[r["name"]]
        c = plt.cm.tab10(i % 10)
        ax.plot(e["epoch"], e["train"], "o-", color=c, label=f"{label[r['name']]} train (mean)")
        if any(v is not None for v in e["eval"]):
            ax.plot(e["epoch"], e["eval"], "s--", color=c, label=f"{label[r['name']]} validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (per trained token)")
    ax.set_title(f"{prefix}: per-epoch average train loss and end-of-epoch validation loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)
