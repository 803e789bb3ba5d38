# %% [markdown]
# # 05 · Base vs tuned: an honest evaluation
#
# Compare the fine-tuned adapter from notebook 04 with its base model on the held-out split
# (prompts never trained on): answers from both (the base model loaded once, the adapter switched
# off and on), ROUGE-1/2/L against the references, perplexity of the references on the reply
# tokens only, answer length, a copy check, and 95% bootstrap confidence intervals on every number
# and every difference, so a small test set does not oversell a result. Beside the in-domain
# scores: what tuning cost on general prompts (forgetting), and how much of the test set the
# training set already held word for word (leakage). The report (JSON + Markdown) is saved beside
# the adapter. Beside them, a retrieval baseline: both models again with the most relevant chunks
# of your documents in the prompt, and one verdict line on whether fine-tuning, retrieval or both
# together answer best. An LLM judge (notebook 02's teacher endpoint, or your own `JUDGE_*`
# settings) then says which answers are right and which model answers better, beside ROUGE.
#
# [![Open-In-Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/llama-kit/llama-notebook-kit/blob/main/notebooks/05_evaluate.ipynb)

# %% cellView="form"
# @title Setup: on Colab, fetch the kit and install it with its pins (Colab's torch is kept)
import os, sys
if "google.colab" in sys.modules:
    KIT = os.path.join(os.environ.get("LLAMA_KIT_COLAB_ROOT", "/content"), "llama-notebook-kit")
    if not os.path.isdir(KIT):
        REPO = os.environ.get("LLAMA_KIT_REPO", "https://github.com/llama-kit/llama-notebook-kit")
        get_ipython().system(f"git clone -q --depth 1 {REPO} {KIT}")
    get_ipython().system(f"{sys.executable} {KIT}/scripts/install.py --colab")
    os.chdir(f"{KIT}/notebooks")
from helpers.common.workspace import setup_notebook
ws = setup_notebook("05 evaluate")

