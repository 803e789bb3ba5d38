# %% [markdown]
# # 04 · Instruction tuning with QLoRA
#
# Fine-tune a Llama-family model on an instruction dataset (from notebook 02, or one you
# imported) with TRL's `SFTTrainer`: 4-bit NF4 base with LoRA adapters (QLoRA) by default, loss on
# the replies only, validation loss and early stopping, and checkpoints that survive a Colab
# disconnect: rerun the notebook after the runtime died and it carries on from the newest
# complete checkpoint on your Drive.
#
# Tuned on a narrow dataset alone, a chat model can lose its general skills (wrong syntax,
# repeated words). `REPLAY_SHARE` > 0 mixes that share of general conversations into the training
# examples (*replay*): the bundled ones, or your JSONL of conversations or instruction rows
# (`REPLAY_PATH`), trained like your rows (loss on the replies); validation stays your data only.
#
# [![Open-In-Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/llama-kit/llama-notebook-kit/blob/main/notebooks/04_finetune.ipynb)

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
ws = setup_notebook("04 fine-tune")

# %% tags=["parameters"]
# @markdown `MODEL_NAME`: base model: Hub id, folder or embedded name; "" = Llama-3.2-1B-Instruct on a GPU, else
# @markdown embedded SmolLM2-135M. Llama is gated: accept its licence on huggingface.co and add an HF_TOKEN secret
# @markdown (checked first)
MODEL_NAME = ""  # @param {type:"string"}
# @markdown `DATASET_PATH`: JSONL: instruction/messages rows (sft), {"text"} rows (pretrain); "" = notebook 02's (needs
# @markdown 20 rows), else bundled chats
DATASET_PATH = ""  # @param {type:"string"}
# @markdown `RUN_NAME`: the run's folder under the outputs folder (notebooks 03, 04), its label in logs and plots ("" =
# @markdown OUTPUT_DIR's name)
RUN_NAME = "sft"  # @param {type:"string"}
# @markdown `QUANTIZATION`: "4bit" (QLoRA), "8bit", "16bit", "none" (fp32); "auto" = 4bit on a GPU, fp32 on a CPU
QUANTIZATION = "auto"  # @param ["auto", "4bit", "8bit", "16bit", "none"]
# @markdown `FINETUNE`: "lora" (an adapter on a frozen base) or "full" (every weight; no 4bit/8bit quantization)
FINETUNE = "lora"  # @param ["lora", "full"]
# @markdown `LORA_R`: LoRA rank: the adapter's size
LORA_R = 16  # @param {type:"integer"}
# @markdown `LORA_ALPHA`: LoRA scale numerator (scale = LORA_ALPHA / LORA_R)
LORA_ALPHA = 16  # @param {type:"integer"}
# @markdown `TEMPLATE`: "auto" (the model's chat template, else alpaca), "chat", or "alpaca" (our instruction template)
TEMPLATE = "auto"  # @param ["auto", "chat", "alpaca"]
# @markdown `MAX_SEQ_LEN`: tokens per example (sft; longer ones are cut) or per packed block (pretrain)
MAX_SEQ_LEN = 1024  # @param {type:"integer"}
# @markdown `PACKING`: sft: pack examples into rows of MAX_SEQ_LEN tokens, each attending only to itself (no padding)
PACKING = True  # @param {type:"boolean"}
# @markdown `PACKED_LR_SCALING`: sft packing: LEARNING_RATE x the step's examples per batch ("linear"), x its square
# @markdown root ("sqrt") or as set ("none")
PACKED_LR_SCALING = "linear"  # @param ["linear", "sqrt", "none"]
# @markdown `REPLAY_SHARE`: share of the training stream that is general data, against forgetting (0 = off; sft:
# @markdown examples, pretrain: blocks)
REPLAY_SHARE = 0.0  # @param {type:"number"}
# @markdown `REPLAY_PATH`: general data for REPLAY_SHARE: JSONL of conversations, instruction rows or {"text"} rows
# @markdown (pretrain); "" = bundled chats
REPLAY_PATH = ""  # @param {type:"string"}
# @markdown `NUM_TRAIN_EPOCHS`: passes over the training data (ignored when MAX_STEPS > 0)
NUM_TRAIN_EPOCHS = 1.0  # @param {type:"number"}
# @markdown `MAX_STEPS`: > 0: stop after this many optimizer steps; -1 = run NUM_TRAIN_EPOCHS
MAX_STEPS = -1  # @param {type:"integer"}
# @markdown `PER_DEVICE_BATCH_SIZE`: rows per GPU per micro-batch: packed rows, examples (PACKING=False) or blocks
PER_DEVICE_BATCH_SIZE = 4  # @param {type:"integer"}
# @markdown `GRADIENT_ACCUMULATION_STEPS`: micro-batches per optimizer step
GRADIENT_ACCUMULATION_STEPS = 4  # @param {type:"integer"}
# @markdown `LEARNING_RATE`: peak learning rate of the LoRA weights (of every weight with FINETUNE="full")
LEARNING_RATE = 2e-4  # @param {type:"number"}
# @markdown `EVAL_STEPS`: validate every N steps (0 = only at the end)
EVAL_STEPS = 50  # @param {type:"integer"}
# @markdown `SAVE_STEPS`: checkpoint every N steps (copied to Drive on Colab)
SAVE_STEPS = 50  # @param {type:"integer"}
# @markdown `EARLY_STOPPING_PATIENCE`: stop after N evaluations without a better validation loss (0 = off)
EARLY_STOPPING_PATIENCE = 3  # @param {type:"integer"}
# @markdown `INIT_ADAPTER`: "" = a fresh LoRA; else an adapter folder to start from, or "03" = notebook 03's (domain
# @markdown pretraining)
INIT_ADAPTER = ""  # @param {type:"string"}
# @markdown `NUM_SHARDS`: > 1: cut the training data into N shards and train one per sitting
NUM_SHARDS = 1  # @param {type:"integer"}
# @markdown `RESUME`: "auto" continues from the newest complete checkpoint, "never" starts over; or a checkpoint folder
RESUME = "auto"  # @param {type:"string"}
# @markdown `USE_SWEEP_BEST`: True: notebook 04 takes notebook 07's best settings over the others (run 07 first;
# @markdown sweep/best_config.json)
USE_SWEEP_BEST = False  # @param {type:"boolean"}

