"""A sweep's results, read from its Optuna study (the source of truth): one row per configuration
(a trial and its retries are one row), the line printed when a trial finishes, the table of runs
best first, ``results.jsonl`` written as a view of the study, and the best run's configuration
(``best_config.json``) that notebook 04 reads with ``load_best_config``."""
from __future__ import annotations

import html
import json
import math
import os
import time
from pathlib import Path

from helpers.core.files import SweepFiles
from helpers.core.jsonl import write_jsonl
from helpers.sweep.config import MECHANICS, SWEEP_LEVEL, SweepConfig
from helpers.sweep.curves import run_label

STATUS = {"COMPLETE": "done", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "waiting"}


def trial_row(t) -> dict:
    """A trial as a results row: ``{"trial", "number", "name", "params", "status", "reason",
    "eval_loss", "steps", ...}`` (the metrics the worker recorded, else the last reported loss)."""
    ua = t.user_attrs
    row = {"trial": ua.get("origin", t.number), "number": t.number, "name": ua.get("run", ""),
           "params": ua.get("params") or dict(t.params), "status": STATUS.get(t.state.name, t.state.name.lower()),
           "reason": ua.get("reason", ""), "run_dir": ua.get("run_dir"), "fingerprint": ua.get("fingerprint"),
           "train_config": ua.get("train_config", {}), "lost": ua.get("lost"), "how": ua.get("how", ""),
           "worker": (ua.get("worker") or {}).get("id")}
    row.update(ua.get("metrics") or {})
    if row.get("eval_loss") is None and t.intermediate_values:
        last = max(t.intermediate_values)
        row.update(eval_loss=t.intermediate_values[last], steps=last)
    return row


def study_rows(study) -> list[dict]:
    """One row per configuration (the newest trial of each), in trial order."""
    rows: dict[int, dict] = {}
    for t in study.get_trials(deepcopy=False):
        r = trial_row(t)
        if r["status"] == "waiting" and r["trial"] in rows:
            continue  # a retry not started yet: the row stays the lost trial's
        rows[r["trial"]] = r
    return [rows[k] for k in sorted(rows)]


def _num(x, fmt: str = ".4f") -> str:
    return format(x, fmt) if isinstance(x, (int, float)) and math.isfinite(x) else str(x)


def finished_line(row: dict) -> str:
    """One line for a finished trial: its values, validation loss, status and why (a reason that
    starts with the status, "pruned at step 1 of 3 ...: validation loss ...", says them once, and
    its minutes are left to the table)."""
    head = f"trial {row['trial']} ({run_label(row['params'])}): "
    took = f"{row['train_seconds'] / 60:.1f} min" if row.get("train_seconds") else ""
    reason = row.get("reason") or row["status"]
    if reason.startswith(row["status"]):  # the time is in the table: the line stays one line
        return head + reason
    loss = f", validation loss {_num(row['eval_loss'])}" if row.get("eval_loss") is not None else ""
    return f"{head}{row['status']}{loss}{', ' + took if took else ''} ({reason})"


def _rank_key(row: dict):
    """Sort key: done, pruned, failed, others, then by validation loss (a missing or infinite one last)."""
    order = {"done": 0, "pruned": 1, "failed": 2}
    loss = row.get("eval_loss")
    finite = isinstance(loss, (int, float)) and math.isfinite(loss)
    return (order.get(row.get("status"), 3), loss if finite else math.inf)


