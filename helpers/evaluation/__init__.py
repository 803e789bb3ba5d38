"""Notebook 05: base against tuned on held-out rows, what tuning cost on general prompts, and
train/test leakage, as a report with plots."""
from helpers.common.run import RunDir, check_adapter
from helpers.evaluation.config import EvalConfig, default_test_path
from helpers.evaluation.markdown import general_markdown, leakage_line, metrics_table, side_by_side
from helpers.evaluation.metrics import EvalError
from helpers.evaluation.report import evaluate_adapter

__all__ = ["EvalConfig", "EvalError", "RunDir", "check_adapter", "default_test_path", "evaluate_adapter",
           "general_markdown", "leakage_line", "metrics_table", "side_by_side"]
