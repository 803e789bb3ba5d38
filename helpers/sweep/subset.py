"""The sweep's fixed data: the training subset and the validation rows, carved once from the dataset
and reused on every rerun (``subset.json`` records them; a rerun with another subset is refused)."""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from helpers.common.rows import row_hash, validate_rows
from helpers.core.config import ConfigError
from helpers.core.jsonl import DataError, read_jsonl, write_jsonl
from helpers.sweep.config import SweepConfig


def prepare_subset(cfg: SweepConfig, sweep_dir: Path, log=print) -> dict:
    """Carve the training subset and the validation rows once; reuse them on every rerun.

    Rows that cannot be trained on are left out first; training rows identical to a validation
    row are dropped, so the validation set is never trained on."""
    if not cfg.dataset_path:
        raise DataError("DATASET_PATH is empty: point it at a JSONL dataset (notebook 02's train.jsonl, "
                        "or helpers.dataset.build.default_dataset(ws)).")
    src = Path(cfg.dataset_path)
    if not src.exists():
        raise DataError(f"Dataset file {str(src)!r} does not exist.")
    data_dir = sweep_dir / "data"
    meta_path = data_dir / "subset.json"
    sig = {"dataset_path": str(src.resolve()), "dataset_sha256": hashlib.sha256(src.read_bytes()).hexdigest()[:16],
           "subset_size": cfg.subset_size, "eval_size": cfg.eval_size, "subset_seed": cfg.subset_seed,
           "mode": cfg.mode}
    train_p, val_p = data_dir / "train.jsonl", data_dir / "val.jsonl"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("signature") != sig:
            diff = {k: (meta.get("signature", {}).get(k), v) for k, v in sig.items()
                    if meta.get("signature", {}).get(k) != v}
            raise ConfigError(
                f"{sweep_dir} holds a sweep on another subset ("
                + "; ".join(f"{k}: folder has {a!r}, now {b!r}" for k, (a, b) in diff.items())
                + "). Runs on different data do not compare: use another NAME, or delete the folder to start over.")
        if train_p.exists() and val_p.exists():
            return meta
    rows = read_jsonl(src)
    usable = [r for r in rows
              if not validate_rows([r]) and (cfg.mode != "pretrain" or str(r.get("text") or "").strip())]
    if len(usable) < len(rows):
        log(f"{len(rows) - len(usable)} row(s) of {src} cannot be trained on and are left out of the subset.")
    if len(usable) < cfg.eval_size + 2:
        raise DataError(f"{src} has {len(usable)} usable rows: too few for EVAL_SIZE={cfg.eval_size} validation "
                        f"rows plus at least 2 training rows.")
    order = list(range(len(usable)))
    random.Random(cfg.subset_seed).shuffle(order)
    val = [usable[i] for i in order[:cfg.eval_size]]
    val_hashes = {row_hash(r) for r in val}
    train, dup = [], 0
    for i in order[cfg.eval_size:]:
        if row_hash(usable[i]) in val_hashes:
            dup += 1
            continue
        train.append(usable[i])
        if len(train) == cfg.subset_size:
            break
    if len(train) < cfg.subset_size:
        log(f"{src} has only {len(train)} usable rows besides the {cfg.eval_size} validation rows: "
            f"the subset has {len(train)} training rows, not SUBSET_SIZE={cfg.subset_size}.")
    if dup:
        log(f"{dup} training row(s) identical to a validation row were left out.")
    write_jsonl(train_p, train)
    write_jsonl(val_p, val)
    meta = {"signature": sig, "train_path": str(train_p), "val_path": str(val_p), "train_rows": len(train),
            "val_rows": len(val), "train_sha256": hashlib.sha256(train_p.read_bytes()).hexdigest()[:16],
            "val_sha256": hashlib.sha256(val_p.read_bytes()).hexdigest()[:16]}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    log(f"Subset: {len(train)} training rows and {len(val)} validation rows from {src}, in {data_dir}")
    return meta
