"""Loss plots from a trainer's log history."""
from helpers.common.plots import loss_series, plot_losses, plot_overlay

HIST = [{"loss": 3.0, "step": 1, "epoch": 0.1}, {"loss": 2.5, "step": 2, "epoch": 0.2},
        {"eval_loss": 2.7, "step": 2, "epoch": 0.2}, {"loss": 2.2, "step": 3, "epoch": 0.3},
        {"loss": 2.1, "step": 3, "epoch": 0.3},  # a resumed run logs step 3 again
        {"train_runtime": 1.0, "step": 3}]


def test_series_dedups_steps_and_splits_train_eval():
    s = loss_series(HIST)
    assert [p[0] for p in s["train"]] == [1, 2, 3] and s["train"][-1][2] == 2.1
    assert s["eval"] == [(2, 0.2, 2.7)]


def test_plots_are_real_pngs(tmp_path):
    p = plot_losses(HIST, tmp_path / "a" / "loss.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    q = plot_overlay({"lr=1e-4": HIST, "lr=2e-4": HIST}, tmp_path / "o.png", "overlay")
    assert q.exists()
    assert plot_losses([{"step": 1, "train_runtime": 2}], tmp_path / "none.png") is None



def test_matplotlib_is_imported_only_when_a_plot_is_drawn():
    import subprocess
    import sys
    code = ("import sys, helpers.common.plots, helpers.sweep.runner, helpers.evaluation.report, helpers.chat.export; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported at import time'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_each_model_has_one_colour_and_counts_get_whole_ticks():
    from helpers.common.plots import MODEL_COLORS, figure_module, integer_ticks, model_color
    assert model_color("base") == MODEL_COLORS["base"] != model_color("tuned") != model_color("reference")
    assert len(set(MODEL_COLORS.values())) == len(MODEL_COLORS)  # no two models share a colour
    plt = figure_module()
    fig, ax = plt.subplots()
    ax.hist([[3, 5], [4]], bins=[0, 2, 4, 6])  # counts of 0 and 1: matplotlib's own ticks step by 0.2
    fig.canvas.draw()
    assert any(t % 1 for t in ax.get_yticks())
    integer_ticks(ax.yaxis)
    fig.canvas.draw()
    assert all(t % 1 == 0 for t in ax.get_yticks())
    plt.close(fig)
