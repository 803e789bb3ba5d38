"""Which pruner for the sweep (issue 33): our old rule against Optuna's median and successive-halving
pruners, on the same sweep.

The sweep is trained once with no pruning (``run_sweep``, the embedded SmolLM2-135M on the bundled
conversations, a learning rate x LoRA rank grid, a validation every ``--eval-every`` steps), so
every run's whole validation curve is known. Each pruner then replays the sweep in several random
orders (``--orders``): trial by trial, each validation loss is reported to an Optuna study with that
pruner, and a run stops where the pruner says. Training is deterministic given its settings, so a
replayed run is the run that would have trained up to that step. Reported: steps trained (the
cost), how often the best run of the full sweep is still the one picked (and the regret, its
validation loss above the true best), and how often the true best run was pruned.

"behind" is the rule the sweep had before Optuna: prune a run whose validation loss is more than
``--margin`` above the best finished run's at the same step (interpolated).

    python bench/sweep_pruners.py --tiny                  # CPU: 6 runs of 8 steps, a few minutes
    python bench/sweep_pruners.py                         # GPU: 12 runs of 120 steps
"""
from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def behind_pruner(prune_from: int, margin: float):
    """The sweep's old rule as an Optuna pruner (kept here only to measure it)."""
    import optuna

    class Behind(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:
            step = trial.last_step
            if step is None or step < prune_from:
                return False
            done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if not done:
                return False
            ref = min(done, key=lambda t: t.value).intermediate_values
            steps = sorted(ref)
            if step in ref:
                r = ref[step]
            elif steps and steps[0] < step < steps[-1]:
                lo, hi = max(s for s in steps if s < step), min(s for s in steps if s > step)
                r = ref[lo] + (ref[hi] - ref[lo]) * (step - lo) / (hi - lo)
            else:
                return False
            return trial.intermediate_values[step] > r * (1 + margin)

    return Behind()


def pruners(prune_from: int, margin: float) -> dict:
    import optuna
    return {"none": optuna.pruners.NopPruner(),
            "median": optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=prune_from),
            "halving": optuna.pruners.SuccessiveHalvingPruner(min_resource=prune_from, reduction_factor=3),
            f"behind {margin:.0%}": behind_pruner(prune_from, margin),
            f"behind {margin / 5:.0%}": behind_pruner(prune_from, margin / 5)}


def replay(curves: dict[str, dict[int, float]], order: list[str], pruner) -> dict:
    """One sweep in ``order`` under ``pruner``: steps trained, the picked best and the pruned runs."""
    import optuna
    study = optuna.create_study(pruner=pruner)
    steps, finished, pruned = 0, {}, []
    for name in order:
        curve = curves[name]
        last = max(curve)
        t = study.ask()
        for step in sorted(curve):
            t.report(curve[step], step)
            if step < last and t.should_prune():
                steps += step
                pruned.append(name)
                study.tell(t, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            steps += last
            finished[name] = curve[last]
            study.tell(t, curve[last])
    return {"steps": steps, "best": min(finished, key=finished.get), "pruned": pruned}


def recorded(out: Path) -> dict[str, dict[int, float]]:
    """The validation curves of the runs that finished in an earlier (perhaps interrupted) recording."""
    import optuna
    from helpers.sweep.curves import eval_curve
    from helpers.sweep.plots import run_history
    from helpers.sweep.results import study_rows
    from helpers.sweep.study import storage
    rows = study_rows(optuna.load_study(study_name="sweep", storage=storage(out)))
    return {r["name"]: {s: v for s, v in eval_curve(run_history(r)).items() if s > 0} for r in rows
            if r["status"] == "done"}


def record(a) -> dict[str, dict[int, float]]:
    """Every run's validation curve from a sweep trained with no pruning (finished runs are kept)."""
    from helpers.sweep import SweepConfig, run_sweep
    from helpers.sweep.curves import eval_curve
    from helpers.sweep.plots import run_history
    cfg = SweepConfig(
        name="sweep_pruners", output_dir=str(a.out), plots_dir=str(Path(a.out) / "plots"),
        model_name="embedded/smollm2-135m-instruct", dataset_path=str(ROOT / "helpers/resources/chitchat/train.jsonl"),
        quantization=a.quantization, max_seq_len=a.seq_len, grid=json.loads(a.grid), subset_size=a.subset,
        eval_size=a.eval_size, max_steps_per_run=a.steps, evals_per_run=max(1, a.steps // a.eval_every),
        pruner="none", workers=a.workers,
        base={"per_device_batch_size": a.batch, "gradient_accumulation_steps": 1, "warmup_ratio": 0.0,
              "logging_steps": 1, "gradient_checkpointing": False, "report_to": "none", "save_steps": a.steps})
    res = run_sweep(cfg)
    return {r["name"]: {s: v for s, v in eval_curve(run_history(r)).items() if s > 0} for r in res.rows
            if r["status"] == "done"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="CPU size: 6 runs of 8 steps on 24 rows")
    ap.add_argument("--out", default="", help="sweep folder (default outputs/[smoke/]sweep_pruners)")
    ap.add_argument("--grid", default='{"learning_rate": [3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5], "lora_r": [8, 32]}')
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--subset", type=int, default=700)
    ap.add_argument("--eval-size", type=int, default=100)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--quantization", default="")
    ap.add_argument("--prune-after", type=int, default=2, help="pruning starts at this validation")
    ap.add_argument("--margin", type=float, default=0.1, help="the old rule's margin")
    ap.add_argument("--orders", type=int, default=20, help="random orders of the trials to replay")
    ap.add_argument("--recorded", action="store_true", help="replay the runs already finished in --out, train none")
    a = ap.parse_args(argv)
    command = "python " + " ".join(shlex.quote(x) for x in ["bench/sweep_pruners.py"] + (argv or sys.argv[1:]))
    if a.tiny:
        a.grid = '{"learning_rate": [3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5]}'
        a.steps, a.eval_every, a.batch, a.seq_len, a.subset, a.eval_size = 8, 1, 2, 128, 24, 6
        a.workers = 2
    import torch
    a.quantization = a.quantization or ("4bit" if torch.cuda.is_available() else "none")
    a.out = Path(a.out or ROOT / "outputs" / ("smoke" if a.tiny else "") / "sweep_pruners")
    t0 = time.time()
    curves = recorded(a.out) if a.recorded else record(a)
    final = {n: c[max(c)] for n, c in curves.items()}
    truth = min(final, key=final.get)
    full = sum(max(c) for c in curves.values())
    print(f"Command: {command}\n{len(curves)} runs recorded in {(time.time() - t0) / 60:.1f} min; the best run of the "
          f"full sweep: {truth} ({final[truth]:.4f}); pruning from step "
          f"{a.prune_after * a.eval_every}; {a.orders} random orders\n")
    print("| pruner | steps trained (of the full sweep) | best run kept | mean regret | best run pruned |")
    print("|---|---|---|---|---|")
    prune_from = a.prune_after * a.eval_every
    for name in pruners(prune_from, a.margin):
        got = [replay(curves, random.Random(seed).sample(sorted(curves), len(curves)),
                      pruners(prune_from, a.margin)[name]) for seed in range(a.orders)]
        steps = sum(g["steps"] for g in got) / len(got)
        kept = sum(g["best"] == truth for g in got)
        regret = sum(final[g["best"]] - final[truth] for g in got) / len(got)
        lost = sum(truth in g["pruned"] for g in got)
        print(f"| {name} | {steps:.0f} of {full} ({steps / full:.0%}) | {kept}/{len(got)} | {regret:.4f} | "
              f"{lost}/{len(got)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
