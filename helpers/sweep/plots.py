"""The sweep's figures (notebook 07): every run's train and validation loss overlaid, one figure per
varied hyperparameter, per-epoch averages, and Optuna's optimisation history and parameter
importances; one colour per trial across every figure."""
from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

from helpers.common.plots import figure_module, loss_series, save
from helpers.common.run import RunDir
from helpers.sweep.curves import per_epoch, run_label


def run_history(row: dict) -> list[dict]:
    """The log history saved in a sweep run's folder (``row["run_dir"]``); [] when it has none."""
    return RunDir(row["run_dir"]).history() if row.get("run_dir") else []


def value_key(encoded: str):
    """Sort hyperparameter values (JSON-encoded) numerically when they are numbers."""
    v = json.loads(encoded)
    return (0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0.0, encoded)


def trial_colors(rows: list[dict]) -> dict[int, tuple]:
    """``{trial: colour}``: one colour per trial (in trial order), the same in every figure."""
    plt = figure_module()
    trials = sorted({r["trial"] for r in rows})
    cmap = plt.cm.tab10 if len(trials) <= 10 else plt.cm.tab20 if len(trials) <= 20 else None
    return {t: (cmap(i) if cmap else plt.cm.viridis(i / max(1, len(trials) - 1))) for i, t in enumerate(trials)}


def _label(r: dict, params: dict | None = None) -> str:
    label = f"trial {r['trial']}: {run_label(r['params'] if params is None else params)}"
    if r["status"] == "pruned":
        label += f" (pruned at step {r['steps']})" if r.get("steps") else " (pruned)"
    return label


def _line(ax, pts: list, color, label: str, which: str, layer: tuple[int, int] = (0, 1), pruned: bool = False) -> bool:
    """One run's curve. ``layer`` = (its place, how many runs share the axes): the first is drawn
    widest and each later one narrower on top, so runs with the same losses (a pruned run that
    never moved) stay visible under each other; a pruned run's markers are hollow, and a run with
    one or two points (pruned early) always has markers."""
    if not pts:
        return False
    k, n = layer
    scale = 1.0 + 1.5 * (n - 1 - k) / max(1, n - 1)
    marked = which == "eval" or len(pts) <= 2
    ax.plot([p[0] for p in pts], [p[2] for p in pts], "--" if which == "eval" else "-", color=color, label=label,
            lw=(1.2 if which == "eval" else 0.9) * scale, marker="o" if marked else None, ms=3.5 * scale,
            mfc="white" if pruned else color, mew=1.2, alpha=1.0 if which == "eval" else 0.8, zorder=2 + k)
    return True


def _steps_axis(ax) -> None:
    """Optimizer steps are whole numbers: no 0.5 or 1.25 ticks."""
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_sweep(rows: list[dict], plots_dir: Path, prefix: str) -> list[Path]:
    """Overlay plots of a sweep's finished and pruned runs (``results.study_rows``): all runs' train
    and validation loss (``<prefix>_train_loss.png``, ``<prefix>_eval_loss.png``), one figure per
    varied hyperparameter (``<prefix>_<param>.png``: runs that differ only in it side by side),
    and per-epoch averages when runs span two epochs or more (``<prefix>_epochs.png``)."""
    runs = [r for r in rows if r.get("status") in ("done", "pruned")]
    if not runs:
        return []
    plots_dir = Path(plots_dir)
    hist = {r["trial"]: run_history(r) for r in runs}
    colors = trial_colors(rows)
    written: list[Path] = []
    for which in ("train", "eval"):
        p = _overlay(runs, hist, colors, which, plots_dir / f"{prefix}_{which}_loss.png",
                     f"{prefix}: {'train' if which == 'train' else 'validation'} loss, all runs")
        if p:
            written.append(p)
    varied = _varied_params(runs)
    for param in varied:
        path = plots_dir / f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', param)}.png"
        written.append(_plot_sweep_param(runs, hist, colors, param, varied, path, prefix))
    p = _plot_sweep_epochs(runs, hist, colors, plots_dir / f"{prefix}_epochs.png", prefix)
    if p:
        written.append(p)
    return written


