"""Configuration: default < parameters cell < smoke preset < environment < code, one conversion of
strings to field types, and names that are no setting are errors with the near miss."""
import os
import warnings
from dataclasses import dataclass, field

import pytest

from helpers.chat.session import ChatConfig
from helpers.core.config import ConfigError, ConfigWarning, StepConfig, coerce, coerce_field, parameter_names, siblings
from helpers.notebooks import notebook_configs
from helpers.evaluation.config import EvalConfig
from helpers.chat.export import ExportConfig
from helpers.train import FinetuneChoices, PretrainSources, TrainConfig


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


def test_precedence_the_full_order_code_last():
    """default < parameters cell < SMOKE preset < environment < code, each layer over the one before."""
    layers = [({}, {}, {}, 10, None), ({"STEPS": 7}, {}, {}, 7, "parameters"),
              ({"STEPS": 7}, {"SMOKE": "1"}, {}, 2, "SMOKE preset"),
              ({"STEPS": 7}, {"SMOKE": "1", "STEPS": "5"}, {}, 5, "environment"),
              ({"STEPS": 7}, {"SMOKE": "1", "STEPS": "5"}, {"steps": 4}, 4, "code")]
    for params, environ, code, steps, source in layers:
        cfg = DemoConfig.from_params(params, environ=environ, **code)
        assert cfg.steps == steps and cfg._sources.get("steps") == source, (params, environ, code)
    # code beats the SMOKE preset, and the preset still applies to what code does not set
    cfg = DemoConfig.from_params({}, environ={"SMOKE": "1"}, name="mine")
    assert (cfg.steps, cfg.name) == (2, "mine") and cfg._sources == {"steps": "SMOKE preset", "name": "code"}
    # replace() is code too: after the environment
    cfg = DemoConfig.from_params({}, environ={"STEPS": "5"}).replace(steps=3)
    assert cfg.steps == 3 and cfg._sources["steps"] == "code"
    assert "5. values the notebook sets in code" in __import__("helpers.core.config").core.config.__doc__


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
    # UPPER_CASE names that are no data (an imported class, a module) and the setup cell's KIT
    assert DemoConfig.from_params({"STEPS": 3, "KIT": "/content/kit", "ROOT_CLASS": DemoConfig, "OS": os},
                                  environ={}).steps == 3


def test_a_misspelt_parameter_is_an_error_with_the_near_miss():
    with pytest.raises(ConfigError, match="The parameters cell names 'STEPZ', which is not a DemoConfig field; "
                                          "did you mean 'STEPS'"):
        DemoConfig.from_params({"STEPZ": 3}, environ={})
    with pytest.raises(ConfigError, match="'WARMUP', which is not a DemoConfig field. Fields: NAME, STEPS"):
        DemoConfig.from_params({"WARMUP": 3}, environ={})
    with pytest.raises(ConfigError, match="'LERNING_RATE', which is not a TrainConfig or PretrainSources or "
                                          "FinetuneChoices field; did you mean 'LEARNING_RATE'"):
        TrainConfig.from_params({"LERNING_RATE": 1e-4}, environ={})
    with pytest.raises(ConfigError, match="no field 'stepz'; did you mean 'steps'"):
        DemoConfig.from_params({}, environ={}, stepz=3)


def test_a_notebook_namespace_takes_its_parameters_from_the_parameters_cell():
    """In a notebook (globals with IPython's cell history In) the parameters are the names of the last
    cell run with '# @param' fields and of papermill's injected cell; later cells' constants are not."""
    cell = '# @markdown `STEPS`: how many\nSTEPS = 3  # @param {type:"integer"}\nRATE = 0.1  # @param {type:"number"}\n'
    history = ["", "import os\nKIT = '/content/kit'", cell, "SCRIPTED = [('a', ['b'])]\nMAX = 5",
               "cfg = DemoConfig.from_params(globals())"]
    ns = {"In": history, "KIT": "/content/kit", "STEPS": 3, "RATE": 0.1, "SCRIPTED": [("a", ["b"])], "MAX": 5}
    assert parameter_names(ns) == ["STEPS", "RATE"]
    cfg = DemoConfig.from_params(ns, environ={})
    assert (cfg.steps, cfg.rate) == (3, 0.1)
    # a name typed into the cell (edited on Colab and run again): an error even without '# @param'
    edited = cell + "STEP = 4\n"
    with pytest.raises(ConfigError, match="'STEP', which is not a DemoConfig field; did you mean 'STEPS'"):
        DemoConfig.from_params(dict(ns, In=history + [edited, "cfg = ..."], STEP=4), environ={})
    # papermill's injected cell after it
    injected = "# Parameters\nSTEPZ = 8\n"
    assert parameter_names(dict(ns, In=history[:3] + [injected] + history[3:])) == ["STEPS", "RATE", "STEPZ"]
    with pytest.raises(ConfigError, match="'STEPZ'.*did you mean 'STEPS'"):
        DemoConfig.from_params(dict(ns, In=history[:3] + [injected] + history[3:], STEPZ=8), environ={})


