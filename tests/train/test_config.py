"""The training configuration (helpers/train/config.py): TrainConfig's checks and notebook defaults,
the switches of notebooks 03 and 04 as configs of their own built from the same parameters cell, the
learning-rate rule of packed runs, and a sweep's best settings read back for notebook 04."""
import json

import pytest

from helpers.core.config import ConfigError, registered_configs, siblings
from helpers.core.files import PRETRAIN_RUN, SFT_RUN, SweepFiles
from helpers.train import FinetuneChoices, PretrainSources, TrainConfig, load_best_config
from helpers.train.config import packed_lr, packs_documents


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


def test_packed_learning_rate_rule():
    """PACKED_LR_SCALING: the rate of a batch of examples, carried to packed rows that hold k of them."""
    assert packed_lr(2e-4, 300, 75, "sqrt")[0] == pytest.approx(4e-4)
    assert packed_lr(2e-4, 300, 75, "linear")[0] == pytest.approx(8e-4)
    lr, why = packed_lr(2e-4, 300, 75, "none")
    assert lr == 2e-4 and "as set" in why and "4.00 examples per row" in why
    assert packed_lr(2e-4, 10, 10, "sqrt")[0] == 2e-4  # one example per row: nothing to carry
    assert "learning rate 0.0002 x sqrt(4.00) = 0.0004 for 4.00 examples per row" in packed_lr(2e-4, 300, 75, "sqrt")[1]
    assert "watch the first losses" not in packed_lr(2e-4, 300, 75, "sqrt")[1]  # x2: inside what was measured
    assert "measured up to x2.1 (bench/QUALITY.md); at x4.0" in packed_lr(2e-4, 300, 75, "linear")[1]
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
