"""Notebooks 03 and 04: LoRA/QLoRA training with ``train(cfg)``, its memory plan, packing and
fused kernels."""
from helpers.common.generate import compare_on_examples
from helpers.common.plots import plot_losses
from helpers.common.run import RunDir
from helpers.train.loop import TrainConfig, TrainResult, train

__all__ = ["RunDir", "TrainConfig", "TrainResult", "compare_on_examples", "plot_losses", "train"]