# %% tags=["parameters"]
# @markdown `RUN_NAME`: notebook 04's run folder under the outputs folder: the adapter evaluated, the report in its
# @markdown eval/
RUN_NAME = "sft"  # @param {type:"string"}
# @markdown `ADAPTER_DIR`: LoRA adapter to evaluate; "" = the one notebook 04 wrote (outputs/RUN_NAME/adapter)
ADAPTER_DIR = ""  # @param {type:"string"}
# @markdown `TEST_PATH`: held-out JSONL with references; "" = test.jsonl beside the dataset the adapter was trained on
TEST_PATH = ""  # @param {type:"string"}
# @markdown `MODEL_NAME`: base model; "" = the one the adapter was trained on (Llama-3.2-1B-Instruct on a GPU is gated:
# @markdown accept its licence on huggingface.co and add an HF_TOKEN secret; checked first)
MODEL_NAME = ""  # @param {type:"string"}
# @markdown `QUANTIZATION`: "4bit" (an 8B model fits a T4), "8bit", "16bit", "none" (fp32); "auto" = 4bit on GPU, fp32
# @markdown on CPU
QUANTIZATION = "auto"  # @param ["auto", "4bit", "8bit", "16bit", "none"]
# @markdown `MAX_EXAMPLES`: evaluate only the first N held-out prompts (0 = all)
MAX_EXAMPLES = 0  # @param {type:"integer"}
# @markdown `MAX_NEW_TOKENS`: longest answer, in tokens
MAX_NEW_TOKENS = 256  # @param {type:"integer"}
# @markdown `BATCH_SIZE`: prompts per generation batch
BATCH_SIZE = 16  # @param {type:"integer"}
# @markdown `DO_SAMPLE`: False = greedy decoding (reproducible); True = sampling with TEMPERATURE and TOP_P
DO_SAMPLE = False  # @param {type:"boolean"}
# @markdown `TEMPERATURE`: sampling temperature (DO_SAMPLE only)
TEMPERATURE = 0.7  # @param {type:"number"}
# @markdown `TOP_P`: nucleus sampling mass (DO_SAMPLE only)
TOP_P = 0.9  # @param {type:"number"}
# @markdown `LONG_PROMPTS`: prompt + answer longer than the context: "truncate" (keep the end), "skip" or "error"
LONG_PROMPTS = "truncate"  # @param ["truncate", "skip", "error"]
# @markdown `BOOTSTRAP`: bootstrap resamples for the 95% confidence intervals
BOOTSTRAP = 1000  # @param {type:"integer"}
# @markdown `N_SHOW`: answers shown side by side in the report
N_SHOW = 5  # @param {type:"integer"}
# @markdown `GENERAL_PATH`: general prompts for the forgetting check (JSONL with references); "" = the bundled
# @markdown conversations' test split; "none" = skip
GENERAL_PATH = ""  # @param {type:"string"}
# @markdown `GENERAL_MAX_EXAMPLES`: general prompts evaluated (0 = all)
GENERAL_MAX_EXAMPLES = 100  # @param {type:"integer"}
# @markdown `FORGETTING_TOLERANCE`: relative rise of general perplexity still counted as "held" (0.02 = 2%)
FORGETTING_TOLERANCE = 0.02  # @param {type:"number"}
# @markdown `RETRIEVAL_K`: retrieval baseline: chunks of your documents (BM25) put before each question (0 = no
# @markdown baseline)
RETRIEVAL_K = 3  # @param {type:"integer"}
# @markdown `CHUNKS_PATH`: the chunks retrieval searches; "" = beside the held-out set, else notebook 02's
CHUNKS_PATH = ""  # @param {type:"string"}
# @markdown `LEAKAGE_THRESHOLD`: a held-out row whose word 8-grams are at least this share in the training text counts
# @markdown as leaked
LEAKAGE_THRESHOLD = 0.5  # @param {type:"number"}
# @markdown `DROP_LEAKED`: leave leaked held-out rows out of the scores (False = only report them)
DROP_LEAKED = False  # @param {type:"boolean"}
# @markdown `JUDGE`: "auto" (JUDGE_BASE_URL, else notebook 02's teacher endpoint, else none), "http", "local" (a
# @markdown transformers model), "none"
JUDGE = "auto"  # @param ["auto", "http", "local", "none"]
# @markdown `JUDGE_BASE_URL`: OpenAI-compatible endpoint of the judge; "" = notebook 02's teacher endpoint
JUDGE_BASE_URL = ""  # @param {type:"string"}
# @markdown `JUDGE_MODEL`: model name at that endpoint; "" = the teacher's model
JUDGE_MODEL = ""  # @param {type:"string"}
# @markdown `JUDGE_KEY_SECRET`: environment variable or Colab secret holding the judge's key (never the key itself);
# @markdown TEACHER_API_KEY when unset and judging with the teacher
JUDGE_KEY_SECRET = "JUDGE_API_KEY"  # @param {type:"string"}
# @markdown `LOCAL_JUDGE_MODEL`: transformers model for JUDGE="local"; "" = the default model
LOCAL_JUDGE_MODEL = ""  # @param {type:"string"}
# @markdown `JUDGE_PROMPT_FILE`: your prompt grading one answer ({question}, {reference}, {passage}, {answer}); "" =
# @markdown ours (printed below)
JUDGE_PROMPT_FILE = ""  # @param {type:"string"}
# @markdown `PAIRWISE_PROMPT_FILE`: your prompt comparing two answers ({question}, {reference}, {passage}, {answer_a},
# @markdown {answer_b}); "" = ours
PAIRWISE_PROMPT_FILE = ""  # @param {type:"string"}
# @markdown `JUDGE_MAX_EXAMPLES`: judge at most this many held-out prompts (0 = all); 4 requests each
JUDGE_MAX_EXAMPLES = 0  # @param {type:"integer"}
# @markdown `JUDGE_MAX_NEW_TOKENS`: longest verdict, in tokens
JUDGE_MAX_NEW_TOKENS = 200  # @param {type:"integer"}
# @markdown `JUDGE_CONCURRENCY`: judge requests in flight at once
JUDGE_CONCURRENCY = 4  # @param {type:"integer"}
# @markdown `JUDGE_PRICE_INPUT_PER_M`: USD per million prompt tokens, for the cost estimate
JUDGE_PRICE_INPUT_PER_M = 0.0  # @param {type:"number"}
# @markdown `JUDGE_PRICE_OUTPUT_PER_M`: USD per million completion tokens, for the cost estimate
JUDGE_PRICE_OUTPUT_PER_M = 0.0  # @param {type:"number"}

# %% [markdown]
# ## Configuration
# Every parameter can also be set from the environment (`MAX_EXAMPLES=50`); `SMOKE=1` evaluates a
# few prompts with short answers on a CPU.

# %%
from helpers.evaluation import (EvalConfig, EvalError, RunDir, check_adapter, default_chunks_path, default_test_path,
                                evaluate_adapter, general_markdown, leakage_line, metrics_table, retrieval_markdown,
                                side_by_side)
