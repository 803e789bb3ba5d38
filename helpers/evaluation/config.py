"""Notebook 05's settings (``EvalConfig``) and what they resolve to for one run: the base model, the
prompt format, the held-out set and the output folders (the config's values, else the training run's)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.common.access import check_model_access
from helpers.common.run import RunDir, check_adapter
from helpers.core.config import ConfigError, StepConfig
from helpers.core.files import SFT_RUN, DatasetFiles
from helpers.dataset import default_dataset
from helpers.evaluation.metrics import ROUGE_BACKENDS, EvalError

LONG_PROMPT_POLICIES = ("truncate", "skip", "error")


@dataclass
class EvalConfig(StepConfig, notebooks=("05",)):
    """One base-vs-tuned evaluation. Defaults suit a Colab GPU."""
    adapter_dir: str = ""  # LoRA adapter to evaluate; "" = the one notebook 04 wrote (outputs/RUN_NAME/adapter)
    test_path: str = ""  # held-out JSONL with references; "" = test.jsonl beside the dataset the adapter was trained on
    output_dir: str = ""  # where the report goes ("" = an "eval" folder beside the adapter)
    model_name: str = ""  # base model; "" = the one the adapter was trained on (Llama-3.2-1B-Instruct on a GPU is
                          # gated: accept its licence on huggingface.co and add an HF_TOKEN secret; checked first)
    quantization: str = "auto"  # "4bit" (an 8B model fits a T4), "8bit", "16bit", "none" (fp32); "auto" = 4bit on GPU,
                                # fp32 on CPU
    template: str = ""  # prompt format ("" = the one used in training, from the run's manifest)
    system_prompt: str = ""  # system message ("" = the one used in training, if any)
    reference_turn: str = "first"  # conversations: "first" or "last" assistant reply is the reference
    max_examples: int = 0  # evaluate only the first N held-out prompts (0 = all)
    max_new_tokens: int = 256  # longest answer, in tokens
    batch_size: int = 16  # prompts per generation batch
    ppl_batch_size: int = 8  # sequences per perplexity batch
    do_sample: bool = False  # False = greedy decoding (reproducible); True = sampling with TEMPERATURE and TOP_P
    temperature: float = 0.7  # sampling temperature (DO_SAMPLE only)
    top_p: float = 0.9  # nucleus sampling mass (DO_SAMPLE only)
    max_context: int = 0  # tokens the model may see (0 = the model's own context length)
    long_prompts: str = "truncate"  # prompt + answer longer than the context: "truncate" (keep the end), "skip" or
                                    # "error"
    rouge_backend: str = "auto"  # "auto" (evaluate if it loads, else rouge-score), "rouge-score", "evaluate"
    copy_threshold: float = 0.6  # an answer copies the prompt when this share of its words is one run copied from it
    copy_min_words: int = 4  # shorter answers are never counted as copies
    bootstrap: int = 1000  # bootstrap resamples for the 95% confidence intervals
    seed: int = 0  # seed of the bootstrap and of sampling
    n_show: int = 5  # answers shown side by side in the report
    run_name: str = SFT_RUN  # notebook 04's run folder under the outputs folder: the adapter evaluated, the report in
                             # its eval/
    general_path: str = ""  # general prompts for the forgetting check (JSONL with references); "" = the bundled
                            # conversations' test split; "none" = skip
    general_max_examples: int = 100  # general prompts evaluated (0 = all)
    forgetting_tolerance: float = 0.02  # relative rise of general perplexity still counted as "held" (0.02 = 2%)
    retrieval_k: int = 3  # retrieval baseline: chunks of your documents (BM25) put before each question (0 = no
                          # baseline)
    chunks_path: str = ""  # the chunks retrieval searches; "" = beside the held-out set, else notebook 02's
    leakage_threshold: float = 0.5  # a held-out row whose word 8-grams are at least this share in the training text
                                    # counts as leaked
    drop_leaked: bool = False  # leave leaked held-out rows out of the scores (False = only report them)

    @classmethod
    def smoke_preset(cls) -> dict[str, Any]:
        return dict(model_name="", quantization="none", max_examples=8, max_new_tokens=24, batch_size=8,
                    ppl_batch_size=4, bootstrap=200, n_show=3, general_max_examples=4)

    def check_access(self) -> None:
        """A base named here is checked at once; "" (the adapter's) when the model is loaded."""
        check_model_access(self.model_name)

    def validate(self) -> None:
        if self.long_prompts not in LONG_PROMPT_POLICIES:
            raise ConfigError(f"LONG_PROMPTS={self.long_prompts!r}: use one of {', '.join(LONG_PROMPT_POLICIES)}.")
        if self.rouge_backend not in ROUGE_BACKENDS:
            raise ConfigError(f"ROUGE_BACKEND={self.rouge_backend!r}: use one of {', '.join(ROUGE_BACKENDS)}.")
        if self.reference_turn not in ("first", "last"):
            raise ConfigError(f"REFERENCE_TURN={self.reference_turn!r}: use 'first' or 'last'.")
        for name in ("max_new_tokens", "batch_size", "ppl_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.upper()}={getattr(self, name)}: must be at least 1.")
        if self.bootstrap < 0 or 0 < self.bootstrap < 50:
            raise ConfigError(f"BOOTSTRAP={self.bootstrap}: use 0 (no intervals) or at least 50 resamples.")
        if not 0 < self.copy_threshold <= 1:
            raise ConfigError(f"COPY_THRESHOLD={self.copy_threshold}: must be in (0, 1].")
        if self.max_examples < 0 or self.max_context < 0 or self.general_max_examples < 0 or self.retrieval_k < 0:
            raise ConfigError("MAX_EXAMPLES, GENERAL_MAX_EXAMPLES, MAX_CONTEXT and RETRIEVAL_K must be 0 or positive.")
        if not 0 <= self.forgetting_tolerance < 1:
            raise ConfigError(f"FORGETTING_TOLERANCE={self.forgetting_tolerance}: a relative rise in [0, 1), "
                              "e.g. 0.02.")
        if not 0 < self.leakage_threshold <= 1:
            raise ConfigError(f"LEAKAGE_THRESHOLD={self.leakage_threshold}: must be in (0, 1].")


def default_test_path(adapter_dir: str | os.PathLike, ws=None) -> Path:
    """test.jsonl beside the dataset the adapter was trained on (from the run's manifest),
    else beside notebook 04's default dataset."""
    trained_on = RunDir.of(adapter_dir).dataset_path
    if trained_on:
        return DatasetFiles.beside(trained_on).test
    if ws is not None:
        return DatasetFiles.beside(default_dataset(ws)).test
    raise EvalError(f"No TEST_PATH given and no run manifest beside {adapter_dir} says which dataset it was "
                    "trained on.")


def default_chunks_path(test_path: str | os.PathLike, ws=None) -> Path:
    """The chunks retrieval searches: chunks.jsonl beside the held-out set (notebook 02 wrote both), else
    the workspace's (notebook 02's chunks of your documents, for held-out rows from elsewhere: an import,
    the bundled conversations), else the first (named in the section that says it was not measured)."""
    beside = Path(DatasetFiles.beside(test_path).chunks)
    if beside.is_file() or ws is None:
        return beside
    own = Path(ws.dataset.chunks)
    return own if own.is_file() else beside


@dataclass
class EvalInputs:
    """What one evaluation reads and where it writes, resolved from the config and the run's metadata."""
    model_name: str
    template: str  # a prompt format name, or "auto"
    system: str | None
    test_path: Path
    out_dir: Path
    plots_dir: Path


def resolve_inputs(cfg: EvalConfig, plots_dir: str | os.PathLike | None) -> EvalInputs:
    """The base model, prompt format, system prompt and held-out set (the config's, else the
    training run's), and the output folders."""
    found = check_adapter(cfg.adapter_dir, cfg.model_name, error=EvalError)
    model_name, train_cfg = found.model_name, found.run.config
    test_path = Path(cfg.test_path) if cfg.test_path else default_test_path(cfg.adapter_dir)
    out_dir = Path(cfg.output_dir) if cfg.output_dir else Path(cfg.adapter_dir).parent / "eval"
    return EvalInputs(model_name=model_name,
                      template=cfg.template or train_cfg.get("template") or "auto",
                      system=cfg.system_prompt or train_cfg.get("system_prompt") or None,
                      test_path=test_path, out_dir=out_dir,
                      plots_dir=Path(plots_dir) if plots_dir else out_dir / "plots")
