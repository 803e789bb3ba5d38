"""Shared fixtures of the evaluation tests: a real tiny LoRA adapter (two steps of helpers.train.loop
on the bundled conversations) and one real report of it, each built once per session."""
import pytest
import torch

from helpers.common.resources import chitchat
from helpers.evaluation.config import EvalConfig
from helpers.evaluation.report import evaluate_adapter

EMBEDDED = "embedded/smollm2-135m-instruct"

torch.set_num_threads(1)  # the CI box is shared: one thread is ~10x faster than two fighting


@pytest.fixture(scope="session")
def adapter(tmp_path_factory, embedded_dir):
    """A real LoRA adapter: two steps of helpers.train.loop on the bundled chitchat conversations."""
    from helpers.train import TrainConfig, train
    out = tmp_path_factory.mktemp("sft")
    cfg = TrainConfig(model_name=EMBEDDED, dataset_path=str(chitchat("train")), output_dir=str(out),
                      quantization="none", max_steps=2, per_device_batch_size=2, gradient_accumulation_steps=1,
                      max_seq_len=64, logging_steps=1, eval_steps=0, save_steps=100, max_rows=8, eval_fraction=0.0,
                      report_to="none", gradient_checkpointing=False, learning_rate=5e-3, warmup_ratio=0.0,
                      resume="never")
    return train(cfg).adapter_dir


@pytest.fixture(scope="session")
def report(adapter, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    cfg = EvalConfig(adapter_dir=str(adapter), test_path=str(chitchat("test")), output_dir=str(out),
                     quantization="none", max_examples=4, max_new_tokens=12, batch_size=4, ppl_batch_size=4,
                     bootstrap=200, n_show=2, rouge_backend="rouge-score", general_max_examples=4)
    return evaluate_adapter(cfg)


@pytest.fixture(scope="session")
def tuned_model(adapter):
    """The embedded base model with the tiny adapter attached, and its tokenizer (loaded once)."""
    from helpers.common.models import load_model
    return load_model(EMBEDDED, quantization="none", adapter=str(adapter), verbose=False)