def _overlay(runs: list[dict], hist: dict, colors: dict, which: str, path: Path, title: str) -> Path | None:
    plt = figure_module()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    drawn = [_line(ax, loss_series(hist[r["trial"]])[which], colors[r["trial"]], _label(r), which, (k, len(runs)),
                   r["status"] == "pruned") for k, r in enumerate(runs)]
    if not any(drawn):
        plt.close(fig)
        return None
    ax.set_xlabel("optimizer step")
    _steps_axis(ax)
    ax.set_ylabel(("validation" if which == "eval" else "train") + " loss (per token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)


def _varied_params(runs: list[dict]) -> list[str]:
    """The hyperparameters that take more than one value across the runs, in first-seen order."""
    keys: list[str] = []
    for r in runs:
        keys += [k for k in r["params"] if k not in keys]
    return [k for k in keys if len({json.dumps(r["params"].get(k)) for r in runs}) > 1]


def _plot_sweep_param(runs: list[dict], hist: dict, colors: dict, param: str, varied: list[str], path: Path,
                      prefix: str) -> Path:
    """The effect of one hyperparameter: loss curves of runs that differ only in it (one panel per
    setting of the other varied ones), or, when no two runs do (random search, explicit runs),
    final validation loss against its value."""
    others = [k for k in varied if k != param]
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(run_label({o: r["params"].get(o) for o in others}) or "all runs", []).append(r)
    comparable = {g: rs for g, rs in groups.items() if len({json.dumps(x["params"].get(param)) for x in rs}) > 1}
    if comparable:
        return save(_sweep_param_curves(hist, colors, param, comparable, prefix), path)
    return save(_sweep_param_scatter(runs, colors, param, prefix), path)


def _sweep_param_curves(hist: dict, colors: dict, param: str, comparable: dict[str, list[dict]], prefix: str):
    """Up to six panels, one per group of runs that differ only in ``param``: their train (thin)
    and validation (dots) loss, each run in its trial's colour."""
    plt = figure_module()
    shown = list(comparable.items())[:6]
    ncol = min(3, len(shown))
    nrow = math.ceil(len(shown) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.8 * nrow), dpi=110, squeeze=False)
    for ax, (g, rs) in zip(axes.flat, shown):
        for k, r in enumerate(sorted(rs, key=lambda x: value_key(json.dumps(x["params"].get(param))))):
            s = loss_series(hist[r["trial"]])
            lab, how = _label(r, {param: r["params"].get(param)}), ((k, len(rs)), r["status"] == "pruned")
            _line(ax, s["train"], colors[r["trial"]], f"{lab} train", "train", *how)
            _line(ax, s["eval"], colors[r["trial"]], f"{lab} validation", "eval", *how)
        ax.set_title(g, fontsize=9)
        ax.set_xlabel("optimizer step")
        _steps_axis(ax)
        ax.set_ylabel("loss (per trained token)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    more = f" ({len(comparable) - len(shown)} more groups not shown)" if len(comparable) > len(shown) else ""
    fig.suptitle(f"{prefix}: effect of {param}{more}", fontsize=11)
    return fig


def _sweep_param_scatter(runs: list[dict], colors: dict, param: str, prefix: str):
    """Final validation loss of each run against its value of ``param`` (pruned runs as crosses; a
    log axis when numbers span 20x or more), each in its trial's colour."""
    plt = figure_module()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for r in runs:
        x, y = r["params"].get(param), r.get("eval_loss")
        if not isinstance(y, (int, float)):
            continue
        x = x if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)
        ax.plot([x], [y], "x" if r["status"] == "pruned" else "o", ls="", color=colors[r["trial"]], ms=7,
                label=_label(r))
    nums = [r["params"].get(param) for r in runs if isinstance(r["params"].get(param), (int, float))]
    if nums and min(nums) > 0 and max(nums) / min(nums) >= 20:
        ax.set_xscale("log")
    ax.set_xlabel(param)
    ax.set_ylabel("final validation loss (per token)")
    ax.set_title(f"{prefix}: validation loss against {param}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def _plot_sweep_epochs(runs: list[dict], hist: dict, colors: dict, path: Path, prefix: str) -> Path | None:
    """Per-epoch average train loss and end-of-epoch validation loss of every run; None when no
    run spans two epochs."""
    epochs = {r["trial"]: r.get("per_epoch") or per_epoch(hist[r["trial"]]) for r in runs}
    if max((len(e["epoch"]) for e in epochs.values()), default=0) < 2:
        return None
    plt = figure_module()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for r in runs:
        e, c = epochs[r["trial"]], colors[r["trial"]]
        ax.plot(e["epoch"], e["train"], "o-", color=c, label=f"{_label(r)} train (mean)")
        if any(v is not None for v in e["eval"]):
            ax.plot(e["epoch"], e["eval"], "s--", color=c, label=f"{_label(r)} validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (per trained token)")
    ax.set_title(f"{prefix}: per-epoch average train loss and end-of-epoch validation loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)


def plot_optuna(study, plots_dir: Path, prefix: str, log=print) -> list[Path]:
    """Optuna's optimisation history (``<prefix>_history.png``) and parameter importances
    (``<prefix>_importance.png``, when at least two runs finished with different values), drawn
    with its matplotlib backend; for a random, tpe or explicit search (a grid shows its effects in
    the overlay figures)."""
    figure_module()
    import optuna
    from optuna.visualization import matplotlib as ovm
    written = []
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    for name, draw in (("history", ovm.plot_optimization_history), ("importance", ovm.plot_param_importances)):
        if not done or (name == "importance" and len(done) < 2):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = draw(study)
            except (RuntimeError, ValueError) as exc:  # e.g. every finished run had the same values
                log(f"No {name} plot: {exc}")
                continue
        ax = ax[0] if hasattr(ax, "__len__") else ax
        ax.set_title(f"{prefix}: " + ("validation loss by trial" if name == "history" else
                                      "hyperparameter importance (fANOVA)"))
        written.append(save(ax.figure, Path(plots_dir) / f"{prefix}_{name}.png"))
    return written