def results_table(rows: list[dict]):
    """A pandas DataFrame of the runs, best first (done by validation loss, then pruned, failed);
    columns with no value in any row (peak GPU memory on a CPU) are left out."""
    import pandas as pd
    params: list[str] = []
    for r in rows:
        params += [k for k in r.get("params", {}) if k not in params]
    recs = []
    for r in sorted(rows, key=_rank_key):
        rec = {"trial": r["trial"], "status": r["status"]}
        rec.update({k: r.get("params", {}).get(k) for k in params})
        rec.update({"eval_loss": r.get("eval_loss"), "best_eval_loss": r.get("best_eval_loss"),
                    "train_loss": r.get("train_loss"), "steps": r.get("steps"), "epochs": r.get("epochs"),
                    "minutes": round(r["train_seconds"] / 60, 2) if r.get("train_seconds") is not None else None,
                    "tokens_per_s": r.get("tokens_per_second"), "peak_mem_gib": r.get("peak_memory_gib"),
                    "run": r.get("name"), "reason": r.get("reason", "")})
        recs.append(rec)
    df = pd.DataFrame(recs)
    return df[[c for c in df.columns if c in ("trial", "status", "reason") or df[c].notna().any()]]


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def table_markdown(df) -> str:
    """A Markdown table of a DataFrame (no extra dependency)."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for rec in df.to_dict("records"):
        lines.append("| " + " | ".join(_cell(rec[c]).replace("|", "\\|").replace("\n", " ") for c in cols) + " |")
    return "\n".join(lines) + "\n"


def table_html(df) -> str:
    """The table as HTML for a notebook: no index column, every cell on one line, "—" where a run has
    no value (a failed run's loss), and each run's reason whole on a row of its own under it, so
    that the table fits a notebook's width and no reason is cut."""
    cols = [c for c in df.columns if c != "reason"]
    cell = "padding:2px 8px;white-space:nowrap;text-align:left"
    head = "".join(f'<th style="{cell}">{html.escape(c)}</th>' for c in cols)
    body = []
    for i, rec in enumerate(df.to_dict("records")):
        shade = "background:" + ("#f5f5f5" if i % 2 else "#ffffff")
        body.append(f'<tr style="{shade}">' + "".join(
            f'<td style="{cell}">{html.escape(_cell(rec[c]) or "—")}</td>' for c in cols) + "</tr>")
        if rec.get("reason"):
            body.append(f'<tr style="{shade}"><td colspan="{len(cols)}" style="padding:0 8px 4px 2.5em;'
                        f'white-space:normal;text-align:left;color:#555">{html.escape(str(rec["reason"]))}</td></tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def write_results(sweep_dir: Path, rows: list[dict]) -> None:
    """results.jsonl: the study's rows as a view for other tools (the study stays the source of truth)."""
    path = SweepFiles(Path(sweep_dir)).results
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    write_jsonl(tmp, rows)
    os.replace(tmp, path)


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
    best = {"overrides": overrides, "params": row["params"], "run": row["name"], "trial": row["trial"],
            "eval_loss": row["eval_loss"],
            "trained_with": {k: row["train_config"].get(k) for k in SWEEP_LEVEL + ("max_steps",)},
            "sweep_dir": str(path.parent), "written": time.strftime("%Y-%m-%d %H:%M:%S"),
            "how_to_use": "from helpers.train import load_best_config; cfg = cfg.replace(**load_best_config(path))"}
    path.write_text(json.dumps(best, indent=2) + "\n")
    return best


def best_markdown(best: dict, path: Path) -> str:
    """The best run as a person reads it (notebook 07's last cell): which trial, its loss, its own
    values, then the settings shared by every run, each as ``name = value``, and where the file is."""
    own = {k: v for k, v in best["overrides"].items() if k in best.get("params", best["overrides"])}
    shared = {k: v for k, v in best["overrides"].items() if k not in own}
    show = lambda d: ", ".join(f"`{k} = {v!r}`" for k, v in d.items())  # noqa: E731
    text = f"**Best run:** trial {best['trial']} (`{best['run']}`), validation loss {best['eval_loss']:.3f}, with " + (
        show(own) or "the shared settings")
    if shared:
        text += f"; shared by every run: {show(shared)}"
    return text + f".  \nSaved in `{path}`: notebook 04 reads it with `USE_SWEEP_BEST = True`."

