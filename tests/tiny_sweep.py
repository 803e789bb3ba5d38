"""A tiny sweep on the embedded model and the bundled real conversations, for the tests of
helpers/sweep: a few steps per run, a 12-row subset validated on 4 rows."""
from __future__ import annotations

from pathlib import Path

from helpers.common.resources import chitchat
from helpers.sweep.config import SweepConfig

MODEL = "embedded/smollm2-135m-instruct"
CHITCHAT = chitchat("train")
TINY_BASE = {"per_device_batch_size": 2, "gradient_accumulation_steps": 1, "logging_steps": 1, "save_steps": 3,
             "gradient_checkpointing": False, "warmup_ratio": 0.0, "report_to": "none"}


def tiny(tmp_path: Path, **kw) -> SweepConfig:
    """A validated SweepConfig writing under ``tmp_path``; ``kw`` overrides its fields."""
    values = dict(name="sw", output_dir=str(tmp_path / "sweep"), plots_dir=str(tmp_path / "plots"), model_name=MODEL,
                  dataset_path=str(CHITCHAT), quantization="none", max_seq_len=128, subset_size=12, eval_size=4,
                  max_steps_per_run=3, evals_per_run=3, base=dict(TINY_BASE))
    values.update(kw)
    cfg = SweepConfig(**values)
    cfg.validate()
    return cfg