def test_configs_built_from_one_cell_accept_each_others_names():
    assert siblings(ChatConfig) == (ExportConfig,) and siblings(ExportConfig) == (ChatConfig,)
    assert siblings(TrainConfig) == (PretrainSources, FinetuneChoices)  # notebook 03's and 04's own switches
    both = {"RUN_NAME": "other", "PRESET": "storymaker", "GGUF_TYPE": "q8_0", "MERGE": True}
    assert ChatConfig.from_params(both, environ={}).run_name == "other"
    assert ExportConfig.from_params(both, environ={}).gguf_type == "q8_0"
    with pytest.raises(ConfigError, match="'GGUF_TYPE', which is not a EvalConfig or JudgeConfig field"):
        EvalConfig.from_params({"GGUF_TYPE": "f16"}, environ={})
    with pytest.raises(ConfigError, match="'GGUF_TYP', which is not a ChatConfig or ExportConfig field; "
                                          "did you mean 'GGUF_TYPE'"):
        ChatConfig.from_params({"GGUF_TYP": "f16"}, environ={})


def test_an_environment_variable_that_is_a_near_miss_warns():
    with pytest.warns(ConfigWarning, match="MAX_STEP='5' is not a setting of TrainConfig and is ignored; "
                                           "did you mean MAX_STEPS"):
        cfg = TrainConfig.from_params({}, environ={"MAX_STEP": "5"})
    assert cfg.max_steps == -1
    with pytest.warns(ConfigWarning, match="STEP='5'.*did you mean STEPS"):
        DemoConfig.from_params({}, environ={"STEP": "5"})
    # variables of other programs, of the kit itself, and fields of another step's config stay quiet
    common = {k: "1" for k in ("HOME", "PATH", "USER", "LANG", "TERM", "PWD", "SHELL", "HOSTNAME", "TMPDIR", "TZ",
                               "COLAB_GPU", "COLAB_RELEASE_TAG", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS",
                               "TOKENIZERS_PARALLELISM", "HF_HOME", "HF_TOKEN", "TEACHER_API_KEY", "MPLBACKEND",
                               "PYTHONPATH", "LD_LIBRARY_PATH", "SMOKE", "LLAMA_KIT_WORKDIR")}
    common.update(MAX_NEW_TOKENS="16", LORA_R="8", EVAL_SIZE="4", GGUF_TYPE="f16", MAX_STEPS_PER_RUN="3")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for nb in ("01", "02", "03", "04", "05", "06", "07"):
            for cls in notebook_configs(nb):
                cls.from_params({}, environ=dict(os.environ, **common))


def test_describe_shows_value_source_and_comment():
    text = DemoConfig.from_params({"STEPS": 3}, environ={}).describe()
    assert "steps" in text and "parameters" in text and "how many" in text


def test_notebook_comments_for_is_the_field_comment_unless_the_notebook_declares_its_own():
    from helpers.core.config import notebook_comments_for

    @dataclass
    class OwnWords(DemoConfig):
        @classmethod
        def notebook_comments(cls):
            return {"04": {"steps": "how many, in notebook 04's words"}}

    assert notebook_comments_for(OwnWords, "04_finetune")["steps"] == "how many, in notebook 04's words"
    assert notebook_comments_for(OwnWords, "04")["rate"] == "a rate"
    assert notebook_comments_for(OwnWords, "05") == {"name": "a name", "steps": "how many", "rate": "a rate",
                                                     "on": "a switch", "tags": "a list"}
    assert (
        "how many, in" not in OwnWords.from_params({"STEPS": 3}, environ={}).describe()
    )  # describe() shows the field comment
    assert notebook_comments_for(TrainConfig, "03")["lora_r"] != notebook_comments_for(TrainConfig, "04")["lora_r"]


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
    assert coerce("1e3", int, "N") == 1000
    assert coerce_field(DemoConfig, "steps", "1e3") == 1000


