"""The sweep's figures (notebook 07): one figure per varied hyperparameter with every run's train and
validation loss overlaid, and per-epoch averages."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from helpers.common.plots import figure_module, loss_series, plot_overlay, save
from helpers.common.run import RunDir
from helpers.sweep.curves import per_epoch, run_label


def run_history(row: dict) -> list[dict]:
    """The log history saved in a sweep run's folder (``row["run_dir"]``); [] when it has none."""
    return RunDir(row["run_dir"]).history()


def value_key(encoded: str):
    """Sort hyperparameter values (JSON-encoded) numerically when they are numbers."""
    v = json.loads(encoded)
    return (0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0.0, encoded)


def plot_sweep(rows: list[dict], plots_dir: Path, prefix: str) -> list[Path]:
    """Overlay plots of a sweep's finished and pruned runs (``helpers.sweep.runner`` result rows): all
    runs' train and validation loss (``<prefix>_train_loss.png``, ``<prefix>_eval_loss.png``), one
    figure per varied hyperparameter (``<prefix>_<param>.png``: runs that differ only in it side
    by side), and per-epoch averages when runs span two epochs or more (``<prefix>_epochs.png``)."""
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
    return save(fig, path)


def _sweep_param_curves(runs: list[dict], hist: dict[str, list[dict]], param: str,
                        comparable: dict[str, list[dict]], prefix: str):
    """Up to six panels, one per group of runs that differ only in ``param``: their train and
    validation loss, one colour per value of ``param``."""
    plt = figure_module()
    shown = list(comparable.items())[:6]
    ncol = min(3, len(shown))
    nrow = math.ceil(len(shown) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.8 * nrow), dpi=110, squeeze=False)
    values = sorted({json.dumps(r["params"].get(param)) for r in runs}, key=value_key)
    colors = {v: (plt.cm.tab10(i) if len(values) <= 10 else plt.cm.viridis(i / max(1, len(values) - 1)))
              for i, v in enumerate(values)}
    for ax, (g, rs) in zip(axes.flat, shown):
        for r in sorted(rs, key=lambda x: value_key(json.dumps(x["params"].get(param)))):
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
    plt = figure_module()
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
    epochs = {r["name"]: r.get("per_epoch") or per_epoch(hist[r["name"]]) for r in runs}
    if max((len(e["epoch"]) for e in epochs.values()), default=0) < 2:
        return None
    plt = figure_module()
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
    return save(fig, path)
