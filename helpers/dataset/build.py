"""Notebook 02's build: PDFs → clean text → chunks → teacher triples → a clean, split dataset.

``build_dataset(cfg, ws)`` runs the whole step and writes, under ``ws.data()``:

* ``corpus/pdf_text.jsonl``: the cleaned text of every PDF (``{"source", "text"}``) for notebook 03;
* ``dataset/teacher_answers.jsonl``: every raw teacher answer, stored as it arrives (the resume
  store: rerun the notebook after a crash and only missing chunks are asked);
* ``dataset/train.jsonl`` and ``test.jsonl``: ``{"instruction", "input", "output", "source",
  "chunk_id"}`` rows, exact and near duplicates removed, split by source document (no document on
  both sides) so that test holds about ``test_fraction`` of the rows; where whole documents cannot
  give that share (one document, or one that dominates), by position within the documents (their
  last chunks), as the card says; loadable with ``datasets.load_dataset("json", ...)``;
* ``dataset/teacher_grades.jsonl``: the teacher's grade of each triple against its chunk (the same
  resume store; ``helpers.dataset.grading``), and triples graded below ``curate_min_grade`` dropped;
* ``dataset/rejects.jsonl``: every teacher answer or example that was not kept, with the reason;
* ``dataset/chunks.jsonl``: the chunks the teacher was asked about (``{"chunk_id", "source",
  "index", "text"}``), so a later step can compare test rows with the training rows' source text;
* leakage (``helpers.dataset.leakage``): each test row's word 8-gram containment in the training rows and
  in their source chunks; rows at or above ``leakage_threshold`` are flagged and, with
  ``drop_leaked_test`` (the default), moved out of ``test.jsonl`` into
  ``dataset/test_leaked.jsonl`` (with their containment and the training text that holds it);
* ``dataset/card.md``: counts, sources, the split and why, the leakage figure, cleaning warnings
  (a cut that took a large share of a document), teacher, prompt, cost, rejects by reason, the chunks
  split in parts (too long for the teacher) and those it did not answer, with its message.

Near duplicates are found with MinHash (64 permutations, LSH in 16 bands) over word 3-gram
shingles of instruction + output, confirmed by the exact Jaccard similarity
(``near_dup_threshold``).
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any

from helpers.common.access import check_model_access
from helpers.common.models import default_model_name, load_tokenizer
from helpers.common.resources import chitchat, fixture_pdf
from helpers.core.config import ConfigError, StepConfig
from helpers.core.jsonl import DataError, write_jsonl
from helpers.core.show import announce
from helpers.dataset.answers import triples_from_answer
from helpers.dataset.chunking import chunk_documents
from helpers.dataset.grading import curate, curation_lines, load_grade_prompt
from helpers.dataset.leakage import measure_leakage
from helpers.dataset.pdf import describe_stats, find_pdfs, read_pdfs
from helpers.dataset.teacher import (
    DEFAULT_SYSTEM,
    HttpTeacher,
    LocalTeacher,
    TeacherStore,
    chunk_answers,
    load_prompt,
    render_messages,
    request_key,
    run_teacher,
)


@dataclasses.dataclass
class DatasetConfig(StepConfig, notebooks=("02",)):
    pdf_dir: str = ""  # a folder of your own PDFs; "" = notebook 01's (arxiv/pdfs in the data folder)
    max_pdfs: int = 0  # read at most this many PDFs (0 = all)
    tokenizer: str = ""  # model whose tokenizer measures chunks; "" = the default model (the one you will tune)
    chunk_tokens: int = 512  # tokens per chunk
    chunk_overlap: int = 64  # tokens shared by consecutive chunks
    max_chunks: int = 0  # ask the teacher about at most this many chunks (0 = all)
    teacher: str = "auto"  # "http" (an API), "local" (a transformers model), "auto" (http if TEACHER_BASE_URL is set,
                           # else local)
    teacher_base_url: str = ""  # OpenAI-compatible API, e.g. https://api.groq.com/openai/v1 (key: the TEACHER_API_KEY
                                # secret, never here)
    teacher_model: str = ""  # model name at that endpoint, e.g. "llama-3.3-70b-versatile"
    local_teacher_model: str = ""  # transformers model for TEACHER="local"; "" = the default model (on a GPU the
                                   # gated Llama-3.2-1B-Instruct: accept its licence, add an HF_TOKEN secret)
    prompt_file: str = ""  # a text file with your own prompt ({text}, {source}, {n}); "" = ours (notebook 02 prints it)
    pairs_per_chunk: int = 3  # examples asked for per chunk
    max_new_tokens: int = 1024  # longest teacher answer, in tokens
    temperature: float = 0.2  # teacher sampling temperature
    concurrency: int = 4  # API requests in flight at once (TEACHER="http")
    request_timeout: float = 120.0  # seconds before a request is retried
    max_retries: int = 5  # retries per request on 429, 5xx and timeouts
    price_input_per_m: float = 0.0  # USD per million prompt tokens, for the cost estimate (Groq Llama 3.3 70B: 0.59)
    price_output_per_m: float = 0.0  # USD per million completion tokens, for the cost estimate (Groq Llama 3.3 70B:
                                     # 0.79)
    curate_min_grade: int = 3  # the teacher grades each example 1-5 (faithful, self-contained, useful) against its
                               # chunk; keep those whose lowest grade is at least this (0 = no grading, keep all)
    grade_prompt_file: str = ""  # a text file with your own grading prompt ({text}, {instruction}, {input}, {output},
                                 # {source}); "" = ours (notebook 02 prints it)
    reask_rejected: bool = False  # on a rerun, ask again about chunks whose stored answer gave no usable example (more
                                  # requests)
    near_dup_threshold: float = 0.8  # Jaccard similarity above which two examples count as near duplicates
    test_fraction: float = 0.1  # share of examples held out for testing: whole documents, or their last chunks when too
                                # few
    seed: int = 0  # decides which documents go to the test split
    leakage_threshold: float = 0.5  # a test row whose word 8-grams are at least this share in training text is flagged
                                    # as leaked
    drop_leaked_test: bool = True  # move flagged test rows out of test.jsonl into test_leaked.jsonl (counted on the
                                   # card)

    @classmethod
    def smoke_preset(cls) -> dict[str, Any]:
        return {"max_pdfs": 1, "max_chunks": 4, "chunk_tokens": 160, "chunk_overlap": 16, "teacher": "local",
                "local_teacher_model": "embedded/smollm2-135m-instruct", "pairs_per_chunk": 1,
                "max_new_tokens": 96, "temperature": 0.0, "concurrency": 1}

    def check_access(self) -> None:
        """A local teacher's model is checked before any PDF is read (gated without a token: the steps)."""
        if self.teacher == "local" or (self.teacher == "auto" and not self.teacher_base_url):
            check_model_access(self.local_teacher_model or default_model_name())

    def validate(self) -> None:
        if self.teacher not in ("auto", "http", "local"):
            raise ConfigError(f"TEACHER={self.teacher!r}: use 'http', 'local' or 'auto'.")
        if not 0 <= self.test_fraction < 1:
            raise ConfigError(f"TEST_FRACTION={self.test_fraction}: must be in [0, 1).")
        if not 0 < self.near_dup_threshold <= 1:
            raise ConfigError(f"NEAR_DUP_THRESHOLD={self.near_dup_threshold}: must be in (0, 1].")
        if not 0 < self.leakage_threshold <= 1:
            raise ConfigError(f"LEAKAGE_THRESHOLD={self.leakage_threshold}: must be in (0, 1].")
        if not 0 <= self.curate_min_grade <= 5:
            raise ConfigError(f"CURATE_MIN_GRADE={self.curate_min_grade}: a grade from 1 to 5, or 0 for no grading.")
        if self.pairs_per_chunk < 1:
            raise ConfigError(f"PAIRS_PER_CHUNK={self.pairs_per_chunk}: ask for at least one example.")
        if not 0 <= self.chunk_overlap < self.chunk_tokens // 2:
            raise ConfigError(f"CHUNK_OVERLAP={self.chunk_overlap}: must be under half of "
                              f"CHUNK_TOKENS={self.chunk_tokens}.")

    def backend(self) -> str:
        if self.teacher == "auto":
            return "http" if self.teacher_base_url else "local"
        return self.teacher


