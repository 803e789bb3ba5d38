"""Notebook 05's judge settings (``JudgeConfig``) and the judge they make: an OpenAI-compatible endpoint
(``JUDGE_BASE_URL``, else notebook 02's teacher endpoint from ``build_summary.json``), a local
transformers model (``JUDGE="local"``, the embedded model under SMOKE), or none (the report says how to
add one). The key comes from the environment or Colab's secret named by ``JUDGE_KEY_SECRET``
(``TEACHER_API_KEY`` when judging with the teacher's endpoint and that secret is unset); it is never
printed."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.common.access import check_model_access
from helpers.common.models import default_model_name
from helpers.core.config import ConfigError, StepConfig
from helpers.core.files import DatasetFiles
from helpers.dataset import HttpTeacher, LocalTeacher

JUDGE_BACKENDS = ("auto", "http", "local", "none")
LOCAL_PREFILLS = {"grade": '{"verdict": "', "pair": '{"winner": "'}  # a small local judge starts inside the JSON


@dataclass
class JudgeConfig(StepConfig, notebooks=("05",)):
    """Who judges the held-out answers, and what it may cost."""
    judge: str = "auto"  # "auto" (JUDGE_BASE_URL, else notebook 02's teacher endpoint, else none), "http", "local" (a
                         # transformers model), "none"
    judge_base_url: str = ""  # OpenAI-compatible endpoint of the judge; "" = notebook 02's teacher endpoint
    judge_model: str = ""  # model name at that endpoint; "" = the teacher's model
    judge_key_secret: str = "JUDGE_API_KEY"  # environment variable or Colab secret holding the judge's key (never the
                                             # key itself); TEACHER_API_KEY when unset and judging with the teacher
    local_judge_model: str = ""  # transformers model for JUDGE="local"; "" = the default model
    judge_prompt_file: str = ""  # your prompt grading one answer ({question}, {reference}, {passage}, {answer}); ""
                                 # = ours (printed below)
    pairwise_prompt_file: str = ""  # your prompt comparing two answers ({question}, {reference}, {passage},
                                    # {answer_a}, {answer_b}); "" = ours
    judge_max_examples: int = 0  # judge at most this many held-out prompts (0 = all); 4 requests each
    judge_max_new_tokens: int = 200  # longest verdict, in tokens
    judge_concurrency: int = 4  # judge requests in flight at once
    judge_price_input_per_m: float = 0.0  # USD per million prompt tokens, for the cost estimate
    judge_price_output_per_m: float = 0.0  # USD per million completion tokens, for the cost estimate

    @classmethod
    def smoke_preset(cls) -> dict[str, Any]:
        return {"judge": "local", "local_judge_model": "embedded/smollm2-135m-instruct", "judge_max_examples": 1,
                "judge_max_new_tokens": 32, "judge_concurrency": 1}

    def check_access(self) -> None:
        """A local judge's model is checked before the evaluation starts."""
        if self.judge == "local":
            check_model_access(self.local_judge_model or default_model_name())

    def validate(self) -> None:
        if self.judge not in JUDGE_BACKENDS:
            raise ConfigError(f"JUDGE={self.judge!r}: use one of {', '.join(JUDGE_BACKENDS)}.")
        if self.judge_max_examples < 0 or self.judge_max_new_tokens < 8 or self.judge_concurrency < 1:
            raise ConfigError("JUDGE_MAX_EXAMPLES must be 0 or positive, JUDGE_MAX_NEW_TOKENS at least 8 and "
                              "JUDGE_CONCURRENCY at least 1.")


def secret(name: str) -> str | None:
    """The value of ``name`` in the environment, else in Colab's secret store (never printed)."""
    if not name:
        return None
    if os.environ.get(name):
        return os.environ[name]
    if "google.colab" in sys.modules:
        try:
            from google.colab import userdata  # type: ignore
            return userdata.get(name)
        except Exception:
            return None
    return None


def teacher_endpoint(test_path: str | os.PathLike) -> tuple[str, str]:
    """Notebook 02's teacher endpoint and model, from the build summary beside the held-out set ("" when
    there is none, or the teacher was a local model)."""
    summary = DatasetFiles.beside(test_path).summary
    try:
        s = json.loads(Path(summary).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "", ""
    return s.get("teacher_url") or "", (s.get("teacher") or {}).get("teacher", "") if s.get("teacher_url") else ""


@dataclass
class Judge:
    """The judge: one asker for grading answers and one for pairwise comparisons (the same endpoint; a
    local model with a different start of answer), and where it came from."""
    grader: Any
    comparer: Any
    how: str

    @property
    def name(self) -> str:
        return self.grader.name


def make_judge(jcfg: JudgeConfig, test_path: str | os.PathLike) -> tuple[Judge | None, str]:
    """The judge the settings ask for, or None and why there is none."""
    if jcfg.judge == "none":
        return None, "JUDGE='none'"
    if jcfg.judge == "local":
        name = jcfg.local_judge_model or default_model_name()
        grader, comparer = (LocalTeacher(name, max_new_tokens=jcfg.judge_max_new_tokens, temperature=0.0,
                                         prefill=LOCAL_PREFILLS[k]) for k in ("grade", "pair"))
        return Judge(grader, comparer, f"local model {name} (JUDGE='local')"), ""
    url, model, how = jcfg.judge_base_url, jcfg.judge_model, "JUDGE_BASE_URL"
    key = secret(jcfg.judge_key_secret)
    if not url:
        url, teacher_model = teacher_endpoint(test_path)
        model, how = model or teacher_model, "notebook 02's teacher endpoint"
        key = key or secret("TEACHER_API_KEY")
    if not url:
        return None, ("no judge endpoint: JUDGE_BASE_URL is empty and notebook 02's teacher was not an "
                      "OpenAI-compatible endpoint")
    if not model:
        return None, f"no judge model: set JUDGE_MODEL to a model that {url} serves"
    http = HttpTeacher(url, model, api_key=key or "", max_new_tokens=jcfg.judge_max_new_tokens, temperature=0.0,
                       concurrency=jcfg.judge_concurrency)
    return Judge(http, http, f"{model} at {url} ({how})"), ""
