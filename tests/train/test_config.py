"""The training configuration (helpers/train/config.py): TrainConfig's checks and notebook defaults,
the switches of notebooks 03 and 04 as configs of their own built from the same parameters cell, the
learning-rate rule of packed runs, and a sweep's best settings read back for notebook 04."""
import json

import pytest

from helpers.core.config import ConfigError, registered_configs, siblings
from helpers.core.files import PRETRAIN_RUN, SFT_RUN, SweepFiles
from helpers.train import FinetuneChoices, PretrainSources, TrainConfig, load_best_config
from helpers.train.config import forgetting_warning, packed_step, packs_documents


def test_notebook_switches_are_configs_of_their_notebook_not_training_settings():
    """TEXT_SOURCES (notebook 03) and USE_SWEEP_BEST (04) steer the notebook, not the run: each is a
    field of a small config built from the same parameters cell as TrainConfig."""
    assert registered_configs("03") == [TrainConfig, PretrainSources]
    assert registered_configs("04_finetune") == [TrainConfig, FinetuneChoices]
    assert not {"text_sources", "use_sweep_best"} & set(TrainConfig.field_names())
    assert set(siblings(TrainConfig)) == {PretrainSources, FinetuneChoices}
    cell = {"LORA_R": 8, "RUN_NAME": "mine", "USE_SWEEP_BEST": True}
    assert FinetuneChoices.from_params(cell, environ={}).use_sweep_best is True
    assert TrainConfig.from_params(cell, environ={}).lora_r == 8  # the sibling's name is no error
    assert FinetuneChoices.from_params({}, environ={"USE_SWEEP_BEST": "yes"}).use_sweep_best is True
    assert PretrainSources.from_params({"TEXT_SOURCES": "a.txt, b/"}, environ={}).text_sources == "a.txt, b/"
    with pytest.raises(ConfigError, match="'USE_SWEEP_BEST', which is not a PretrainSources or TrainConfig field"):
        PretrainSources.from_params({"USE_SWEEP_BEST": True}, environ={})  # notebook 04's switch, not 03's
    defaults = TrainConfig.notebook_defaults()
    assert defaults["03"]["run_name"] == PRETRAIN_RUN and defaults["04"]["run_name"] == SFT_RUN


def test_train_config_checks_its_values():
    with pytest.raises(ConfigError, match="MODE='chat'"):
        TrainConfig(mode="chat").validate()
    with pytest.raises(ConfigError, match="SHARD_INDEX=2 with NUM_SHARDS=2: index must be < shards"):
        TrainConfig(num_shards=2, shard_index=2).validate()
    with pytest.raises(ConfigError, match="LORA_R=0: must be at least 1"):
        TrainConfig(lora_r=0).validate()
    assert packs_documents(TrainConfig()) and not packs_documents(TrainConfig(mode="pretrain"))
    assert packs_documents(TrainConfig(mode="pretrain", separate_documents=True))


