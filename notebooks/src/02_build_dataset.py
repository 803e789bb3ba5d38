# %% [markdown]
# # 02 · From PDFs to an instruction dataset with a teacher LLM
#
# Turn papers (notebook 01's arXiv PDFs, or your own) into a clean instruction dataset: the text
# is extracted and cleaned (headers, page numbers, references and hyphenation removed), cut into
# chunks measured in the tokens of the model you will fine-tune, and a teacher LLM writes
# instruction / input / output examples for each chunk. The teacher is any OpenAI-compatible
# endpoint (Groq, OpenAI, a local vLLM or llama.cpp server) or a local transformers model.
# Every answer is saved as it arrives: if the runtime dies, run the notebook again and it carries
# on without paying twice. Bad answers are kept in `rejects.jsonl` with the reason. The teacher
# then grades each example against its chunk (faithful, self-contained, useful) and the weak ones
# are dropped (`CURATE_MIN_GRADE`), with the grades on the card.
#
# [![Open-In-Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/llama-kit/llama-notebook-kit/blob/main/notebooks/02_build_dataset.ipynb)

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
ws = setup_notebook("02 build dataset")

# %% tags=["parameters"]
# @markdown `PDF_DIR`: a folder of your own PDFs; "" = notebook 01's (arxiv/pdfs in the data folder)
PDF_DIR = ""  # @param {type:"string"}
# @markdown `MAX_PDFS`: read at most this many PDFs (0 = all)
MAX_PDFS = 0  # @param {type:"integer"}
# @markdown `TOKENIZER`: model whose tokenizer measures chunks; "" = the default model (the one you will tune)
TOKENIZER = ""  # @param {type:"string"}
# @markdown `CHUNK_TOKENS`: tokens per chunk
CHUNK_TOKENS = 512  # @param {type:"integer"}
# @markdown `CHUNK_OVERLAP`: tokens shared by consecutive chunks
CHUNK_OVERLAP = 64  # @param {type:"integer"}
# @markdown `MAX_CHUNKS`: ask the teacher about at most this many chunks (0 = all)
MAX_CHUNKS = 0  # @param {type:"integer"}
# @markdown `TEACHER`: "http" (an API), "local" (a transformers model), "auto" (http if TEACHER_BASE_URL is set, else
# @markdown local)
TEACHER = "auto"  # @param ["auto", "http", "local"]
# @markdown `TEACHER_BASE_URL`: OpenAI-compatible API, e.g. https://api.groq.com/openai/v1 (key: the TEACHER_API_KEY
# @markdown secret, never here)
TEACHER_BASE_URL = ""  # @param {type:"string"}
# @markdown `TEACHER_MODEL`: model name at that endpoint, e.g. "llama-3.3-70b-versatile"
TEACHER_MODEL = ""  # @param {type:"string"}
# @markdown `LOCAL_TEACHER_MODEL`: transformers model for TEACHER="local"; "" = the default model (on a GPU the gated
# @markdown Llama-3.2-1B-Instruct: accept its licence, add an HF_TOKEN secret)
LOCAL_TEACHER_MODEL = ""  # @param {type:"string"}
# @markdown `PROMPT_FILE`: a text file with your own prompt ({text}, {source}, {n}); "" = ours (notebook 02 prints it)
PROMPT_FILE = ""  # @param {type:"string"}
# @markdown `PAIRS_PER_CHUNK`: examples asked for per chunk
PAIRS_PER_CHUNK = 3  # @param {type:"integer"}
# @markdown `MAX_NEW_TOKENS`: longest teacher answer, in tokens
MAX_NEW_TOKENS = 1024  # @param {type:"integer"}
# @markdown `TEMPERATURE`: teacher sampling temperature
TEMPERATURE = 0.2  # @param {type:"number"}
# @markdown `CONCURRENCY`: API requests in flight at once (TEACHER="http")
CONCURRENCY = 4  # @param {type:"integer"}
# @markdown `PRICE_INPUT_PER_M`: USD per million prompt tokens, for the cost estimate (Groq Llama 3.3 70B: 0.59)
PRICE_INPUT_PER_M = 0.0  # @param {type:"number"}
# @markdown `PRICE_OUTPUT_PER_M`: USD per million completion tokens, for the cost estimate (Groq Llama 3.3 70B: 0.79)
PRICE_OUTPUT_PER_M = 0.0  # @param {type:"number"}
# @markdown `CURATE_MIN_GRADE`: the teacher grades each example 1-5 (faithful, self-contained, useful) against its
# @markdown chunk; keep those whose lowest grade is at least this (0 = no grading, keep all)
CURATE_MIN_GRADE = 3  # @param {type:"integer"}
# @markdown `GRADE_PROMPT_FILE`: a text file with your own grading prompt ({text}, {instruction}, {input}, {output},
# @markdown {source}); "" = ours (notebook 02 prints it)
GRADE_PROMPT_FILE = ""  # @param {type:"string"}
# @markdown `REASK_REJECTED`: on a rerun, ask again about chunks whose stored answer gave no usable example (more
# @markdown requests)
REASK_REJECTED = False  # @param {type:"boolean"}
# @markdown `NEAR_DUP_THRESHOLD`: Jaccard similarity above which two examples count as near duplicates
NEAR_DUP_THRESHOLD = 0.8  # @param {type:"number"}
# @markdown `TEST_FRACTION`: share of examples held out for testing: whole documents, or their last chunks when too few
TEST_FRACTION = 0.1  # @param {type:"number"}
# @markdown `SEED`: decides which documents go to the test split
SEED = 0  # @param {type:"integer"}
# @markdown `LEAKAGE_THRESHOLD`: a test row whose word 8-grams are at least this share in training text is flagged as
# @markdown leaked
LEAKAGE_THRESHOLD = 0.5  # @param {type:"number"}
# @markdown `DROP_LEAKED_TEST`: move flagged test rows out of test.jsonl into test_leaked.jsonl (counted on the card)
DROP_LEAKED_TEST = True  # @param {type:"boolean"}

