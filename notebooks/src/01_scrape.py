# %% [markdown]
# # 01 · Find and download arXiv papers
#
# Search arXiv through its export API (by category, submission dates, keywords in the title or
# abstract, authors, or a list of ids), then download each paper's PDF into your data folder
# (Google Drive on Colab) with a manifest of what was fetched. The notebook is polite (one request
# every 3 seconds, a User-Agent that says who is asking, backing off when arXiv is busy) and
# resumable: run it again and it only fetches what is missing, so an interrupted run loses nothing.
# With `ABSTRACTS_ONLY = True` it skips the PDFs and keeps the abstracts as a text corpus for
# notebook 03 (domain pretraining). Notebook 02 turns the PDFs into a dataset.
#
# **No GPU needed:** scraping only talks to arXiv, so Colab's default CPU runtime is enough (the
# setup cell's note about a GPU is for the training notebooks).
#
# [![Open-In-Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/llama-kit/llama-notebook-kit/blob/main/notebooks/01_scrape.ipynb)

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
ws = setup_notebook("01 scrape")

# %% tags=["parameters"]
# @markdown `CATEGORY`: arXiv category, e.g. "cs.CL"; several comma-separated are ORed; "" = any
CATEGORY = "cs.CL"  # @param {type:"string"}
# @markdown `DATE_FROM`: submitted on or after (YYYY-MM-DD; Llama 3 came out 2024-04-18); "" = any
DATE_FROM = "2024-04-18"  # @param {type:"string"}
# @markdown `DATE_TO`: submitted on or before (YYYY-MM-DD); "" = today
DATE_TO = ""  # @param {type:"string"}
# @markdown `KEYWORDS`: any of them in the title or abstract; [] = no filter
KEYWORDS = ["llama", "large language model"]  # @param {type:"raw"}
# @markdown `AUTHORS`: any of these authors (arXiv au: syntax), e.g. ["Touvron"]; [] = any
AUTHORS = []  # @param {type:"raw"}
# @markdown `ID_LIST`: arXiv ids instead of (or within) a search, e.g. ["2407.21783"]; also 2404.12345v2, hep-th/9901001
ID_LIST = []  # @param {type:"raw"}
# @markdown `QUERY`: raw arXiv search_query, ANDed with the other filters, e.g. 'abs:"instruction tuning"' or
# @markdown 'all:testing'
QUERY = ""  # @param {type:"string"}
# @markdown `SORT_BY`: "submittedDate", "relevance" or "lastUpdatedDate"
SORT_BY = "submittedDate"  # @param ["submittedDate", "relevance", "lastUpdatedDate"]
# @markdown `SORT_ORDER`: "descending" (newest first) or "ascending" (oldest first)
SORT_ORDER = "descending"  # @param ["descending", "ascending"]
# @markdown `MAX_RESULTS`: papers to fetch in all (arXiv serves at most 30000 per query)
MAX_RESULTS = 50  # @param {type:"integer"}
# @markdown `PAGE_SIZE`: papers per API request (at most 2000)
PAGE_SIZE = 50  # @param {type:"integer"}
# @markdown `ABSTRACTS_ONLY`: True: skip the PDFs, keep only manifest.jsonl and abstracts.jsonl (a corpus for notebook
# @markdown 03)
ABSTRACTS_ONLY = False  # @param {type:"boolean"}
# @markdown `DELAY_SECONDS`: seconds between requests, at least (arXiv's terms of use ask for 3)
DELAY_SECONDS = 3.0  # @param {type:"number"}
# @markdown `MAX_RETRIES`: retries of one request when arXiv is busy (429, 5xx) or the connection breaks (timeout, cut
# @markdown body)
MAX_RETRIES = 4  # @param {type:"integer"}
# @markdown `TIMEOUT`: seconds to wait for arXiv (to connect, and between bytes read) before retrying
TIMEOUT = 60.0  # @param {type:"number"}
# @markdown `ARXIV_API_URL`: the arXiv export API; or a mirror, or a local test server
ARXIV_API_URL = "http://export.arxiv.org/api/query"  # @param {type:"string"}
# @markdown `PDF_BASE_URL`: "" = arXiv's own PDF links (another API server: its /pdf/ID); else where PDFs are fetched
# @markdown from
PDF_BASE_URL = ""  # @param {type:"string"}
# @markdown `USER_AGENT`: who is asking (arXiv wants a descriptive User-Agent); "" = the kit's, with its version
USER_AGENT = ""  # @param {type:"string"}

# %% [markdown]
# ## Configuration
# Every parameter above can also be set from the environment (`MAX_RESULTS=200`). With `SMOKE=1`
# the notebook runs offline: it serves real arXiv responses recorded from the export API, which ship
# with the kit (`helpers/resources/arxiv`), from a local server on 127.0.0.1, or asks the server
# `ARXIV_API_URL` names.

# %%
from helpers.scrape import ScrapeConfig, build_search_query, run_for_notebook
cfg = ScrapeConfig.from_params(globals())
print(cfg.describe())
print(
    "search_query:",
    build_search_query(cfg) or "(none: an id-list look-up)",
    "| id_list:",
    ",".join(cfg.id_list) or "(none)",
)

# %% [markdown]
# ## Search and download
# Interrupted, or arXiv asked us to stop? Run the notebook again: finished PDFs are checked
# against their sha256 in the manifest and skipped.

# %%
result = run_for_notebook(cfg, ws.arxiv.folder)
print(result.summary())

# %% [markdown]
# ## What was found

# %%
from IPython.display import display
display(result.table())

# %% [markdown]
# ## The files notebooks 02 and 03 read
# `manifest.jsonl` (one row per paper: id, version, title, authors, abstract, categories, dates,
# PDF path, sha256, size), the PDFs in `pdfs/`, and `abstracts.jsonl` (`{"id", "text"}`: title and
# abstract, the raw-text corpus for notebook 03).

# %%
import json
for path in (ws.arxiv.manifest, ws.arxiv.abstracts):
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    print(f"{path}: {len(rows)} row(s)")
pdfs = sorted(ws.arxiv.pdfs.glob("*.pdf")) if ws.arxiv.pdfs.is_dir() else []
print(f"{ws.arxiv.pdfs}: {len(pdfs)} PDF(s), {sum(p.stat().st_size for p in pdfs) / 2**20:.1f} MiB")