# ----------------------------------------------------------------------------------------------
# Duplicates
# ----------------------------------------------------------------------------------------------
def _norm(s: str) -> str:
    return " ".join(re.findall(r"\w+", s.lower()))


def exact_key(row: dict) -> str:
    return hashlib.sha256("\x1f".join(_norm(row.get(k, "")) for k in ("instruction", "input", "output")).encode()
                          ).hexdigest()


def shingles(text: str, k: int = 3) -> set[str]:
    w = _norm(text).split()
    if len(w) <= k:
        return {" ".join(w)}
    return {" ".join(w[i:i + k]) for i in range(len(w) - k + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class MinHasher:
    """MinHash signatures with 32-bit shingle hashes and universal hashing mod 2^61-1."""
    PRIME = (1 << 61) - 1

    def __init__(self, num_perm: int = 64, seed: int = 1):
        import numpy as np
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, 1 << 32, num_perm, dtype=np.uint64)
        self.b = rng.integers(0, 1 << 32, num_perm, dtype=np.uint64)
        self.num_perm = num_perm

    def signature(self, sh: set[str]):
        import numpy as np
        hs = np.array([int.from_bytes(hashlib.blake2b(s.encode(), digest_size=4).digest(), "little") for s in sh]
                      or [0], dtype=np.uint64)
        return ((hs[:, None] * self.a[None, :] + self.b[None, :]) % np.uint64(self.PRIME)).min(axis=0)


def deduplicate(rows: list[dict], threshold: float = 0.8, bands: int = 16) -> tuple[list[dict], list[dict]]:
    """Drop exact duplicates (same normalised instruction, input and output) and near duplicates
    (Jaccard of instruction+output shingles >= ``threshold``); the first occurrence is kept.
    Returns ``(kept, dropped)``; each dropped row says why and which kept row it duplicates."""
    kept: list[dict] = []
    dropped: list[dict] = []
    seen: dict[str, int] = {}
    hasher = MinHasher()
    rows_per_band = hasher.num_perm // bands
    buckets: dict[tuple, list[int]] = collections.defaultdict(list)
    kept_sh: list[set] = []
    for row in rows:
        key = exact_key(row)
        if key in seen:
            dropped.append({**row, "reason": "exact duplicate", "duplicate_of": _ref(kept[seen[key]])})
            continue
        sh = shingles(row.get("instruction", "") + " " + row.get("input", "") + " " + row.get("output", ""))
        sig = hasher.signature(sh)
        cands = set()
        band_keys = [(b, sig[b * rows_per_band:(b + 1) * rows_per_band].tobytes()) for b in range(bands)]
        for bk in band_keys:
            cands.update(buckets.get(bk, ()))
        best = max(((jaccard(sh, kept_sh[i]), i) for i in cands), default=(0.0, -1))
        if best[0] >= threshold:
            dropped.append({**row, "reason": f"near duplicate (Jaccard {best[0]:.2f})",
                            "duplicate_of": _ref(kept[best[1]])})
            continue
        idx = len(kept)
        seen[key] = idx
        kept.append(row)
        kept_sh.append(sh)
        for bk in band_keys:
            buckets[bk].append(idx)
    return kept, dropped


def _ref(row: dict) -> dict:
    return {k: row[k] for k in ("source", "chunk_id", "item") if k in row}


# ----------------------------------------------------------------------------------------------
# Split by document
# ----------------------------------------------------------------------------------------------
def split_by_document(rows: list[dict], test_fraction: float = 0.1,
                      seed: int = 0) -> tuple[list[dict], list[dict], str]:
    """Train/test split that lands near ``test_fraction`` of the rows and keeps documents apart.

    Whole documents go to test, in an order fixed by ``seed`` and their names, skipping any that
    would push the test side past 1.5 x the asked rows, until it holds the asked share. When no
    set of documents comes within half to 1.5 x of it (a single document, or one that dominates:
    430 rows of a manual beside 30 of a paper), the split falls back to position within the
    documents: the last chunks of each document are held out, about ``test_fraction`` of its rows.
    Test never gets most of the rows. The returned description says which split was made, and why."""
    if not rows or test_fraction <= 0:
        return list(rows), [], "no test split (TEST_FRACTION=0)" if test_fraction <= 0 else "no rows"
    by_doc: dict[str, list[dict]] = collections.defaultdict(list)
    for r in rows:
        by_doc[r["source"]].append(r)
    want = test_fraction * len(rows)
    docs = sorted(by_doc, key=lambda d: hashlib.sha256(f"{seed}:{d}".encode()).hexdigest())
    if len(docs) >= 2:
        test_docs: list[str] = []
        n_test = 0
        for d in docs:
            if n_test >= want:
                break
            if n_test + len(by_doc[d]) <= min(1.5 * want, 0.5 * len(rows)) and len(test_docs) < len(docs) - 1:
                test_docs.append(d)
                n_test += len(by_doc[d])
        if n_test >= 0.5 * want:
            test = [r for r in rows if r["source"] in test_docs]
            train = [r for r in rows if r["source"] not in test_docs]
            return train, test, (f"by document: {len(test_docs)} of {len(docs)} documents held out "
                                 f"({', '.join(sorted(test_docs))}), {len(test)} of {len(rows)} rows "
                                 f"({len(test) / len(rows):.0%}; asked {test_fraction:.0%})")
    # by position: the tail of each document (a chunk's rows stay together)
    test_chunks: set[str] = set()
    for d in docs:
        chunks = sorted({(r.get("chunk_index", 0), r["chunk_id"]) for r in by_doc[d]})
        if len(chunks) < 2:
            continue
        k = min(len(chunks) - 1, max(1, round(len(chunks) * test_fraction)))
        if len(docs) > 1 and round(len(chunks) * test_fraction) == 0:
            continue  # a small document stays whole in train
        test_chunks |= {c for _, c in chunks[-k:]}
    if not test_chunks:
        return list(rows), [], (f"{len(docs)} document(s) of one chunk each: everything in train, no test split "
                                "possible" if len(docs) > 1 else
                                "one document with one chunk: everything in train, no test split possible")
    test = [r for r in rows if r["chunk_id"] in test_chunks]
    train = [r for r in rows if r["chunk_id"] not in test_chunks]
    if len(docs) == 1:
        return train, test, (f"only one document ({docs[0]}): split by position instead, its last "
                             f"{len(test_chunks)} chunks held out ({len(test)} of {len(rows)} rows); add documents "
                             "for a split by document")
    sizes = ", ".join(f"{d}: {len(by_doc[d])}" for d in sorted(by_doc, key=lambda d: -len(by_doc[d]))[:3])
    return train, test, (f"by position within documents: no set of whole documents comes near {test_fraction:.0%} "
                         f"of the {len(rows)} rows (rows per document: {sizes}), so the last chunks of each "
                         f"document are held out instead ({len(test)} rows, {len(test) / len(rows):.0%}); "
                         "train and test share documents (not their passages)")


# ----------------------------------------------------------------------------------------------
# The build
# ----------------------------------------------------------------------------------------------
def make_teacher(cfg: DatasetConfig):
    if cfg.backend() == "http":
        return HttpTeacher(cfg.teacher_base_url, cfg.teacher_model, max_new_tokens=cfg.max_new_tokens,
                           temperature=cfg.temperature, timeout_s=cfg.request_timeout, max_retries=cfg.max_retries,
                           concurrency=cfg.concurrency)
    return LocalTeacher(cfg.local_teacher_model or default_model_name(), max_new_tokens=cfg.max_new_tokens,
                        temperature=cfg.temperature if cfg.temperature > 0.05 else 0.0)


def _where_pdfs_go(cfg: DatasetConfig, ws) -> str:
    return (f"Run notebook 01 to download arXiv papers into {ws.arxiv.pdfs}, or put your own PDFs in "
            f"a folder and set PDF_DIR to it (PDF_DIR={cfg.pdf_dir!r} now).")


def input_pdfs(cfg: DatasetConfig, ws, verbose: bool = True) -> list[Path]:
    """The PDFs notebook 02 reads: ``PDF_DIR`` if set, else notebook 01's downloads. Under ``SMOKE=1``
    with neither, the real arXiv paper that ships with the kit. Raises ``FileNotFoundError`` naming
    the folder it looked in, and what to do, when there are none."""
    folder = Path(cfg.pdf_dir) if cfg.pdf_dir else ws.arxiv.pdfs
    pdfs = find_pdfs(folder)
    if not pdfs and ws.smoke and not cfg.pdf_dir:
        pdfs = [fixture_pdf()]
        if verbose:
            print(f"SMOKE: no PDFs in {folder}, using the arXiv paper that ships with the kit ({pdfs[0].name})")
    if not pdfs:
        state = "does not exist" if not folder.exists() else \
            ("is not a folder" if not folder.is_dir() else "has no .pdf files")
        raise FileNotFoundError(f"No PDFs to read: {folder} {state}. " + _where_pdfs_go(cfg, ws))
    if verbose:
        print(f"{len(pdfs)} PDF(s) found in {folder if pdfs[0].is_relative_to(folder) else pdfs[0].parent}")
    return pdfs


def build_dataset(cfg: DatasetConfig, ws, pdfs: list | None = None, teacher=None, verbose: bool = True) -> dict:
    """The whole step (see the module docstring). ``pdfs`` overrides the folder; ``teacher`` an
    already built teacher. Returns a summary dict (also written into the card)."""

    t0 = time.time()
    if pdfs is None:
        pdfs = input_pdfs(cfg, ws, verbose=verbose)
    pdfs = [Path(p) for p in pdfs][: cfg.max_pdfs or None]
    if not pdfs:
        raise FileNotFoundError("build_dataset was given no PDFs. " + _where_pdfs_go(cfg, ws))
    docs, pdf_problems = read_pdfs(pdfs, verbose=verbose)
    if not docs:
        raise ValueError(f"None of the {len(pdfs)} PDF(s) gave any text: "
                         + "; ".join(f"{p['file']}: {p['reason']}" for p in pdf_problems))
    write_jsonl(ws.corpus.pdf_text, [d.row() for d in docs])

    tok_name = cfg.tokenizer or default_model_name()
    tok = load_tokenizer(tok_name)
    chunks = chunk_documents(docs, tok, cfg.chunk_tokens, cfg.chunk_overlap, cfg.max_chunks)
    if verbose:
        print(f"{len(chunks)} chunks of at most {cfg.chunk_tokens} {tok_name} tokens"
              + (f" (MAX_CHUNKS={cfg.max_chunks})" if cfg.max_chunks else ""), flush=True)

    template = load_prompt(cfg.prompt_file)
    grade_template = load_grade_prompt(cfg.grade_prompt_file)  # a bad file is named before any request
    teacher = teacher or make_teacher(cfg)
    files = ws.dataset
    out = files.folder
    store = TeacherStore(out / "teacher_answers.jsonl")
    run = run_teacher(chunks, teacher, store, cfg.pairs_per_chunk, template, DEFAULT_SYSTEM,
                      cfg.price_input_per_m, cfg.price_output_per_m, verbose=verbose,
                      reask_rejected=cfg.reask_rejected)

    triples, rejects = _teacher_rows(chunks, store, teacher, run["failed"], cfg.pairs_per_chunk, template)
    graded, curated_out, curation = curate(triples, {c.id: c.text for c in chunks}, teacher,
                                           TeacherStore(files.grades), cfg.curate_min_grade,
                                           grade_template, (cfg.price_input_per_m, cfg.price_output_per_m), verbose)
    kept, dups = deduplicate(graded, cfg.near_dup_threshold)
    rejects += curated_out + dups
    train, test, split_desc = split_by_document(kept, cfg.test_fraction, cfg.seed)
    cols = ("instruction", "input", "output", "source", "chunk_id")
    write_jsonl(files.chunks, [{"chunk_id": c.id, "source": c.source, "index": c.index, "text": c.text}
                                       for c in chunks])
    test, leak = check_leakage(cfg, train, test, chunks, files.test_leaked, cols)
    write_jsonl(files.train, [{k: r[k] for k in cols} for r in train])
    write_jsonl(files.test, [{k: r[k] for k in cols} for r in test])
    write_jsonl(files.rejects, rejects)
    reasons = collections.Counter(re.sub(r"\(Jaccard [\d.]+\)", "", re.sub(r"^unparseable JSON.*", "unparseable JSON",
                                                                        r["reason"])).strip() for r in rejects)
    summary = {"pdfs": len(pdfs), "documents": [d.stats for d in docs], "pdf_problems": pdf_problems,
               "tokenizer": tok_name, "chunk_tokens": cfg.chunk_tokens, "chunk_overlap": cfg.chunk_overlap,
               "chunks": len(chunks), "chunks_per_source": dict(collections.Counter(c.source for c in chunks)),
               "teacher": {k: run[k] for k in run if k != "failed"} | {"failed": len(run["failed"])},
               "failed_chunks": run["failed"],
               "teacher_url": cfg.teacher_base_url if teacher.backend == "http" else "",
               "examples_from_teacher": len(triples), "curation": curation, "curated_out": len(curated_out),
               "duplicates_removed": len(dups), "kept": len(kept),
               "train": len(train), "test": len(test), "split": split_desc, "leakage": leak,
               "rejects": len(rejects),
               "rejects_by_reason": dict(reasons.most_common()), "prompt": template, "system": DEFAULT_SYSTEM,
               "pairs_per_chunk": cfg.pairs_per_chunk, "seconds": round(time.time() - t0, 1),
               "files": {k: str(f) for k, f in (("train", files.train), ("test", files.test),
                                                ("rejects", files.rejects), ("card", files.card),
                                                ("answers", out / "teacher_answers.jsonl"),
                                                ("grades", files.grades),
                                                ("chunks", files.chunks), ("leaked", files.test_leaked))}
               | {"corpus": str(ws.corpus.pdf_text)}}
    files.card.write_text(dataset_card(summary, train, test), encoding="utf-8")
    files.summary.write_text(json.dumps({k: v for k, v in summary.items() if k != "prompt"}, indent=2,
                                                       default=str) + "\n")
    if verbose:
        print(f"Dataset: {len(triples)} examples from the teacher, {len(curated_out)} graded below CURATE_MIN_GRADE, "
              f"{len(dups)} duplicates removed, "
              f"{len(train)} train / {len(test)} test ({split_desc}); leakage: {leak['line']}; {len(rejects)} rejects "
              f"({', '.join(f'{k}: {v}' for k, v in reasons.most_common(5))})", flush=True)
    return summary


def _teacher_rows(chunks: list, store: TeacherStore, teacher, failed: list[dict], n: int,
                 template: str) -> tuple[list[dict], list[dict]]:
    """The triples of every stored answer of ``chunks`` (or of their parts, for a chunk asked in parts),
    and the rejects: unusable answers and items, and each chunk or part not answered yet, with why."""
    triples, rejects = [], []
    why = {(f["chunk_id"], f["part"]): f["error"] for f in failed}
    for c in chunks:
        key = request_key(teacher.key_id, render_messages(c.text, c.source, n, template, DEFAULT_SYSTEM))
        for rec, text, part in chunk_answers(store, key, c.text):
            if rec is None:
                rejects.append({"source": c.source, "chunk_id": c.id, "chunk_index": c.index, "part": part,
                                "teacher": teacher.name, "reason": "no answer yet: " + why.get(
                                    (c.id, part), "request failed") + " (rerun the notebook to ask again)"})
                continue
            t, r = triples_from_answer(rec, text)
            triples += t
            rejects += r
    return triples, rejects


def check_leakage(cfg: DatasetConfig, train: list[dict], test: list[dict], chunks: list, leaked_path: Path,
                  cols: tuple[str, ...]) -> tuple[list[dict], dict]:
    """Each test row's word 8-gram containment in the training rows and in the chunks they were
    written from (``helpers.dataset.leakage``). With ``drop_leaked_test``, the flagged rows leave the test
    split and go to ``leaked_path`` with their containment and witness; that file is written
    every time (empty when nothing was moved), so a rerun never leaves an old one behind.
    Returns the test rows kept and the leakage summary (with a one-line ``"line"``)."""
    train_ids = {r["chunk_id"] for r in train}
    passages = [(f"chunk {c.id} ({c.source} #{c.index})", c.text) for c in chunks if c.id in train_ids]
    res = measure_leakage(test, train, passages, cfg.leakage_threshold,
                          f"{len(passages)} source chunks of the training rows")
    summary = res.summary() | {"line": res.line(), "dropped": 0, "file": ""}
    moved = []
    if cfg.drop_leaked_test and res.flagged:
        flagged = set(res.flagged)
        moved = [{**{k: test[i][k] for k in cols}, "containment": round(res.scores[i], 4),
                  "witness": res.witnesses[i]} for i in res.flagged]
        test = [r for i, r in enumerate(test) if i not in flagged]
        summary.update(dropped=len(moved), file=str(leaked_path))
    write_jsonl(leaked_path, moved)
    return test, summary


def _leakage_lines(s: dict) -> list[str]:
    lk = s.get("leakage")
    if not lk:
        return []
    what = (f"{lk['dropped']} flagged row(s) moved out of `test.jsonl` into `test_leaked.jsonl`" if lk["dropped"]
            else "flagged rows kept in `test.jsonl` (DROP_LEAKED_TEST is off)" if lk["flagged"]
            else "nothing to move")
    return ["## Train/test leakage", "",
            f"{lk['line'][0].upper() + lk['line'][1:]}. Measure: {lk['measure']}; training passages: "
            f"{lk['passages']}; threshold {lk['threshold']} (LEAKAGE_THRESHOLD). {what[0].upper() + what[1:]}.", ""]


def _failed_lines(failed: list[dict]) -> list[str]:
    """The card's list of chunks the teacher did not answer this run, with its message."""
    if not failed:
        return []
    return ["## Chunks the teacher did not answer", "",
            f"{len(failed)} request(s) failed: these chunks (or parts) gave no examples this time and are asked "
            "again on the next run:", "",
            *[f"- {f['source']} chunk {f['chunk_index']}" + (f" part {f['part']}" if f.get("part") else "")
              + f" (`{f['chunk_id']}`): {f['error']}" for f in failed], ""]


def dataset_card(s: dict, train: list[dict], test: list[dict]) -> str:
    per_src = collections.defaultdict(lambda: [0, 0])
    for r in train:
        per_src[r["source"]][0] += 1
    for r in test:
        per_src[r["source"]][1] += 1
    t = s["teacher"]
    lines = [
        "# Instruction dataset built from PDFs", "",
        f"Built by notebook 02 on {time.strftime('%Y-%m-%d %H:%M')}: {s['pdfs']} PDF(s) → cleaned text → "
        f"{s['chunks']} chunks of at most {s['chunk_tokens']} tokens ({s['tokenizer']} tokenizer, overlap "
        f"{s['chunk_overlap']}) → teacher → {s['kept']} examples.", "",
        "## Counts", "",
        "| | rows |", "|---|---:|",
        f"| examples written by the teacher (valid) | {s['examples_from_teacher']} |",
        f"| graded below CURATE_MIN_GRADE (dropped) | {s.get('curated_out', 0)} |",
        f"| duplicates removed (exact and near) | {s['duplicates_removed']} |",
        f"| train (`train.jsonl`) | {s['train']} |",
        f"| test (`test.jsonl`) | {s['test']} |",
        f"| test rows moved out as leaked (`test_leaked.jsonl`) | {s.get('leakage', {}).get('dropped', 0)} |",
        f"| rejects (`rejects.jsonl`) | {s['rejects']} |", "",
        f"Split: {s['split']}.", "", *_leakage_lines(s),
        "Rows are `{\"instruction\", \"input\", \"output\", \"source\", \"chunk_id\"}` JSON lines: "
        "`datasets.load_dataset(\"json\", data_files={\"train\": \"train.jsonl\", \"test\": \"test.jsonl\"})`.", "",
        "## Sources", "",
        "| document | pages | characters (extracted → clean) | chunks | train | test |",
        "|---|---:|---:|---:|---:|---:|"]
    for d in s["documents"]:
        tr, te = per_src.get(d["file"], [0, 0])
        lines.append(f"| {d['file']} | {d['pages']} | {d['chars_extracted']:,} → {d['chars_clean']:,} | "
                     f"{s['chunks_per_source'].get(d['file'], 0)} | {tr} | {te} |")
    lines += ["", "Cleaning per document:", ""] + [f"- {d['file']}: {describe_stats(d)}" for d in s["documents"]]
    warns = [w for d in s["documents"] for w in d.get("warnings", [])]
    if warns:
        lines += ["", "Cleaning warnings (cuts of a large share of a document, and cuts refused):", ""] + \
            [f"- WARNING {w}" for w in warns]
    if s["pdf_problems"]:
        lines += ["", "Skipped PDFs:", ""] + [f"- {p['file']}: {p['reason']}" for p in s["pdf_problems"]]
    lines += ["", "## Teacher", "",
              f"- model: `{t['teacher']}` ({t['backend']}" + (f", {s['teacher_url']}" if s["teacher_url"] else "")
              + ")",
              f"- examples asked per chunk: {s['pairs_per_chunk']}",
              f"- tokens: {t['total_prompt_tokens']:,} prompt + {t['total_completion_tokens']:,} completion; "
              f"estimated cost ${t['total_cost_usd']:.4f}",
              f"- this run: {t['answered']} chunks answered ({t.get('reasked', 0)} of them re-asked after an unusable "
              f"answer), {t['resumed']} resumed from earlier runs, {t['failed']} failed",
              f"- chunks split in parts, too long for the teacher's context: {t.get('split', 0)}", "",
              *_failed_lines(s.get("failed_chunks", [])), *curation_lines(s.get("curation")),
              "## Rejects by reason", "", "| reason | count |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in s["rejects_by_reason"].items()] or ["| (none) | 0 |"]
    lines += ["", "## Prompt", "", "System:", "", "```text", s["system"], "```", "",
              "User (`{text}` is the chunk):", "", "```text", s["prompt"], "```", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# What notebooks 04, 05 and 07 read when DATASET_PATH is ""
# ----------------------------------------------------------------------------------------------
def default_dataset(ws, min_rows: int = 20) -> Path:
    """The dataset notebooks 04 and 07 train on when DATASET_PATH is "": notebook 02's.

    * Notebook 02's ``train.jsonl`` with at least ``min_rows`` examples: that one.
    * Fewer rows: an error saying what to do (too small to fine-tune on, and training on other
      data without being asked would hide it), except under ``SMOKE=1``, where the tiny smoke
      dataset is expected and the bundled real conversations (helpers/resources/chitchat) stand in, announced
      in a box.
    * No dataset from notebook 02 at all: the bundled real conversations, announced in a box.
    """
    built = ws.dataset.train
    bundled = chitchat("train")
    if built.exists():
        n = sum(1 for line in built.open(encoding="utf-8") if line.strip())
        if n >= min_rows:
            print(f"Training on notebook 02's dataset: {built} ({n} examples)")
            return built
        if not getattr(ws, "smoke", False):
            raise DataError(
                f"Notebook 02's dataset {built} has only {n} example(s), fewer than {min_rows}: too few to fine-tune "
                "on. Build a larger one with notebook 02 (more PDFs: MAX_PDFS, more chunks: MAX_CHUNKS, or more "
                f"examples per chunk: PAIRS_PER_CHUNK), or set DATASET_PATH: DATASET_PATH=\"{built}\" to train on "
                f"these {n} anyway, or DATASET_PATH=\"{bundled}\" for the bundled real conversations.")
        announce("SMOKE: not training on notebook 02's dataset", [
            f"Notebook 02's dataset {built} has only {n} example(s), fewer than {min_rows}.",
            f"This SMOKE run trains on the bundled real conversations instead: {bundled}.",
            "Outside SMOKE this is an error; set DATASET_PATH to choose the data yourself."])
        return bundled
    announce("Training on the bundled demo conversations", [
        f"There is no dataset from notebook 02 in {built.parent}.",
        f"This run trains on the bundled real conversations (chit-chat, for trying the kit): {bundled}.",
        "To train on your own data, run notebook 02 first or set DATASET_PATH to a JSONL file."])
    return bundled
