"""Notebook 05: base against tuned on held-out rows, what tuning cost on general prompts,
train/test leakage, and the retrieval baseline, as a report with plots; an LLM judge of the answers
beside ROUGE (``judge``); the BM25 index of the user's chunks (``retrieval``) also serves notebook
06's documents preset."""
from helpers.common.run import RunDir, check_adapter
from helpers.evaluation.config import EvalConfig, default_chunks_path, default_test_path
from helpers.evaluation.judge import GRADE_ANSWER_PROMPT, PAIRWISE_PROMPT, judge_answers, load_judge_prompts
from helpers.evaluation.judge_config import JudgeConfig, make_judge
from helpers.evaluation.markdown import (general_markdown, judge_markdown, leakage_line, metrics_table,
                                         report_files, retrieval_markdown, side_by_side)
from helpers.evaluation.metrics import EvalError
from helpers.evaluation.report import evaluate_adapter
from helpers.evaluation.retrieval import ChunkIndex, Passage, RetrievalError, ask_with_passages, passages_block

__all__ = ["GRADE_ANSWER_PROMPT", "PAIRWISE_PROMPT", "ChunkIndex", "EvalConfig", "EvalError", "JudgeConfig",
           "Passage", "RetrievalError", "RunDir", "ask_with_passages", "check_adapter", "default_chunks_path",
           "default_test_path",
           "evaluate_adapter", "general_markdown", "judge_answers", "judge_markdown", "leakage_line",
           "load_judge_prompts", "make_judge", "metrics_table", "passages_block", "report_files", "retrieval_markdown",
           "side_by_side"]
