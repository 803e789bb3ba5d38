"""The evaluation report's plots: metrics with their intervals, answer lengths."""


def test_plot_report_with_and_without_intervals(tmp_path):
    from helpers.evaluation.stats import METRICS, paired_bootstrap
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
