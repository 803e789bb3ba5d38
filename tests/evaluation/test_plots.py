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


def _pixels(path, hex_color: str) -> int:
    """How many pixels of ``path`` (a PNG) are exactly ``hex_color``."""
    import matplotlib.image as mpimg
    img = (mpimg.imread(str(path))[..., :3] * 255).round().astype(int)
    rgb = [int(hex_color[i:i + 2], 16) for i in (1, 3, 5)]
    return int((img == rgb).all(axis=-1).sum())


def test_tuned_has_the_same_colour_in_every_figure_of_a_real_report(report):
    """The metrics, lengths and general-ability figures of a real report draw the tuned model in its one
    colour (never the red the general figure used to give it) and the base model in its own."""
    from helpers.common.plots import model_color
    names = sorted(p.rsplit("/", 1)[-1] for p in report["plots"])
    assert names == ["eval_general.png", "eval_lengths.png", "eval_metrics.png"]
    for p in report["plots"]:
        assert _pixels(p, model_color("tuned")) > 100 and _pixels(p, model_color("base")) > 100, p
        assert _pixels(p, "#d62728") == 0, p