# %% [markdown]
# ## Configuration
# Every parameter can also be set from the environment (`TEACHER_BASE_URL=...`). On Colab, put
# your API key in a secret named `TEACHER_API_KEY` (key icon in the left bar): it is read from
# there and never printed. `SMOKE=1` runs four chunks of one PDF through the embedded model.

# %%
from helpers.dataset import DatasetConfig, build_dataset, input_pdfs, load_prompt
cfg = DatasetConfig.from_params(globals())
print(cfg.describe())
pdfs = input_pdfs(cfg, ws)  # PDF_DIR, else notebook 01's downloads; says where it looked if there are none

# %% [markdown]
# ## The teacher's prompts
# The prompt that writes the examples, then the one that grades them. Edit a copy and point
# `PROMPT_FILE` (or `GRADE_PROMPT_FILE`) at it to change it.

# %%
from helpers.dataset import load_grade_prompt
print(load_prompt(cfg.prompt_file))
print("\n--- grading prompt ---\n")
print(load_grade_prompt(cfg.grade_prompt_file))

# %% [markdown]
# ## Build
# PDFs → clean text (`corpus/pdf_text.jsonl`, for notebook 03) → chunks → teacher → dataset.
# Interrupted? Run it again: answers already saved are not asked for again.

# %%
summary = build_dataset(cfg, ws, pdfs=pdfs)

# %% [markdown]
# ## Curation: the teacher's grades
# Each example was graded 1-5 against its chunk: faithful (supported by it), self-contained (a
# question that makes sense without the chunk) and useful. Those whose lowest grade is under
# `CURATE_MIN_GRADE` were dropped (into `rejects.jsonl`, with the grades and the grader's reason);
# a grade that could not be read keeps its example. Grades are cached in `teacher_grades.jsonl`:
# a rerun asks only the missing ones.

# %%
from helpers.core.show import markdown_head, show_markdown
from helpers.dataset import curation_lines
show_markdown("\n".join(curation_lines(summary["curation"])))

# %% [markdown]
# ## Train/test leakage
# A teacher writes several examples from each chunk and consecutive chunks overlap, so a test
# answer can repeat training text word for word. Each test row's word 8-gram containment in the
# training rows and their source chunks is measured; rows at or above `LEAKAGE_THRESHOLD` are
# flagged and, with `DROP_LEAKED_TEST`, moved to `test_leaked.jsonl` (counted on the card).

# %%
print("Leakage:", summary["leakage"]["line"])
for r in summary["leakage"]["flagged_rows"][:5]:
    print(f"  test row {r['row']}: containment {r['containment']:.2f}, most of it in {r['witness']}")
if summary["leakage"]["dropped"]:
    print(f"{summary['leakage']['dropped']} row(s) moved to {summary['leakage']['file']}")

# %% [markdown]
# ## Look at the result

# %%
from helpers.core.jsonl import read_jsonl
train = read_jsonl(ws.dataset.train)
rejects = read_jsonl(ws.dataset.rejects)
if not train:
    raise RuntimeError(f"The teacher produced no usable example ({len(rejects)} rejects; see "
                       f"{ws.dataset.rejects}). Use a stronger teacher or more chunks.")
for row in train[:3]:
    print("INSTRUCTION:", row["instruction"], "\nINPUT:", row["input"][:200], "\nOUTPUT:", row["output"][:300], "\n")
for r in rejects[:3]:
    print("REJECTED:", r["reason"])
show_markdown(markdown_head(ws.dataset.card.read_text(), 3000, ws.dataset.card))  # the card, cut at a section

# %% [markdown]
# ## It loads with `datasets`

# %%
from datasets import disable_progress_bars, load_dataset
disable_progress_bars()  # a split of this size reads in a blink: no bar left behind
files = {"train": str(ws.dataset.train)}
if summary["test"]:
    files["test"] = str(ws.dataset.test)
ds = load_dataset("json", data_files=files)
print(ds)
