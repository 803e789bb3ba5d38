# %% [markdown]
# # 03 · Domain pretraining on raw text (optional)
#
# Before instruction tuning, let the model read your domain: arXiv abstracts from notebook 01,
# the cleaned PDF text from notebook 02, or any folder of text, Markdown or PDF files. A LoRA
# adapter learns the text (packed into blocks of `MAX_SEQ_LEN` tokens), with `embed_tokens` and
# `lm_head` trained too at a 10× smaller learning rate; held-out documents give the perplexity
# before and after. Notebook 04 can start from this adapter (`INIT_ADAPTER = "03"`).
#
# Reading only your domain, a chat model drifts from how it answered before. The small default
# `LEARNING_RATE` is what holds it (the log warns where a run drifted); replay (`REPLAY_SHARE`, off
# by default) is best with your own general rows (`REPLAY_PATH`), as the bundled conversations
# teach their chit-chat style. Sections 2, 3 and 3b of
# [bench/QUALITY.md](https://github.com/llama-kit/llama-notebook-kit/blob/main/bench/QUALITY.md).
#
# [![Open-In-Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/llama-kit/llama-notebook-kit/blob/main/notebooks/03_pretrain.ipynb)

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
ws = setup_notebook("03 domain pretraining")

# %% tags=["parameters"]
# @markdown `MODEL_NAME`: base model: Hub id, folder or embedded name; "" = Llama-3.2-1B-Instruct on a GPU, else
# @markdown embedded SmolLM2-135M. Llama is gated: accept its licence on huggingface.co and add an HF_TOKEN secret
# @markdown (checked first)
MODEL_NAME = ""  # @param {type:"string"}
# @markdown `TEXT_SOURCES`: notebook 03's corpus, read into DATASET_PATH: comma-separated JSONL/text/PDF files or
# @markdown folders ("" = notebooks 01 and 02's)
TEXT_SOURCES = ""  # @param {type:"string"}
# @markdown `RUN_NAME`: the run's folder under the outputs folder (notebooks 03, 04), its label in logs and plots ("" =
# @markdown OUTPUT_DIR's name)
RUN_NAME = "pretrain"  # @param {type:"string"}
# @markdown `QUANTIZATION`: "4bit" (QLoRA), "8bit", "16bit", "none" (fp32); "auto" = 4bit on a GPU, fp32 on a CPU
QUANTIZATION = "auto"  # @param ["auto", "4bit", "8bit", "16bit", "none"]
# @markdown `LORA_R`: LoRA rank: larger than for instruction tuning (notebook 04), as there is more to learn
LORA_R = 64  # @param {type:"integer"}
# @markdown `LORA_ALPHA`: LoRA scale numerator (scale = LORA_ALPHA / LORA_R)
LORA_ALPHA = 32  # @param {type:"integer"}
# @markdown `TRAIN_EMBEDDINGS`: also train embed_tokens and lm_head in full (domain pretraining: the domain's vocabulary
# @markdown use)
TRAIN_EMBEDDINGS = True  # @param {type:"boolean"}
# @markdown `EMBEDDING_LR_RATIO`: learning rate of embed_tokens and lm_head relative to LEARNING_RATE
EMBEDDING_LR_RATIO = 0.1  # @param {type:"number"}
# @markdown `MAX_SEQ_LEN`: tokens per example (sft; longer ones are cut) or per packed block (pretrain)
MAX_SEQ_LEN = 1024  # @param {type:"integer"}
# @markdown `SEPARATE_DOCUMENTS`: pretrain: documents sharing a block attend only to themselves (False: one stream)
SEPARATE_DOCUMENTS = False  # @param {type:"boolean"}
# @markdown `EVAL_FRACTION`: share of training rows (pretrain: documents) held out for validation when EVAL_PATH is ""
EVAL_FRACTION = 0.05  # @param {type:"number"}
# @markdown `REPLAY_SHARE`: share of the packed blocks that are general data (0 = off); best with your own general rows
# @markdown in the style to keep (REPLAY_PATH)
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
LEARNING_RATE = 5e-5  # @param {type:"number"}
# @markdown `EVAL_STEPS`: validate every N steps (0 = only at the end)
EVAL_STEPS = 50  # @param {type:"integer"}
# @markdown `SAVE_STEPS`: checkpoint every N steps (copied to Drive on Colab)
SAVE_STEPS = 50  # @param {type:"integer"}
# @markdown `RESUME`: "auto" continues from the newest complete checkpoint, "never" starts over; or a checkpoint folder
RESUME = "auto"  # @param {type:"string"}

# %% [markdown]
# ## Configuration
# Every parameter above can also be set from the environment (`MAX_STEPS=20`), and `SMOKE=1`
# shrinks the run to a few steps of the embedded model on a CPU.

# %%
from helpers.train import PretrainSources, TrainConfig, train
cfg = TrainConfig.from_params(globals(), mode="pretrain")
corpus_cfg = PretrainSources.from_params(globals())

# %% [markdown]
# ## Gather the corpus

# %%
from helpers.dataset import read_text_corpus
from helpers.core.jsonl import write_jsonl
sources = [s.strip() for s in corpus_cfg.text_sources.split(",") if s.strip()] or [
    p for p in (ws.corpus.pdf_text, ws.arxiv.abstracts) if p.exists()]
if not sources:
    raise SystemExit("No text to pretrain on: run notebook 01 (abstracts) or 02 (PDF text), or set TEXT_SOURCES.")
docs, problems = read_text_corpus(sources)
for p in problems:
    print("skipped:", p)
corpus_path = write_jsonl(ws.corpus.pretrain, docs)
chars = sum(len(d["text"]) for d in docs)
print(f"{len(docs)} documents, {chars:,} characters from {len(sources)} source(s) -> {corpus_path}")
cfg = cfg.replace(dataset_path=str(corpus_path), output_dir=str(ws.out(cfg.run_name)),
                  checkpoint_dir=str(ws.local_dir / cfg.run_name) if ws.drive else "")
print(cfg.describe())

# %% [markdown]
# ## Train
# Interrupted? Run the notebook again: it resumes from the newest complete checkpoint.

# %%
result = train(cfg)

# %% [markdown]
# ## Held-out perplexity, before and after
# The held-out documents are your domain only (replay is training data, never validation); what
# the model still knows in general is notebook 05's forgetting report. The data report above says
# how many replay blocks went in (`result.metrics["data"]["replay"]`).

# %%
m = result.metrics
print(f"held-out perplexity: {m['start_perplexity']} before -> {m['eval_perplexity']} after "
      f"({100 * (1 - m['eval_perplexity'] / m['start_perplexity']):.1f}% lower)" if m["start_perplexity"] else
      "no held-out documents (corpus too small): perplexity not measured")
print(f"To start notebook 04 from this adapter, set INIT_ADAPTER = \"03\" there (it is {result.adapter_dir}).")

# %%
from IPython.display import Image, display
from helpers.train import plot_losses
plot = plot_losses(
    result.log_history, ws.plot(f"{cfg.run_name}_loss.png"), title=f"{cfg.run_name}: train and held-out loss"
)
if plot:
    display(Image(filename=str(plot)))
