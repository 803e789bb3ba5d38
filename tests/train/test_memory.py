"""The memory plan (helpers/train/memory.py) on the real Llama shapes: checkpointing only where the
batch does not fit without it, peaks within 10% of those measured, the micro-batch sized by tokens."""
import pytest

from helpers.core.config import ConfigError
from helpers.train import TrainConfig
from helpers.train.memory import lora_targets, plan_memory


def test_lora_targets_read_target_modules():
    assert lora_targets(TrainConfig()) == "all-linear"
    assert lora_targets(TrainConfig(target_modules="q_proj, v_proj")) == ["q_proj", "v_proj"]


def test_memory_plan_fits_t4_and_h100_like_the_measured_peaks():
    """plan_memory on the real Llama shapes: a 15 GiB T4 gets checkpointing, an 80 GiB H100 does
    not; predicted peaks are within 10% of the peaks measured on an H100 (bench/RESULTS.md)."""
    from transformers import LlamaConfig

    class Shape:  # the loaded model's memory footprint and config are all the plan reads
        def __init__(self, cfg, gib):
            self.config, self.gib = cfg, gib

        def get_memory_footprint(self):
            return self.gib * 2**30

        def parameters(self):
            return iter([])

    l8 = Shape(LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                           num_key_value_heads=8), 5.4)
    cfg = TrainConfig(per_device_batch_size=2, gradient_accumulation_steps=1, max_seq_len=2048)
    t4, h100 = plan_memory(l8, cfg, True, 15.0), plan_memory(l8, cfg, True, 79.2)
    assert t4.gradient_checkpointing and not h100.gradient_checkpointing
    assert abs(t4.trainable_gib - 41_943_040 * 16 / 2**30) < 1e-6  # LoRA r=16 on all 7 projections of the 8B shape
    # measured: checkpointing (one function per layer), inputs offloaded, fused AdamW
    assert abs(t4.peak_gib - 6.48) / 6.48 < 0.1
    assert abs(h100.peak_gib - 22.95) / 22.95 < 0.1
    kept = plan_memory(l8, cfg.replace(offload_activations=False), True, 15.0)
    assert abs(kept.peak_gib - 7.26) / 7.26 < 0.1  # measured with the layer inputs kept on the GPU
    tight = plan_memory(l8, TrainConfig(per_device_batch_size=8, gradient_accumulation_steps=2, max_seq_len=2048),
                        True, 10.0)
    assert tight.per_device_batch_size < 8 and tight.per_device_batch_size * tight.gradient_accumulation_steps >= 16
    # sized by tokens: rows of at most 256 tokens (short examples, PACKING=False) keep micro-batch 8
    short = plan_memory(l8, TrainConfig(per_device_batch_size=8, gradient_accumulation_steps=2, max_seq_len=2048),
                        True, 10.0, row_tokens=256)
    assert short.per_device_batch_size == 8 and "8 x 256 tokens" in short.reason
    # the per-document mask of packed rows on a T4 (4 bytes per entry) counts: 2 rows x 2048^2 x 4 B = 32 MiB
    masked = plan_memory(l8, cfg, True, 15.0, row_tokens=2048, document_mask=True)
    assert abs((masked.activations_gib - t4.activations_gib) - 2 * 2048 ** 2 * 4 / 2**30) < 1e-6
    with pytest.raises(ConfigError, match="does not fit"):
        plan_memory(Shape(l8.config, 30.0), cfg, True, 16.0)
