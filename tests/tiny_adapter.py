"""A tiny real LoRA adapter for the chat and export tests: a few steps of helpers.train.loop on the
bundled real conversations (helpers/resources/chitchat), trained once per test session and shared."""
from __future__ import annotations

import fcntl
from pathlib import Path

from helpers.common.resources import chitchat

EMBEDDED = "embedded/smollm2-135m-instruct"
REPO = Path(__file__).resolve().parent.parent


def tiny_adapter(base: Path) -> Path:
    """Train (once per session folder) and return the adapter folder."""
    out = Path(base) / "tiny-sft"
    adapter = out / "adapter"
    out.mkdir(parents=True, exist_ok=True)
    with open(out.parent / "tiny-sft.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        if (adapter / "adapter_config.json").exists():
            return adapter
        from helpers.train import TrainConfig, train
        cfg = TrainConfig(model_name=EMBEDDED, dataset_path=str(chitchat("train")),
                          output_dir=str(out), quantization="none", max_steps=3, per_device_batch_size=2,
                          gradient_accumulation_steps=1, max_seq_len=96, max_rows=6, eval_fraction=0.0,
                          learning_rate=3e-3, warmup_ratio=0.0, lora_r=8, lora_alpha=16, logging_steps=1,
                          eval_steps=0, save_steps=100, report_to="none", gradient_checkpointing=False,
                          resume="never")
        result = train(cfg)
        assert (result.adapter_dir / "adapter_config.json").exists()
        return result.adapter_dir
