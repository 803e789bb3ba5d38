"""Loss curves as PNG, and the figure plumbing the evaluation and sweep plots share.

* ``plot_losses`` / ``plot_overlay``: loss curves of one run or several (notebooks 03, 04, 07);
* ``figure()`` / ``save()``: matplotlib without a display, and a figure written and closed.

``log_history`` is the list of dicts a Hugging Face trainer keeps (``trainer.state.log_history``,
saved by ``helpers.train.loop`` as ``log_history.json``): lines with ``loss`` (train), lines with
``eval_loss``, each with ``step`` and ``epoch``. matplotlib is imported when a plot is drawn.
"""
from __future__ import annotations

import json
from pathlib import Path

# One colour per model in every figure of the kit: base grey, tuned blue,
# the references green; the retrieval variants are the lighter shades of their model's colour.
MODEL_COLORS = {"base": "#8c8c8c", "tuned": "#1f77b4", "reference": "#2ca02c",
                "base + passages": "#c7c7c7", "tuned + passages": "#aec7e8"}


def model_color(name: str) -> str:
    """The colour of model ``name`` ("base", "tuned", "reference", ...) in every plot (:data:`MODEL_COLORS`)."""
    return MODEL_COLORS.get(name, "#ff7f0e")


def integer_ticks(axis) -> None:
    """Whole-number ticks on a matplotlib axis that counts things (``ax.yaxis``): no "0.5 prompts"."""
    from matplotlib.ticker import MaxNLocator
    axis.set_major_locator(MaxNLocator(integer=True))


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
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return json.loads(path.read_text())


def figure_module():
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def save(fig, path: str | Path) -> Path:
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
    plt = figure_module()
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
    return save(fig, path)


def plot_overlay(curves: dict[str, list[dict]], path: str | Path, title: str, which: str = "train",
                 x: str = "step") -> Path | None:
    """Several runs' loss curves on one axis (``which``: "train" or "eval"; ``x``: "step" or "epoch")."""
    plt = figure_module()
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
    return save(fig, path)
