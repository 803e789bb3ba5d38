"""Does it know my documents? Fine-tuning against retrieval on real documents with human-written answers.

The documents are the reference pages of Python standard-library modules, built here with ``inspect``
from the Python that runs this script (no network): each page is a module's docstring and, for each of
its public functions, the signature and docstring. The questions are "What does `module.func` do?",
answered by the first paragraph of the function's own docstring, which people wrote. Whole modules are
held out (every fourth, sorted by name): no question about a held-out module is trained on.

The kit's own path tunes the model, as notebooks 03 and 04 would: continued pretraining on the pages of
every module (notebook 03's recipe: the user's documents are all known; only the held-out questions
are new), then instruction tuning on the training modules' questions, starting from that adapter.
Notebook 05's evaluation then answers each held-out question four ways: base and tuned, closed book and
with the top-k BM25 passages of the pages (the kit's chunker, as notebook 02 writes chunks.jsonl),
with ROUGE-L, paired 95% bootstrap intervals, retrieval's hit rate and the verdict line.

    python bench/knows.py --smoke --out /tmp/knows            # CPU, minutes: 8 modules, 2 steps each, 8 questions
    python bench/knows.py --out /tmp/knows                    # GPU: ~80 modules, the embedded model
    python bench/knows.py --model /path/to/model --out /tmp/k # GPU: another model (a folder or a cached name)

Prints the four-way table last and writes ``knows.json`` to ``--out``. The pages differ between
Python versions; the table says which Python made them.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import json
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EMBEDDED = "embedded/smollm2-135m-instruct"

MODULES = ["base64", "binascii", "bisect", "calendar", "cmath", "codecs", "colorsys", "compileall", "copy",
           "csv", "difflib", "dis", "email.utils", "filecmp", "fnmatch", "functools", "getopt", "getpass", "gettext",
           "glob", "gzip", "hashlib", "heapq", "hmac", "html", "imaplib", "importlib", "inspect", "ipaddress",
           "itertools", "json", "keyword", "linecache", "locale", "logging", "lzma", "math", "mimetypes", "ntpath",
           "operator", "os", "pickle", "pkgutil", "platform", "plistlib", "posixpath", "pprint", "py_compile",
           "quopri", "random", "re", "reprlib", "secrets", "shlex", "shutil", "site", "socket", "statistics",
           "string", "struct", "subprocess", "sysconfig", "tarfile", "tempfile", "textwrap", "threading", "timeit",
           "tokenize", "traceback", "types", "unicodedata", "urllib.parse", "urllib.request", "uuid", "warnings",
           "webbrowser", "wsgiref.util", "zipfile", "zlib"]
SMOKE_MODULES = ["base64", "bisect", "calendar", "fnmatch", "glob", "heapq", "shlex", "textwrap"]


# ----------------------------------------------------------------------------------------------
# The documents and the questions
# ----------------------------------------------------------------------------------------------
def first_paragraph(doc: str, name: str) -> str:
    """A docstring's first paragraph on one line, without a leading signature line ("name(...)")."""
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", doc.strip()) if p.strip()]
    while paras and re.match(rf"^{re.escape(name)}\(.*\)( -> .*)?$", paras[0]):
        paras = paras[1:]
    if paras and paras[0].startswith(f"{name}("):  # "name(a, b) -> x Return ..." on one line
        paras[0] = re.sub(rf"^{re.escape(name)}\([^)]*\)( -> \S+)?\s*", "", paras[0])
    return paras[0] if paras else ""


def module_page(name: str) -> tuple[str, list[dict]]:
    """A module's reference page (its docstring, then each public function's signature and docstring)
    and a question for each function whose docstring says what it does in at least 5 words."""
    mod = importlib.import_module(name)
    parts, questions = [f"Module {name}", inspect.getdoc(mod) or ""], []
    for fname, obj in sorted(vars(mod).items()):
        if fname.startswith("_") or not callable(obj) or inspect.isclass(obj):
            continue
        if getattr(obj, "__module__", None) not in (name, "_" + name.split(".")[-1], name.replace(".", "_")):
            continue
        doc = inspect.getdoc(obj)
        if not doc:
            continue
        try:
            sig = str(inspect.signature(obj))
        except (TypeError, ValueError):
            sig = "(...)"
        parts.append(f"{name}.{fname}{sig}\n{doc}")
        answer = first_paragraph(doc, fname)
        if len(answer.split()) >= 5:
            questions.append({"instruction": f"What does `{name}.{fname}` do?", "input": "", "output": answer,
                              "source": name, "header": f"{name}.{fname}("})
    return "\n\n".join(p for p in parts if p), questions