# %% [markdown]
# ## Configuration
# Every parameter above can also be set from the environment (`MAX_STEPS=20`), and `SMOKE=1`
# shrinks the run to a few steps of the embedded model on a CPU. The printout lists only what
# differs from the defaults and where each value came from; `print(cfg.describe(full=True))`
# shows every setting. To use a sweep's best settings, run notebook 07 first, then this notebook
# with `USE_SWEEP_BEST = True`.

# %%
from helpers.dataset import default_dataset
from helpers.train import PRETRAIN_RUN, FinetuneChoices, TrainConfig, load_best_config, train
cfg = TrainConfig.from_params(globals())
choices = FinetuneChoices.from_params(globals())
cfg = cfg.replace(
    output_dir=str(ws.out(cfg.run_name)), checkpoint_dir=str(ws.local_dir / cfg.run_name) if ws.drive else ""
)
if not cfg.dataset_path:
    cfg = cfg.replace(dataset_path=str(default_dataset(ws)))
if cfg.init_adapter == "03":
    cfg = cfg.replace(init_adapter=str(ws.run(PRETRAIN_RUN).adapter))  # notebook 03's run
if choices.use_sweep_best:
    cfg = cfg.replace(**load_best_config(ws.sweep().best))
print(cfg.describe())

# %% [markdown]
# ## Train
# Interrupted? Run the notebook again: it resumes from the newest complete checkpoint. The table
# shows each logged step; the whole log is in the run folder (`log_history.jsonl`).
#
# - **Packing** (`PACKING`): short examples share rows of `MAX_SEQ_LEN` tokens, each still trained
#   alone, and the learning rate follows the examples a step holds. The rule and its measurements:
#   [bench/QUALITY.md](https://github.com/llama-kit/llama-notebook-kit/blob/main/bench/QUALITY.md).
# - **On a GPU** (`AUTO_FIT`): the micro-batch and gradient checkpointing are chosen from the GPU's
#   memory, and the reason printed; `AUTO_FIT=0` keeps your settings.
# - **Several GPUs** (DDP; FSDP with `fsdp_qlora.yaml` for a model too big for one GPU):
#
#       cfg.save("run.json")
#       !accelerate launch --config_file ../configs/accelerate/ddp.yaml -m helpers.train.loop run.json

# %%
result = train(cfg)

# %% [markdown]
# ## Loss curves
# Train and validation loss are measured on different rows: a train point on its step's batch,
# before that step's update (so the table's first row is the untrained model), a validation point on
# the held-out rows. Compare that first row with the "Validation loss before training" line: the gap
# there is the rows, not training, and it stays. Under `SMOKE` the held-out set is 2 short
# conversations the untrained model already finds easier (3.18, against 3.97 on the training rows).
# What training did is the fall along each curve. Validation rising while train keeps falling is
# overfitting: early stopping (`EARLY_STOPPING_PATIENCE`) keeps the best checkpoint.

# %%
from IPython.display import Image, display
from helpers.train import plot_losses
plot = plot_losses(
    result.log_history, ws.plot(f"{cfg.run_name}_loss.png"), title=f"{cfg.run_name}: train and validation loss"
)
if plot:
    display(Image(filename=str(plot)))

# %% [markdown]
# ## A first look: base vs tuned on a held-out prompt
# Notebook 05 does this properly over the whole test split, with metrics.

# %%
from helpers.train import compare_on_examples
_ = compare_on_examples(cfg.model_name, result.adapter_dir, cfg.dataset_path, n=2, quantization=cfg.quantization)
