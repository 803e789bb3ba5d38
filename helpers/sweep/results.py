"""A sweep's results: results.jsonl (one row per run), the table of runs best first, and the best
run's configuration (best_config.json) that notebook 04 reads with ``load_best_config``."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from helpers.core.files import SweepFiles
from helpers.core.jsonl import read_jsonl, write_jsonl
from helpers.sweep.config import MECHANICS, SWEEP_LEVEL, SweepConfig


def read_results(sweep_dir: Path) -> dict[str, dict]:
    """``{run name: row}`` from results.jsonl (the newest row of each run)."""
    p = SweepFiles(Path(sweep_dir)).results
    out: dict[str, dict] = {}
    if p.exists():
        for row in read_jsonl(p, strict=False):
            if "name" in row:
                out[row["name"]] = row
    return out


def write_results(sweep_dir: Path, rows: dict[str, dict]) -> None:
    """Rewrite results.jsonl with one row per run."""
    write_jsonl(SweepFiles(sweep_dir).results, rows.values())


def _rank_key(row: dict):
    """Sort key: done, pruned, failed, then by validation loss (a missing or infinite one last)."""
    order = {"done": 0, "pruned": 1, "failed": 2}
    loss = row.get("eval_loss")
    finite = isinstance(loss, (int, float)) and math.isfinite(loss)
    return (order.get(row.get("status"), 3), loss if finite else math.inf)


def results_table(rows: list[dict]):
    """A pandas DataFrame of the runs, best first (done by validation loss, then pruned, then failed)."""
    import pandas as pd
    params = []
    for r in rows:
        for k in r.get("params", {}):
            if k not in params:
                params.append(k)
    recs = []
    for r in sorted(rows, key=_rank_key):
        rec = {"run": r["name"], "status": r["status"]}
        rec.update({k: r.get("params", {}).get(k) for k in params})
        rec.update({"steps": r.get("steps"), "epochs": r.get("epochs"), "train_loss": r.get("train_loss"),
                    "eval_loss": r.get("eval_loss"), "best_eval_loss": r.get("best_eval_loss"),
                    "minutes": round(r["train_seconds"] / 60, 2) if r.get("train_seconds") is not None else None,
                    "tokens_per_s": r.get("tokens_per_second"), "peak_mem_gib": r.get("peak_memory_gib"),
                    "reason": r.get("reason", "")})
        recs.append(rec)
    return pd.DataFrame(recs)


def table_markdown(df) -> str:
    """A Markdown table of a DataFrame (no extra dependency)."""
    def cell(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|").replace("\n", " ")
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for rec in df.to_dict("records"):
        lines.append("| " + " | ".join(cell(rec[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def best_run(rows: list[dict]) -> dict | None:
    """The finished run with the lowest finite validation loss, or None."""
    done = [r for r in rows if r.get("status") == "done" and isinstance(r.get("eval_loss"), (int, float))
            and math.isfinite(r["eval_loss"])]
    return min(done, key=lambda r: r["eval_loss"]) if done else None


def write_best_config(cfg: SweepConfig, row: dict, path: Path) -> dict:
    """Write the best run's settings (BASE and its own values, no run mechanics) for notebook 04."""
    base = {k: v for k, v in cfg.base.items() if k not in MECHANICS}
    overrides = dict(base, **{k: v for k, v in row["params"].items()})
    overrides = {k: v for k, v in overrides.items() if k not in SWEEP_LEVEL or k in row["params"]}
    best = {"overrides": overrides, "run": row["name"], "eval_loss": row["eval_loss"],
            "trained_with": {k: row["train_config"].get(k) for k in SWEEP_LEVEL + ("max_steps",)},
            "sweep_dir": str(path.parent), "written": time.strftime("%Y-%m-%d %H:%M:%S"),
            "how_to_use": "from helpers.train import load_best_config; cfg = cfg.replace(**load_best_config(path))"}
    path.write_text(json.dumps(best, indent=2) + "\n")
    return best
