"""Notebooks 03 and 04: LoRA/QLoRA training with ``train(cfg)``, its memory plan, packing and
fused kernels."""
from helpers.common.generate import compare_on_examples
from helpers.common.plots import plot_losses
from helpers.common.run import RunDir
from helpers.core.files import PRETRAIN_RUN, SFT_RUN
from helpers.train.config import FinetuneChoices, PretrainSources, TrainConfig, TrainResult, load_best_config
from helpers.train.loop import train

__all__ = ["PRETRAIN_RUN", "SFT_RUN", "FinetuneChoices", "PretrainSources", "RunDir", "TrainConfig", "TrainResult",
           "compare_on_examples", "load_best_config", "plot_losses", "train"]