@dataclass
class Typed(StepConfig):
    n: int = 1  # a count
    x: float = 0.5  # a number
    flag: bool = False  # a switch
    words: list[str] = field(default_factory=list)  # a list
    table: dict = field(default_factory=dict)  # an object
    maybe: str | None = None  # optional text


def test_coerce_field_reads_strings_and_checks_other_values():
    """The one conversion: the parameters cell, the environment, a sweep's GRID/BASE and best_config.json."""
    assert coerce_field(Typed, "n", "16") == 16 and coerce_field(Typed, "n", 16.0) == 16
    assert coerce_field(Typed, "x", 1) == 1.0 and type(coerce_field(Typed, "x", 1)) is float
    assert coerce_field(Typed, "flag", "yes") is True and coerce_field(Typed, "flag", False) is False
    assert coerce_field(Typed, "words", "a, b") == ["a", "b"] and coerce_field(Typed, "words", ("a",)) == ["a"]
    assert coerce_field(Typed, "table", '{"lora_r": [8]}') == {"lora_r": [8]}
    assert coerce_field(Typed, "maybe", "none") is None and coerce_field(Typed, "maybe", "text") == "text"
    for name, value, message in [
        ("n", 16.5, "N=16.5: expected a whole number"),
        ("n", True, "expected a whole number"),
        ("x", "fast", "X='fast': cannot read it as float"),
        ("flag", 1, "FLAG=1: expected true or false"),
        ("words", [1], "expected a string"),
        ("table", [1], "expected a JSON object"),
        ("n", "many", "N='many'"),
    ]:
        with pytest.raises(ConfigError, match=message):
            coerce_field(Typed, name, value)
    with pytest.raises(ConfigError, match=r"GRID\['n'\]=16.5: expected a whole number"):
        coerce_field(Typed, "n", 16.5, "GRID")
    with pytest.raises(ConfigError, match="GRID names 'nn', which is not a Typed field; did you mean 'n'"):
        coerce_field(Typed, "nn", 1, "GRID")
    # the parameters cell goes through it too: a float where a whole number belongs is an error
    with pytest.raises(ConfigError, match="LORA_R=8.5: expected a whole number"):
        TrainConfig.from_params({"LORA_R": 8.5}, environ={})
    assert TrainConfig.from_params({"NUM_TRAIN_EPOCHS": 2}, environ={}).num_train_epochs == 2.0


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


def test_describe_rows_fit_one_line_and_never_cut_a_value():
    """Each row fits DESCRIBE_WIDTH characters (a notebook does not wrap it): the value is whole, the
    field's comment cut at a word with "…" to the room left; the SMOKE paragraph keeps every value whole."""
    from helpers.core.config import DESCRIBE_WIDTH
    path = "/content/drive/MyDrive/llama-kit/outputs/sft"  # where notebook 04 writes on Colab
    cfg = TrainConfig.from_params({"LORA_R": 8, "TARGET_MODULES": "q_proj,k_proj,v_proj,o_proj"},
                                  environ={"SMOKE": "1"}, output_dir=path)
    for full in (False, True):
        text = cfg.describe(full=full)
        assert "..." not in text and repr(path) in text and "'q_proj,k_proj,v_proj,o_proj'" in text
        assert all(len(line) <= DESCRIBE_WIDTH for line in text.splitlines()), text
    longer = "/content/drive/MyDrive/" + "a-folder-with-a-long-name/" * 5 + "sft"  # a value no line holds: whole
    assert repr(longer) in cfg.replace(output_dir=longer).describe()
    rows = {line.split()[0]: line for line in cfg.describe(full=True).splitlines()[1:]}
    assert rows["lora_r"].endswith("LoRA rank: the adapter's size")  # a short comment whole
    assert any(line.endswith("…") for line in rows.values())  # a long one cut at a word
    assert "model_name='embedded/smollm2-135m-instruct'" in cfg.describe()
