# %% [markdown]
# # 07 · Hyperparameter sweep on a subset, loss curves side by side
#
# Try several settings (learning rate, LoRA rank, batch size, scheduler, ... any field of notebook
# 04's training configuration) as short runs on a fixed subset of your dataset, with the same
# training code as notebook 04. The comparison is fair: every run trains on the same rows in the
# same order with the same seed, validates on the same held-out rows (never trained on), and the
# loss is the mean per trained token, so different gradient-accumulation settings compare. You get
# a results table (loss, time, tokens/s, peak GPU memory), overlay plots per hyperparameter, and
# the best settings in `best_config.json` for notebook 04. The sweep is an [Optuna](https://optuna.org)
# study kept in a file in the sweep folder (on your Drive on Colab): rerun after a disconnect and
# finished runs are kept, an interrupted one continues from its last checkpoint.
#
# [![Open-In-Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/llama-kit/llama-notebook-kit/blob/main/notebooks/07_sweep.ipynb)

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
ws = setup_notebook("07 sweep")

# %% tags=["parameters"]
# @markdown `NAME`: sweep folder under the outputs folder, and its plots' prefix (use a new name for other data or
# @markdown model)
NAME = "sweep"  # @param {type:"string"}
# @markdown `MODEL_NAME`: base model of every run; "" = Llama-3.2-1B-Instruct on a GPU, else embedded SmolLM2-135M.
# @markdown Llama is gated: accept its licence on huggingface.co and add an HF_TOKEN secret (checked first)
MODEL_NAME = ""  # @param {type:"string"}
# @markdown `DATASET_PATH`: JSONL the fixed subset is drawn from; "" = notebook 02's dataset (needs 20 rows), else
# @markdown bundled chats
DATASET_PATH = ""  # @param {type:"string"}
# @markdown `QUANTIZATION`: "4bit" (QLoRA), "8bit", "16bit", "none" (fp32); "auto" = 4bit on a GPU, fp32 on a CPU
QUANTIZATION = "auto"  # @param ["auto", "4bit", "8bit", "16bit", "none"]
# @markdown `MAX_SEQ_LEN`: tokens per example
MAX_SEQ_LEN = 512  # @param {type:"integer"}
# @markdown `GRID`: JSON {"field": [values]}: every combination (SEARCH="random" or "tpe": values to draw, or
# @markdown {"log_uniform": [lo, hi]})
GRID = '{"learning_rate": [1e-4, 2e-4, 5e-4], "lora_r": [8, 32]}'  # @param {type:"string"}
# @markdown `SEARCH`: "grid": every combination of GRID; "random" or "tpe" (Optuna's Bayesian sampler): NUM_SAMPLES
# @markdown draws
SEARCH = "grid"  # @param ["grid", "random", "tpe"]
# @markdown `NUM_SAMPLES`: random or tpe search: how many configurations to try
NUM_SAMPLES = 8  # @param {type:"integer"}
# @markdown `BASE`: JSON: TrainConfig settings shared by every run, e.g. {"lora_alpha": 32}
BASE = '{"per_device_batch_size": 4, "gradient_accumulation_steps": 4, "lora_alpha": 16}'  # @param {type:"string"}
# @markdown `SUBSET_SIZE`: training rows of the fixed subset (the same rows, same order, for every run)
SUBSET_SIZE = 1000  # @param {type:"integer"}
# @markdown `EVAL_SIZE`: validation rows carved once from the dataset, never trained on
EVAL_SIZE = 100  # @param {type:"integer"}
# @markdown `MAX_STEPS_PER_RUN`: steps of each run; caps num_train_epochs/max_steps given in BASE or GRID (-1 = their
# @markdown epochs)
MAX_STEPS_PER_RUN = 150  # @param {type:"integer"}
# @markdown `MAX_MINUTES_PER_RUN`: time budget of each run (0 = none)
MAX_MINUTES_PER_RUN = 0.0  # @param {type:"number"}
# @markdown `MAX_MINUTES_TOTAL`: time budget of the whole sweep in this sitting (0 = none); rerun to go on
MAX_MINUTES_TOTAL = 0.0  # @param {type:"number"}
# @markdown `EVALS_PER_RUN`: validation points per run (sets eval_steps unless BASE gives it)
EVALS_PER_RUN = 10  # @param {type:"integer"}
# @markdown `PRUNER`: stop runs that fall behind at a validation step: "median" (of earlier runs at that step),
# @markdown "halving" (successive halving), "none"
PRUNER = "median"  # @param ["median", "halving", "none"]
# @markdown `PRUNE_AFTER_EVALS`: pruning starts at this validation point of a run (0 = never prune)
PRUNE_AFTER_EVALS = 3  # @param {type:"integer"}
# @markdown `WORKERS`: runs trained at once, each in its own process (one per GPU when there are several)
WORKERS = 1  # @param {type:"integer"}

# %% [markdown]
# ## Configuration
# Every parameter above can also be set from the environment (`GRID='{"lora_r": [8, 16]}'`), and
# `SMOKE=1` shrinks the sweep to a 2x2 grid of 3-step runs of the embedded model on a CPU, two at a time.

# %%
from helpers.sweep import SweepConfig, best_markdown, default_dataset, run_sweep, table_html
cfg = SweepConfig.from_params(globals())
cfg = cfg.replace(output_dir=str(ws.out(cfg.name)), plots_dir=str(ws.plots_dir),
                  checkpoint_dir=str(ws.local_dir / cfg.name) if ws.drive else "")
if not cfg.dataset_path:
    cfg = cfg.replace(dataset_path=str(default_dataset(ws)))
print(cfg.describe())

# %% [markdown]
# ## Run the sweep
# One line per run as it finishes, and one live progress line; each run's whole training log is in
# its folder (`runs/<name>/train.log`). Interrupted? Run the notebook again: finished runs are
# kept, an interrupted run resumes. More at once: `WORKERS` runs train side by side (one per GPU
# when there are several). A second runtime (another Colab, a Kaggle notebook) with the same sweep
# folder on Drive can join in: after this cell started, run there
# `python -m helpers.sweep.worker <the folder printed below>`.

# %%
sweep = run_sweep(cfg)

# %% [markdown]
# ## Results
# Best first: finished runs by final validation loss, then pruned and failed ones; under each run, why
# it ended. Peak GPU memory (`peak_mem_gib`) is measured on a GPU only, so a CPU run has no such column.

# %%
from IPython.display import HTML, Image, Markdown, display
display(HTML(table_html(sweep.table)))

# %% [markdown]
# ## Loss curves side by side
# One figure per hyperparameter: runs that differ only in it share a panel (thin lines: train loss
# per step; dots: validation loss). Each trial keeps its colour in every figure. A random or TPE
# search adds Optuna's optimisation history and hyperparameter importances.

# %%
for plot in sweep.plots:
    print(plot.name)
    display(Image(filename=str(plot)))

# %% [markdown]
# ## The best configuration, for notebook 04
# Run notebook 04 next with `USE_SWEEP_BEST = True`: it reads `best_config.json` below and trains
# with these settings. The sweep ran short runs on a subset, so notebook 04 keeps its own number
# of epochs or steps. (A sweep with another `NAME` writes elsewhere; load it in code with
# `cfg.replace(**load_best_config(path))`.)

# %%
if sweep.best_path:
    display(Markdown(best_markdown(sweep.best, sweep.best_path)))