def test_packed_step_keeps_an_epoch_of_steps_and_scales_the_rate_by_examples_per_step():
    """A packed step takes at most PACKED_STEP_EXAMPLES x the batch in examples: rows of many short
    examples mean fewer rows per step (accumulation first, then the micro-batch), and the rate
    follows the examples a step holds against the batch."""
    cfg = TrainConfig(per_device_batch_size=4, gradient_accumulation_steps=4, learning_rate=2e-4)
    conv = packed_step(cfg, 630, 300)  # k = 2.1: 15 rows would hold 31.5 examples; accumulation 4 x 4 = 16 rows
    assert (conv.micro_batch, conv.accumulation) == (4, 4)
    assert conv.learning_rate == pytest.approx(2e-4 * 16 * 2.1 / 16)
    assert "16 rows per step (34 examples)" in conv.why and "watch the first losses" not in conv.why
    short = packed_step(cfg, 2430, 300)  # k = 8.1: 4 rows per step, 32.4 examples, rate x2.03
    assert (short.micro_batch, short.accumulation) == (4, 1)
    assert short.learning_rate == pytest.approx(2e-4 * 4 * 8.1 / 16)
    assert "4 rows per step (32 examples), not 16: rows of 8.1 examples" in short.why
    tiny = packed_step(cfg, 4800, 300)  # k = 16: 2 rows, the micro-batch shrinks
    assert (tiny.micro_batch, tiny.accumulation) == (2, 1) and tiny.learning_rate == pytest.approx(4e-4)
    one = packed_step(cfg, 300, 300)  # one example per row: the batch and the rate as set
    assert (one.micro_batch, one.accumulation, one.learning_rate) == (4, 4, 2e-4) and "as set" in one.why
    two_gpus = packed_step(cfg.replace(gradient_accumulation_steps=2), 2430, 300, world=2)  # 4 rows over 2 ranks
    assert (two_gpus.micro_batch, two_gpus.accumulation) == (2, 1)
    off = packed_step(cfg.replace(packed_step_examples=0), 2430, 300)  # the rows as set, the rate x k
    assert (off.micro_batch, off.accumulation) == (4, 4) and off.learning_rate == pytest.approx(2e-4 * 8.1)
    assert "Measured up to 16 examples per row and x2.2" in off.why  # x8.1: outside what was measured
    assert packed_step(cfg.replace(packed_lr_scaling="sqrt"), 2430, 300).learning_rate == pytest.approx(
        2e-4 * (4 * 8.1 / 16) ** 0.5)
    wide = packed_step(cfg, 6000, 300)  # k = 20: outside the measured k
    assert (wide.micro_batch, wide.accumulation) == (2, 1) and "Measured up to 16 examples per row" in wide.why
    with pytest.raises(ConfigError, match="PACKED_STEP_EXAMPLES=-1"):
        TrainConfig(packed_step_examples=-1).validate()
    with pytest.raises(ConfigError, match="PACKED_LR_SCALING='cube'"):
        TrainConfig(packed_lr_scaling="cube").validate()


def test_load_best_config_converts_each_override_and_names_what_is_wrong(tmp_path):
    best = SweepFiles(tmp_path / "sweep").best
    best.parent.mkdir()
    with pytest.raises(FileNotFoundError, match="does not exist: run notebook 07"):
        load_best_config(best)
    best.write_text(json.dumps({"overrides": {"lora_r": "16", "learning_rate": 3e-4, "packing": "no"}, "run": "x"}))
    assert load_best_config(best) == {"lora_r": 16, "learning_rate": 3e-4, "packing": False}
    assert TrainConfig().replace(**load_best_config(best)).lora_r == 16  # what notebook 04 does with it
    best.write_text(json.dumps({"overrides": {"use_sweep_best": True}}))  # notebook 04's switch: no training setting
    with pytest.raises(ConfigError, match=r"best_config.json: 'use_sweep_best' is not a TrainConfig field \("):
        load_best_config(best)
    best.write_text(json.dumps({"overrides": {"lora_r": 8.5}}))
    with pytest.raises(ConfigError, match=r"best_config.json\['lora_r'\]=8.5: expected a whole number"):
        load_best_config(best)
    best.write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_best_config(best)
    best.write_text(json.dumps({"run": "x"}))
    with pytest.raises(ConfigError, match="has no 'overrides' object"):
        load_best_config(best)


def test_forgetting_warning_fires_where_general_answers_drifted_and_not_at_the_defaults():
    """Notebook 03's defaults (5e-5, one epoch, no replay) stay quiet; 1e-3 for one epoch of raw
    text, where bench/QUALITY.md 3b measured the drift, warns and names the section; instruction
    tuning and step-capped runs are not judged (not what was measured)."""
    d03 = TrainConfig.notebook_defaults()["03"]
    assert d03["learning_rate"] == 5e-5 and d03.get("replay_share", 0.0) == 0.0
    assert forgetting_warning(TrainConfig(mode="pretrain", **{k: v for k, v in d03.items() if k != "run_name"})) == ""
    loud = forgetting_warning(TrainConfig(mode="pretrain", learning_rate=1e-3, num_train_epochs=1.0))
    assert loud.startswith("WARNING") and "QUALITY.md 3b" in loud and "1e-03" not in loud and "0.001" in loud
    assert forgetting_warning(TrainConfig(mode="pretrain", learning_rate=2e-4, num_train_epochs=6.0))
    assert forgetting_warning(TrainConfig(mode="sft", learning_rate=1e-3, num_train_epochs=3.0)) == ""
    assert forgetting_warning(TrainConfig(mode="pretrain", learning_rate=1e-3, max_steps=6)) == ""
