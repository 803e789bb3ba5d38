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


# --- the sweep's plots (notebook 07) -----------------------------------------------------------
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
        rows.append({"name": f"run{i}", "run_dir": str(run), "status": "pruned" if pruned else "done",
                     "params": params, "eval_loss": hist[-1].get("eval_loss", 2.5)})
    rows.append({"name": "failed", "run_dir": str(tmp_path / "gone"), "status": "failed", "params": {"learning_rate": 1.0}})
    return rows


def test_run_history_reads_json_or_jsonl_and_nothing_when_missing(tmp_path):
    from helpers.sweep.plots import run_history
    rows = _sweep_rows(tmp_path)
    assert run_history(rows[0])[0] == {"loss": 3.0 - 0.2 / 30 - 0.08, "step": 1, "epoch": 0.1}  # .json
    assert len(run_history(rows[1])) == 36  # .jsonl: 30 train lines and 6 eval lines
    assert run_history(rows[-1]) == []


def test_value_key_sorts_numbers_as_numbers_then_the_rest_by_their_json():
    import json
    from helpers.common.plots import _value_key
    vals = [json.dumps(v) for v in (1e-3, 2e-4, 5e-5, "cosine", True)]
    assert [json.loads(v) for v in sorted(vals, key=_value_key)] == [5e-5, 2e-4, 1e-3, "cosine", True]


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
    assert plot_sweep([{"name": "x", "status": "failed", "params": {}}], tmp_path / "none", "n") == []
    assert not (tmp_path / "none").exists()


# --- the evaluation report's plots (notebook 05) -----------------------------------------------
def test_plot_report_with_and_without_intervals(tmp_path):
    from helpers.evaluation.report import METRICS, paired_bootstrap
    from helpers.evaluation.plots import plot_report
    base = {"rouge1": [0.2, 0.3, 0.1, 0.4], "rouge2": [0.0, 0.1, 0.0, 0.2], "rougeL": [0.2, 0.2, 0.1, 0.3],
            "stop_rate": [1.0, 0.0, 1.0, 1.0], "copy_rate": [0.0, 0.0, 1.0, 0.0], "answer_words": [12, 30, 7, 18],
            "ppl_pairs": [(20.0, 10), (35.0, 12), (18.0, 9), (40.0, 14)]}
    tuned = {k: [x * 1.5 for x in v] if k != "ppl_pairs" else [(n * 0.8, c) for n, c in v] for k, v in base.items()}
    tuned["answer_words"] = [10, 14, 9, 16]
    per = {"base": base, "tuned": tuned}
    refs = ["A short reference answer.", "Another one, a little longer than that.", "Yes.", "No, not at all."]
    for n_boot in (200, 0):
        metrics = {}
        for name, (label, hib) in METRICS.items():
            key = "ppl_pairs" if name == "perplexity" else name
            metrics[name] = paired_bootstrap(base[key], tuned[key], "ppl" if name == "perplexity" else "mean", n_boot)
        assert ("ci" in metrics["rouge1"]["base"]) == bool(n_boot)
        paths = plot_report({"metrics": metrics, "n_examples": 4}, per, refs, tmp_path / f"p{n_boot}", "sft_eval_")
        assert [p.name for p in paths] == ["sft_eval_metrics.png", "sft_eval_lengths.png"]
        assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000 for p in paths)


def test_matplotlib_is_imported_only_when_a_plot_is_drawn():
    import subprocess
    import sys
    code = ("import sys, helpers.common.plots, helpers.sweep.runner, helpers.evaluation.report, helpers.chat.export; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported at import time'")
    subprocess.run([sys.executable, "-c", code], check=True)
