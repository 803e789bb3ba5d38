"""What a person sees around the steps: the data notebooks 04 and 07 fall back to (never silently),
the configuration summary, and the pipeline console's progress (real files, the real kernel)."""
from helpers.core.show import box_text
from helpers.train import TrainConfig


def test_box_wraps_and_frames_every_line():
    text = box_text("Title", ["x " * 80, "short"])
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1 and all(line.startswith("!!") for line in lines)


def test_describe_lists_what_differs_with_its_source_and_full_lists_all():
    cfg = TrainConfig.from_params({"LORA_R": 8, "RUN_NAME": "", "MAX_STEPS": -1}, environ={"LEARNING_RATE": "1e-4"},
                                  output_dir="/tmp/x/sft")
    text = cfg.describe()
    lines = text.splitlines()
    assert lines[0].startswith("TrainConfig: 3 of ") and "describe(full=True)" in lines[0]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"output_dir", "lora_r", "learning_rate"}  # RUN_NAME and MAX_STEPS equal the defaults
    assert "parameters cell" in rows["lora_r"] and "LoRA rank" in rows["lora_r"]
    assert "environment" in rows["learning_rate"] and "set in code" in rows["output_dir"]
    full = cfg.describe(full=True)
    assert len(full.splitlines()) == 1 + len(TrainConfig.field_names()) and "default" in full
    assert TrainConfig().describe().endswith(f"(cfg.describe(full=True) lists all {len(TrainConfig.field_names())}).")


def test_describe_puts_the_smoke_preset_in_one_paragraph():
    text = TrainConfig.from_params({}, environ={"SMOKE": "1"}).describe()
    assert "from the SMOKE preset" in text and "max_steps=6" in text
    assert not any(line.startswith("  max_steps ") for line in text.splitlines())
