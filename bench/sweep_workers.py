"""The sweep's wall time with several workers (issue 33): 1 worker, 2 workers sharing one GPU, and
N workers on N GPUs when several are visible, on the same sweep (the embedded SmolLM2-135M on the
bundled conversations, a learning rate x LoRA rank grid, every run to its last step: no pruning).

Each setting trains the whole sweep from scratch in its own folder through ``run_sweep`` (worker
processes on one Optuna journal file, as notebook 07 runs them) and prints a table::

    python bench/sweep_workers.py --tiny      # CPU check: 4 runs of 3 steps, 1 and 2 workers
    python bench/sweep_workers.py             # GPU: 8 runs of 150 steps; 1, 2 on one GPU, N on N GPUs
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def settings(gpus: list[str], counts: list[int]) -> list[tuple[str, int, str | None]]:
    """(label, workers, CUDA_VISIBLE_DEVICES) of each measured setting."""
    one = gpus[:1]
    out = [(f"{n} worker{'s' if n > 1 else ''}" + (" on 1 GPU" if one else " on the CPU"), n,
            ",".join(one) if one else None) for n in counts]
    if len(gpus) > 1:
        out.append((f"{len(gpus)} workers on {len(gpus)} GPUs", len(gpus), ",".join(gpus)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="CPU size: 4 runs of 3 steps on 12 rows")
    ap.add_argument("--out", default="", help="folder of the sweeps (default outputs/[smoke/]sweep_workers)")
    ap.add_argument("--grid", default='{"learning_rate": [1e-4, 3e-4, 1e-3, 3e-3], "lora_r": [8, 32]}')
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--subset", type=int, default=700)
    ap.add_argument("--eval-size", type=int, default=100)
    ap.add_argument("--workers", default="1,2", help="worker counts sharing one GPU (or the CPU)")
    ap.add_argument("--quantization", default="")
    a = ap.parse_args(argv)
    command = "python " + " ".join(shlex.quote(x) for x in ["bench/sweep_workers.py"] + (argv or sys.argv[1:]))
    import torch
    from helpers.common.workspace import describe_gpu
    from helpers.sweep import SweepConfig, run_sweep
    if a.tiny:
        a.grid, a.steps, a.batch, a.seq_len, a.subset, a.eval_size = (
            '{"learning_rate": [1e-3, 3e-3], "lora_r": [4, 8]}', 3, 2, 128, 12, 4)
    cuda = torch.cuda.is_available()
    gpus = ([x for x in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if x.strip()]
            if "CUDA_VISIBLE_DEVICES" in os.environ else [str(i) for i in range(torch.cuda.device_count())])
    out = Path(a.out or ROOT / "outputs" / ("smoke" if a.tiny else "") / "sweep_workers")
    rows, base_min = [], None
    for label, n, visible in settings(gpus if cuda else [], [int(x) for x in a.workers.split(",")]):
        folder = out / f"w{n}" if visible is None or "," not in visible else out / f"w{n}_gpus"
        shutil.rmtree(folder, ignore_errors=True)
        if visible is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = visible
        cfg = SweepConfig(
            name="sweep_workers", output_dir=str(folder), plots_dir=str(folder / "plots"),
            model_name="embedded/smollm2-135m-instruct",
            dataset_path=str(ROOT / "helpers/resources/chitchat/train.jsonl"),
            quantization=a.quantization or ("4bit" if cuda else "none"), max_seq_len=a.seq_len,
            grid=json.loads(a.grid), subset_size=a.subset, eval_size=a.eval_size, max_steps_per_run=a.steps,
            evals_per_run=3, pruner="none", workers=n,
            base={"per_device_batch_size": a.batch, "gradient_accumulation_steps": 1, "warmup_ratio": 0.05,
                  "gradient_checkpointing": False, "report_to": "none", "logging_steps": 5})
        t0 = time.time()
        res = run_sweep(cfg, log=lambda *x: None)
        minutes = (time.time() - t0) / 60
        base_min = base_min or minutes
        ok = sum(r["status"] == "done" for r in res.rows)
        rows.append(f"| {label} | {len(res.rows)} ({ok} done) | {minutes:.2f} | {base_min / minutes:.2f}x |")
        print(rows[-1], flush=True)
    print(f"\nCommand: `{command}`\nDevice: {describe_gpu() if cuda else 'CPU'}; {a.steps} steps a run, batch "
          f"{a.batch}, {a.seq_len} tokens\n")
    print("| setting | runs | sweep wall time (min) | speed-up over 1 worker |\n|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
