"""Configuration: parameters cell, smoke preset and environment overrides, in that order."""
from dataclasses import dataclass

import pytest

from helpers.config import ConfigError, StepConfig, _coerce
from helpers.train import TrainConfig


@dataclass
class DemoConfig(StepConfig):
    name: str = "x"  # a name
    steps: int = 10  # how many
    rate: float = 0.5  # a rate
    on: bool = False  # a switch
    tags: list[str] | None = None  # a list

    @classmethod
    def smoke_preset(cls):
        return {"steps": 2}


def test_precedence_default_params_smoke_env():
    assert DemoConfig.from_params({}, environ={}).steps == 10
    assert DemoConfig.from_params({"STEPS": 7}, environ={}).steps == 7
    assert DemoConfig.from_params({"STEPS": 7}, environ={"SMOKE": "1"}).steps == 2
    cfg = DemoConfig.from_params({"STEPS": 7}, environ={"SMOKE": "1", "STEPS": "5"})
    assert cfg.steps == 5 and cfg._sources["steps"] == "environment"


def test_environment_strings_are_typed():
    cfg = DemoConfig.from_params({}, environ={"ON": "yes", "RATE": "2e-4", "TAGS": "a, b", "NAME": "n"})
    assert cfg.on is True and cfg.rate == 2e-4 and cfg.tags == ["a", "b"] and cfg.name == "n"
    assert DemoConfig.from_params({}, environ={"TAGS": '["x"]'}).tags == ["x"]
    assert DemoConfig.from_params({}, environ={"TAGS": "none"}).tags is None


def test_bad_values_name_the_variable():
    with pytest.raises(ConfigError, match="STEPS='many'"):
        DemoConfig.from_params({}, environ={"STEPS": "many"})
    with pytest.raises(ConfigError, match="ON="):
        DemoConfig.from_params({}, environ={"ON": "maybe"})
    with pytest.raises(ConfigError, match="no field 'stepz'"):
        DemoConfig.from_params({}, environ={}, stepz=3)


def test_unrelated_notebook_globals_are_ignored():
    cfg = DemoConfig.from_params({"STEPS": 3, "ws": object(), "In": [], "os": None}, environ={})
    assert cfg.steps == 3


def test_describe_shows_value_source_and_comment():
    text = DemoConfig.from_params({"STEPS": 3}, environ={}).describe()
    assert "steps" in text and "parameters" in text and "how many" in text


def test_train_config_validation_messages():
    with pytest.raises(ConfigError, match="Full fine-tuning"):
        TrainConfig.from_params({"FINETUNE": "full", "QUANTIZATION": "4bit"}, environ={})
    with pytest.raises(ConfigError, match="MODE='chat'"):
        TrainConfig.from_params({"MODE": "chat"}, environ={})
    with pytest.raises(ConfigError, match="PER_DEVICE_BATCH_SIZE=0"):
        TrainConfig.from_params({"PER_DEVICE_BATCH_SIZE": 0}, environ={})


def test_save_and_load_roundtrip(tmp_path):
    cfg = TrainConfig.from_params({"LORA_R": 8, "DATASET_PATH": "d.jsonl"}, environ={})
    back = TrainConfig.load(cfg.save(tmp_path / "c.json"))
    assert back == cfg


def test_coerce_int_from_float_string():
    assert _coerce("1e3", int, "N") == 1000
