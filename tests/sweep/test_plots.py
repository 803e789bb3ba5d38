"""The sweep's plots: loss curves overlaid, one figure per varied hyperparameter, one colour per trial
across every figure, and Optuna's history and importance plots from a real study."""
from pathlib import Path


def _sweep_rows(tmp_path, grid=True):
    """Result rows as helpers.sweep.runner writes them, each run folder with a real log history (JSON or
    JSONL, as a trainer writes it), three epochs of ten steps; one run pruned, one failed."""
    import json
    specs = [(2e-4, 8), (2e-4, 16), (5e-4, 8), (5e-4, 16)] if grid else [(1e-4, 8), (3e-4, 4), (2e-3, 16)]
    rows = []
    for i, (lr, r) in enumerate(specs):
        run = tmp_path / ("grid" if grid else "rand") / f"run{i}"
        run.mkdir(parents=True)
        pruned = grid and i == 3
        hist = []
        for s in range(1, 13 if pruned else 31):
            hist.append({"loss": 3.0 - lr * 1000 * s / 30 - r * 0.01, "step": s, "epoch": s / 10})
            if s % 5 == 0:
                hist.append({"eval_loss": 3.1 - lr * 900 * s / 30 - r * 0.012, "step": s, "epoch": s / 10})
        if i % 2:
            (run / "log_history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in hist))
        else:
            (run / "log_history.json").write_text(json.dumps(hist))
        params = {"learning_rate": lr, "lora_r": r} if grid else {"learning_rate": lr, "lora_r": r, "use_x": i == 1}
        rows.append({"trial": i, "name": f"run{i}", "run_dir": str(run), "status": "pruned" if pruned else "done",
                     "params": params, "eval_loss": hist[-1].get("eval_loss", 2.5)})
    rows.append({"trial": 9, "name": "failed", "run_dir": str(tmp_path / "gone"), "status": "failed",
                 "params": {"learning_rate": 1.0}})
    return rows


def test_run_history_reads_json_or_jsonl_and_nothing_when_missing(tmp_path):
    from helpers.sweep.plots import run_history
    rows = _sweep_rows(tmp_path)
    assert run_history(rows[0])[0] == {"loss": 3.0 - 0.2 / 30 - 0.08, "step": 1, "epoch": 0.1}  # .json
    assert len(run_history(rows[1])) == 36  # .jsonl: 30 train lines and 6 eval lines
    assert run_history(rows[-1]) == []

def test_plot_sweep_grid_and_random_search(tmp_path):
    from helpers.sweep.plots import plot_sweep
    grid = plot_sweep(_sweep_rows(tmp_path), tmp_path / "plots", "g")
    # overlays, one figure per varied hyperparameter (runs differing only in it), per-epoch averages
    assert [p.name for p in grid] == ["g_train_loss.png", "g_eval_loss.png", "g_learning_rate.png", "g_lora_r.png",
                                      "g_epochs.png"]
    rand = plot_sweep(_sweep_rows(tmp_path, grid=False), tmp_path / "plots", "r")
    # no two runs differ in one hyperparameter only: final validation loss against each value
    assert [p.name for p in rand] == ["r_train_loss.png", "r_eval_loss.png", "r_learning_rate.png", "r_lora_r.png",
                                      "r_use_x.png", "r_epochs.png"]
    for p in grid + rand:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000, p
    assert plot_sweep([{"trial": 0, "name": "x", "status": "failed", "params": {}}], tmp_path / "none", "n") == []
    assert not (tmp_path / "none").exists()


def test_value_key_sorts_numbers_as_numbers_then_the_rest_by_their_json():
    import json
    from helpers.sweep.plots import value_key
    vals = [json.dumps(v) for v in (1e-3, 2e-4, 5e-5, "cosine", True)]
    assert [json.loads(v) for v in sorted(vals, key=value_key)] == [5e-5, 2e-4, 1e-3, "cosine", True]


def test_one_colour_per_trial_in_trial_order_and_the_same_in_every_figure(tmp_path):
    import matplotlib.pyplot as plt
    from helpers.sweep import plots
    rows = _sweep_rows(tmp_path)
    colors = plots.trial_colors(rows)
    assert list(colors) == [0, 1, 2, 3, 9] and len(set(colors.values())) == 5
    assert plots.trial_colors(list(reversed(rows))) == colors  # by trial, not by order of arrival
    drawn = {}
    real_save = plots.save

    def keep_colours(fig, path):  # read back each line's colour and label before the figure is written
        for ax in fig.axes:
            for line in ax.get_lines():
                drawn.setdefault(line.get_label().split(":")[0], set()).add(tuple(line.get_color()))
        return real_save(fig, path)

    plots.save = keep_colours
    try:
        plots.plot_sweep(rows, tmp_path / "plots", "g")
    finally:
        plots.save = real_save
    for t in range(4):
        assert drawn[f"trial {t}"] == {tuple(colors[t])}, t  # one colour per trial across every figure
    pruned = [ln for ln in drawn if ln.startswith("trial 3")]
    assert pruned  # the pruned run is drawn, not only listed in a legend
    plt.close("all")


def test_optuna_history_and_importance_plots_from_a_real_study(tmp_path):
    import optuna
    from helpers.sweep.plots import plot_optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: (t.suggest_float("learning_rate", 1e-5, 1e-3, log=True) * 1e3 - 0.3) ** 2
                   + t.suggest_int("lora_r", 4, 32) * 1e-3, n_trials=12)
    paths = plot_optuna(study, tmp_path, "s")
    assert [p.name for p in paths] == ["s_history.png", "s_importance.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    assert plot_optuna(optuna.create_study(), tmp_path / "empty", "e") == []


def test_runs_with_the_same_losses_stay_visible_and_pruned_runs_say_where_they_stopped(tmp_path):
    """Two pruned runs that never moved have the same curve: each later run is drawn narrower on top,
    so both show; a pruned run's legend says its last step and its markers are hollow; steps are
    whole numbers on the axis."""
    import json
    from helpers.sweep import plots
    rows = []
    for i, lr in enumerate((3e-3, 1e-5, 2e-5)):
        run = tmp_path / f"run{i}"
        run.mkdir()
        steps = 3 if i == 0 else 1
        hist = [{"eval_loss": 4.23, "step": 0, "epoch": 0.0}]
        for s in range(1, steps + 1):
            hist += [{"loss": 4.4 - (0.3 * s if i == 0 else 0), "step": s, "epoch": s / 6},
                     {"eval_loss": 4.23 - (0.1 * s if i == 0 else 0), "step": s, "epoch": s / 6}]
        (run / "log_history.json").write_text(json.dumps(hist))
        rows.append({"trial": i, "name": f"run{i}", "run_dir": str(run), "status": "done" if i == 0 else "pruned",
                     "steps": steps, "params": {"learning_rate": lr}, "eval_loss": hist[-1]["eval_loss"]})
    seen = {}
    real_save = plots.save

    def keep(fig, path):
        seen[Path(path).name] = [(ln.get_label(), ln.get_linewidth(), ln.get_markersize(), ln.get_marker(),
                                  ln.get_markerfacecolor(), ln.get_zorder())
                                 for ax in fig.axes for ln in ax.get_lines()]
        seen[Path(path).name + " ticks"] = [t for ax in fig.axes for t in ax.get_xticks()]
        return real_save(fig, path)

    plots.save = keep
    try:
        plots.plot_sweep(rows, tmp_path / "plots", "p")
    finally:
        plots.save = real_save
    lines = {label: rest for label, *rest in seen["p_eval_loss.png"]}
    twins = [lines["trial 1: lr=1e-05 (pruned at step 1)"], lines["trial 2: lr=2e-05 (pruned at step 1)"]]
    assert twins[0][0] > twins[1][0] and twins[0][1] > twins[1][1]  # the later one narrower and smaller...
    assert twins[1][4] > twins[0][4]  # ...on top, so both show
    assert all(t[2] == "o" and t[3] == "white" for t in twins)  # hollow markers: pruned
    assert lines["trial 0: lr=0.003"][3] != "white"
    train = {label: rest for label, *rest in seen["p_train_loss.png"]}
    assert train["trial 1: lr=1e-05 (pruned at step 1)"][2] == "o"  # one point: a marker, not an invisible line
    assert all(float(t).is_integer() for t in seen["p_eval_loss.png ticks"])