def build_data(a, folder: Path, tok) -> dict:
    """pages.jsonl (every module), chunks.jsonl (the kit's chunker), train.jsonl and test.jsonl (whole
    modules held out; each test row names the chunk that holds its function's entry)."""
    from helpers.core.jsonl import write_jsonl
    from helpers.dataset.chunking import chunk_text
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(SMOKE_MODULES if a.smoke else MODULES)
    pages, qa, chunks = [], {}, []
    for name in names:
        try:
            text, questions = module_page(name)
        except ImportError:
            continue
        if not questions:
            continue
        pages.append({"source": name, "text": text})
        qa[name] = questions
        chunks += chunk_text(text, tok, a.chunk_tokens, a.chunk_tokens // 8, name)
    held = set(sorted(qa)[1::4])
    for rows in qa.values():
        for r in rows:
            hit = next((c for c in chunks if c.source == r["source"] and r["header"] in c.text), None)
            r["chunk_id"] = hit.id if hit else ""
    train = [{k: v for k, v in r.items() if k != "header"} for m in sorted(qa) if m not in held for r in qa[m]]
    test = [{k: v for k, v in r.items() if k != "header"} for m in sorted(held) for r in qa[m]]
    if a.max_test:
        test = test[:a.max_test]
    write_jsonl(folder / "pages.jsonl", [{"text": p["text"]} for p in pages])
    write_jsonl(folder / "chunks.jsonl", [{"chunk_id": c.id, "source": c.source, "index": c.index, "text": c.text}
                                          for c in chunks])
    write_jsonl(folder / "train.jsonl", train)
    write_jsonl(folder / "test.jsonl", test)
    return {"modules": len(pages), "held_out_modules": sorted(held), "pages_words": sum(len(p["text"].split())
                                                                                        for p in pages),
            "chunks": len(chunks), "train_questions": len(train), "test_questions": len(test),
            "reference_words": round(sum(len(r["output"].split()) for r in test) / max(1, len(test)), 1)}


# ----------------------------------------------------------------------------------------------
# Tuning (the kit's train(): notebook 03's then notebook 04's recipe) and the four-way evaluation
# ----------------------------------------------------------------------------------------------
def tune(a, data: Path, out: Path) -> dict:
    """Continued pretraining on the pages, then instruction tuning from that adapter."""
    from helpers.train import TrainConfig, train
    from helpers.core.config import notebook_defaults_for
    common = dict(model_name=a.model, quantization=a.quantization, report_to="none", resume="never", seed=a.seed,
                  eval_fraction=0.0, eval_steps=0, save_steps=100000, logging_steps=10,
                  per_device_batch_size=a.batch, gradient_accumulation_steps=1, max_seq_len=a.max_len,
                  gradient_checkpointing=not a.smoke, max_steps=a.steps)
    pre_recipe = {k: v for k, v in notebook_defaults_for(TrainConfig, "03").items()
                  if k not in ("run_name", "dataset_path", "output_dir")}
    pre_recipe["replay_share"] = a.replay
    t0 = time.time()
    pre = train(TrainConfig(**{**pre_recipe, **common, "mode": "pretrain", "dataset_path": str(data / "pages.jsonl"),
                               "output_dir": str(out / "pretrain"), "num_train_epochs": a.pretrain_epochs}))
    t1 = time.time()
    sft = train(TrainConfig(mode="sft", dataset_path=str(data / "train.jsonl"), output_dir=str(out / "sft"),
                            init_adapter=str(pre.adapter_dir), num_train_epochs=a.sft_epochs, **common))
    return {"adapter": str(sft.adapter_dir), "pretrain_steps": pre.metrics["steps"],
            "pretrain_seconds": round(t1 - t0, 1), "pretrain_loss": pre.metrics["train_loss"],
            "sft_steps": sft.metrics["steps"], "sft_seconds": round(time.time() - t1, 1),
            "sft_loss": sft.metrics["train_loss"], "pretrain_recipe": {k: pre_recipe[k] for k in sorted(pre_recipe)}}


def evaluate(a, data: Path, adapter: str, out: Path) -> dict:
    """Notebook 05's evaluation of the tuned adapter, with its retrieval baseline."""
    from helpers.evaluation import EvalConfig, evaluate_adapter
    cfg = EvalConfig(adapter_dir=adapter, test_path=str(data / "test.jsonl"), output_dir=str(out / "eval"),
                     chunks_path=str(data / "chunks.jsonl"), quantization=a.quantization, retrieval_k=a.k,
                     max_new_tokens=a.max_new, batch_size=a.gen_batch, ppl_batch_size=a.gen_batch,
                     bootstrap=a.bootstrap, general_path="none", rouge_backend="rouge-score", seed=a.seed)
    return evaluate_adapter(cfg, plots_dir=out / "plots")


def _ci(d: dict, signed: bool = False) -> str:
    f = (lambda x: f"{x:+.3f}") if signed else (lambda x: f"{x:.3f}")
    return f"{f(d['value'])} [{f(d['ci'][0])}, {f(d['ci'][1])}]" if "ci" in d else f(d["value"])


def table(result: dict) -> str:
    """The four-way table, the hit rate and the verdict, in Markdown."""
    r = result["report"]["retrieval"]
    if "skipped" in r:
        return f"Retrieval baseline not measured: {r['skipped']}"
    v, d = r["verdict"], result["data"]
    lines = [f"{result['model']} on {d['test_questions']} held-out questions from {len(d['held_out_modules'])} "
             f"held-out modules (Python {result['python']}); top {r['k']} passages of {d['chunks']} chunks", "",
             "| way | ROUGE-L F1 [95% CI] | − base, closed book |", "|---|---|---|"]
    for way, w in r["ways"].items():
        diff = v["diffs"].get(f"{way}-base")
        lines.append(f"| {w['label']} | {_ci(w['rougeL'])} | {_ci(diff, True) if diff else ''} |")
    h = r["hit_rate"]
    lines += ["", f"Hit rate (the question's own chunk in the top {r['k']}): " +
              (h["skipped"] if "skipped" in h else f"{_ci(h)} ({h['hits']} of {h['n']})"),
              f"tuned + passages − base + passages: {_ci(v['diffs']['tuned_rag-base_rag'], True)}; "
              f"base + passages − tuned: {_ci(v['diffs']['base_rag-tuned'], True)}",
              f"Training: pretrain {result['tune']['pretrain_steps']} steps ({result['tune']['pretrain_seconds']} s), "
              f"SFT {result['tune']['sft_steps']} steps ({result['tune']['sft_seconds']} s)",
              "", f"Verdict: {v['line']}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench/knows_out", help="work folder; knows.json goes here")
    ap.add_argument("--model", default=EMBEDDED)
    ap.add_argument("--quantization", default="auto")
    ap.add_argument("--smoke", action="store_true", help="CPU check: 8 modules, a few steps, short answers")
    ap.add_argument("--k", type=int, default=3, help="passages retrieved per question")
    ap.add_argument("--chunk-tokens", type=int, default=256)
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=-1, help="max steps of each training (-1 = the epochs)")
    ap.add_argument("--pretrain-epochs", type=float, default=3.0)
    ap.add_argument("--sft-epochs", type=float, default=3.0)
    ap.add_argument("--replay", type=float, default=0.2, help="notebook 03's replay share of general conversations")
    ap.add_argument("--max-new", type=int, default=64)
    ap.add_argument("--max-test", type=int, default=0, help="held-out questions evaluated (0 = all)")
    ap.add_argument("--gen-batch", type=int, default=32)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args(argv)
    if a.smoke:
        a.quantization, a.max_len, a.batch, a.steps, a.max_new = "none", 128, 2, 2, 12
        a.max_test, a.gen_batch, a.bootstrap, a.chunk_tokens = a.max_test or 8, 8, 200, 96
    from helpers.common.models import load_tokenizer
    out = Path(a.out)
    data = out / "data"
    t0 = time.time()
    info = build_data(a, data, load_tokenizer(a.model))
    print(f"Data: {info['modules']} modules ({len(info['held_out_modules'])} held out), {info['chunks']} chunks, "
          f"{info['train_questions']} training and {info['test_questions']} held-out questions", flush=True)
    tuned = tune(a, data, out)
    report = evaluate(a, data, tuned["adapter"], out)
    result = {"model": a.model, "python": platform.python_version(), "smoke": a.smoke, "args": vars(a), "data": info,
              "tune": tuned, "seconds": round(time.time() - t0, 1),
              "report": {k: report[k] for k in ("metrics", "retrieval", "device", "leakage", "n_examples")}}
    (out / "knows.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(("CPU SMOKE RUN (tiny: not a finding)\n" if a.smoke else "") + table(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
