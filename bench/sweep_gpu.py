"""A real hyperparameter sweep on the GPU machine: the plots committed to plots/ (issue 9).

The embedded SmolLM2-135M-Instruct in 4-bit (QLoRA) on the bundled real conversations
(helpers/resources/chitchat), learning rate x LoRA rank, a few hundred steps per run, through
``helpers.sweep.runner.run_sweep`` (the same path as notebook 07, and ``helpers.train.loop.train`` underneath,
the same as notebook 04). About 4 minutes on one H100::

    python bench/sweep_gpu.py --plots plots                 # the committed figures
    python bench/sweep_gpu.py --tiny --plots /tmp/sw-plots  # a CPU check of the script (seconds of training)

Writes ``<plots>/sweep_gpu_*.png`` and ``<plots>/sweep_gpu_results.md`` (the results table, the
device, the versions and the command), prints the same, and keeps the runs in ``--out``. A rerun
skips finished runs (``--fresh`` starts over).
"""
from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plots", default="plots", help="folder for the figures and the results table (default plots/)")
    ap.add_argument("--out", default="", help="sweep folder with the runs (default outputs/sweep_gpu, or "
                                              "outputs/smoke/sweep_gpu with --tiny)")
    ap.add_argument("--grid", default='{"learning_rate": [1e-4, 1e-3], "lora_r": [8, 32]}', help="JSON grid")
    ap.add_argument("--steps", type=int, default=250, help="optimizer steps per run")
    ap.add_argument("--batch", type=int, default=8, help="per-device batch size")
    ap.add_argument("--seq-len", type=int, default=512, help="tokens per example")
    ap.add_argument("--subset", type=int, default=700, help="training rows of the subset")
    ap.add_argument("--eval-size", type=int, default=100, help="validation rows")
    ap.add_argument("--minutes-per-run", type=float, default=1.5, help="time budget per run")
    ap.add_argument("--minutes-total", type=float, default=6.0, help="time budget of the whole sweep")
    ap.add_argument(
        "--prune-after", type=int, default=0, help="prune runs clearly behind after N evaluations (0 = off)"
    )
    ap.add_argument("--quantization", default="", help="default: 4bit on a GPU, none on a CPU")
    ap.add_argument("--dataset", default=str(ROOT / "helpers" / "resources" / "chitchat" / "train.jsonl"))
    ap.add_argument("--tiny", action="store_true", help="a tiny CPU setting to check the script")
    ap.add_argument("--fresh", action="store_true", help="delete the sweep folder first")
    a = ap.parse_args(argv)
    command = "python " + " ".join(shlex.quote(x) for x in [str(Path(sys.argv[0]).as_posix())] + (argv or sys.argv[1:]))
    print(f"Command: {command}", flush=True)

    import torch

    from helpers.common.workspace import describe_gpu, versions
    from helpers.sweep import SweepConfig, run_sweep
    from helpers.sweep.results import table_markdown

    cuda = torch.cuda.is_available()
    if a.tiny:
        a.steps, a.batch, a.seq_len, a.subset, a.eval_size = 3, 2, 128, 12, 4
        a.minutes_per_run, a.minutes_total = 0.0, 0.0
    out = Path(a.out) if a.out else ROOT / "outputs" / ("smoke" if a.tiny else "") / "sweep_gpu"
    if a.fresh and out.exists():
        shutil.rmtree(out)
    quant = a.quantization or ("4bit" if cuda else "none")
    cfg = SweepConfig(
        name="sweep_gpu", output_dir=str(out), plots_dir=a.plots, model_name="embedded/smollm2-135m-instruct",
        dataset_path=a.dataset, quantization=quant, max_seq_len=a.seq_len, grid=json.loads(a.grid),
        base={"per_device_batch_size": a.batch, "gradient_accumulation_steps": 1, "warmup_ratio": 0.05,
              "lr_scheduler": "cosine", "lora_alpha": 16, "gradient_checkpointing": False, "report_to": "none",
              "logging_steps": 1 if a.tiny else 5},
        subset_size=a.subset, eval_size=a.eval_size, max_steps_per_run=a.steps, evals_per_run=3 if a.tiny else 10,
        max_minutes_per_run=a.minutes_per_run, max_minutes_total=a.minutes_total, prune_after_evals=a.prune_after)
    cfg.validate()
    print(cfg.describe(), flush=True)
    t0 = time.time()
    res = run_sweep(cfg)
    minutes = (time.time() - t0) / 60
    v = versions()
    md = [f"# Sweep: {cfg.model_name} ({quant}) on {Path(a.dataset).parent.name}, "
          f"{' x '.join(cfg.grid)}", "",
          f"Command: `{command}`", "",
          f"Device: {describe_gpu()}", "",
          "Versions: " + ", ".join(f"{k} {v[k]}" for k in ("python", "torch", "transformers", "peft", "trl",
                                                             "accelerate", "bitsandbytes")), "",
          f"{len(res.rows)} runs, {res.rows[0]['target_steps'] if res.rows else 0} steps each, batch {a.batch}, "
          f"{a.seq_len} tokens, subset {a.subset} rows + {a.eval_size} validation rows; sweep wall time "
          f"{minutes:.1f} min ({len(res.trained)} trained now, {len(res.skipped)} skipped as finished)."
          + (f" Stopped early: {res.stopped}." if res.stopped else ""), "",
          table_markdown(res.table), ""]
    if res.best:
        md.append(f"Best: `{res.best['run']}` (validation loss {res.best['eval_loss']}), overrides "
                  f"`{json.dumps(res.best['overrides'])}`.")
    md.append("")
    md.append("Figures: " + ", ".join(f"`{p.name}`" for p in res.plots))
    text = "\n".join(md) + "\n"
    plots = Path(a.plots)
    plots.mkdir(parents=True, exist_ok=True)
    (plots / "sweep_gpu_results.md").write_text(text)
    print(text)
    return 0 if res.rows and all(r["status"] != "failed" for r in res.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
