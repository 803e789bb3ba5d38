"""Notebook 07: a hyperparameter sweep on a fixed subset, on an Optuna study (one or several workers),
with loss curves overlaid and the best configuration for notebook 04."""
from helpers.dataset import default_dataset
from helpers.sweep.config import SweepConfig
from helpers.sweep.runner import run_sweep
from helpers.sweep.results import best_markdown, table_html
from helpers.train import load_best_config

__all__ = ["SweepConfig", "best_markdown", "default_dataset", "load_best_config", "run_sweep", "table_html"]