cfg = EvalConfig.from_params(globals())
run = ws.run(cfg.run_name)  # notebook 04's run: its adapter, and the report beside it
if not cfg.adapter_dir:
    cfg = cfg.replace(adapter_dir=str(run.adapter))
check_adapter(cfg.adapter_dir, cfg.model_name, error=EvalError)  # a clear message if notebook 04 has not run
print(RunDir.of(cfg.adapter_dir).describe())
cfg = cfg.replace(output_dir=str(run.eval_dir))
if not cfg.test_path:
    cfg = cfg.replace(test_path=str(default_test_path(cfg.adapter_dir, ws)))
if not cfg.chunks_path:  # notebook 02's chunks, beside the held-out set or in the workspace
    cfg = cfg.replace(chunks_path=str(default_chunks_path(cfg.test_path, ws)))
print(cfg.describe())

# %% [markdown]
# ## Evaluate
# Both models answer every held-out prompt in batches; then the references are scored under each.

# %%
report = evaluate_adapter(cfg, plots_dir=ws.plots_dir, plot_prefix=f"{cfg.run_name}_eval_")

# %% [markdown]
# ## Metrics: base vs tuned
# Each cell is the value and its 95% bootstrap interval. "no clear difference" means the interval
# of tuned − base contains 0: this test set cannot tell the two apart on that metric.

# %%
from IPython.display import Image, Markdown, display
display(Markdown(metrics_table(report)))
print(leakage_line(report))

# %% [markdown]
# ## Judge: is it right, and which is better?
# ROUGE counts words shared with one reference, not correctness. A judge LLM (`JUDGE_BASE_URL`,
# else notebook 02's teacher endpoint; `JUDGE="local"` for a transformers model) grades each answer
# against the reference and its source chunk (correct / partly / wrong), and compares base with
# tuned twice, swapping their positions, ties allowed. How far to trust it: its self-consistency
# under the swap and its agreement with ROUGE-L. Every judgement is cached (`judgements.jsonl`);
# a rerun asks only what is missing, and the cost is printed before anything is asked.

# %%
from helpers.evaluation import JudgeConfig, judge_answers, judge_markdown, load_judge_prompts
judge_cfg = JudgeConfig.from_params(globals())
grade_prompt, pairwise_prompt = load_judge_prompts(judge_cfg)  # JUDGE_PROMPT_FILE, PAIRWISE_PROMPT_FILE
print(grade_prompt, "\n\n--- pairwise prompt ---\n", pairwise_prompt, sep="\n")

# %%
report = judge_answers(judge_cfg, cfg, report)
display(Markdown(judge_markdown(report)))

# %% [markdown]
# ## General ability: did tuning cost it? (forgetting)
# The same two models on general prompts (`GENERAL_PATH`; "" = the bundled real conversations'
# test split): perplexity of the references, ROUGE, and a degeneration check per answer for the
# symptoms of over-tuning (repeated 3-grams, words repeated right after themselves, glued words
# and lost spaces, answers that no longer stop at end of turn), each with a paired 95% interval.
# **held**: the interval of the relative change of general perplexity lies at or below
# +`FORGETTING_TOLERANCE` and no degeneration figure got worse with an interval excluding 0;
# **forgot**: the interval lies above the tolerance or a degeneration figure got worse;
# **unclear**: neither (more general prompts would tell). ROUGE and length are shown, not decisive.

# %%
display(Markdown(general_markdown(report)))

# %% [markdown]
# ## Fine-tuning or retrieval? Four ways to answer
# Each held-out question again, with the top `RETRIEVAL_K` chunks of your documents (BM25 over
# notebook 02's `chunks.jsonl`) put before it in the prompt, cut to the context with a visible
# mark: the base and the tuned model, closed book and with the passages, all scored with ROUGE-L
# (and by the judge, where one ran) and compared on the same questions with paired 95% intervals.
# The verdict line says which to use; the hit rate is how often a question's own source chunk was
# among the passages (held-out rows from elsewhere name none). Every
# answer is kept (`answer_cache.jsonl`), so a rerun generates only what is new; `answers.jsonl`
# holds all four (`way`: "closed" or "retrieval").

# %%
display(Markdown(retrieval_markdown(report)))

# %% [markdown]
# ## Answers side by side

# %%
display(Markdown(side_by_side(report)))

# %% [markdown]
# ## Plots

# %%
from helpers.evaluation import report_files
for p in report["plots"]:
    display(Image(filename=p))
print(report_files(report))
