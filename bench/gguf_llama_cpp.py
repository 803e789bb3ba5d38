"""Check our GGUF export in llama.cpp itself, not only through transformers' GGUF loader.

Merges a tiny real adapter (a few steps on the bundled conversations, as the export tests train
it) into the embedded model, writes f16 and q8_0 GGUF files with helpers.chat.export, answers a chat
prompt greedily with transformers, then loads each GGUF in llama.cpp (node-llama-cpp's prebuilt
CPU binaries, installed from npm into bench/llama_cpp/node_modules) and compares: the prompt's
token ids, the greedy answer's token ids, and that the answer stops at <|im_end|>. Prints a table.

    python bench/gguf_llama_cpp.py [--work /tmp/gguf-check] [--new-tokens 24] [--rope-llama3]

``--rope-llama3`` gives the merged model Llama 3.1/3.2's "llama3" rope scaling (factor 8 over an
original context of 128 tokens, so it changes the frequencies the prompts use) before the export:
llama.cpp must then find and apply the exported ``rope_freqs.weight`` table to answer like
transformers does.

Needs node >= 20 and npm (the registry) once; CPU only.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
NODE_DIR = ROOT / "bench" / "llama_cpp"
NODE_LLAMA_CPP = "node-llama-cpp@3.22.1"
QUESTIONS = ["What do you do on weekends?", "Tell me about your favourite holiday and why you like it.",
             "Write a short story about a cat who learns to cook."]


def greedy_answers(model_dir: Path, new_tokens: int) -> list[dict]:
    """Each question's chat prompt, its token ids and the greedy answer of transformers (fp32, CPU)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    refs = []
    for question in QUESTIONS:
        prompt = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                         tokenize=False)
        ids = tok(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            new = model.generate(ids, max_new_tokens=new_tokens, do_sample=False)[0, ids.shape[1]:].tolist()
        refs.append(dict(prompt=prompt, prompt_ids=ids[0].tolist(), hf_new_ids=new, hf_text=tok.decode(new)))
    return refs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/gguf-check")
    ap.add_argument("--new-tokens", type=int, default=24)
    ap.add_argument("--rope-llama3", action="store_true", help="export with llama3 rope scaling (rope_freqs)")
    a = ap.parse_args()
    from transformers import AutoTokenizer

    from helpers.chat.export import export_gguf, merge_adapter
    from tiny_adapter import EMBEDDED, tiny_adapter
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    merged = merge_adapter(EMBEDDED, tiny_adapter(work), work / "merged", log=lambda *_: None)
    unscaled = greedy_answers(merged, a.new_tokens) if a.rope_llama3 else None
    if a.rope_llama3:
        cfg = json.loads((merged / "config.json").read_text())
        theta = (cfg.get("rope_parameters") or {}).get("rope_theta") or cfg.get("rope_theta", 10000.0)
        cfg["rope_parameters"] = {"rope_theta": theta, "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 128}
        (merged / "config.json").write_text(json.dumps(cfg, indent=2))
    files = [export_gguf(merged, work / "gguf", t, name="tuned") for t in ("f16", "q8_0")]
    tok = AutoTokenizer.from_pretrained(str(merged))
    refs = greedy_answers(merged, a.new_tokens)
    if unscaled is not None:  # the check has teeth only if the scaling changes what transformers answers
        differ = sum(r["hf_new_ids"] != u["hf_new_ids"] for r, u in zip(refs, unscaled))
        print(f"llama3 rope scaling changes transformers' greedy answer on {differ} of {len(refs)} prompts")
    (work / "ref.json").write_text(json.dumps(refs))
    if not (NODE_DIR / "node_modules" / "node-llama-cpp").exists():
        subprocess.run(["npm", "install", "--no-save", "--prefix", str(NODE_DIR), NODE_LLAMA_CPP], check=True)
    p = subprocess.run(["node", str(NODE_DIR / "check.mjs"), str(work / "ref.json"), *map(str, files)],
                       capture_output=True, text=True, cwd=NODE_DIR)
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    if p.returncode or len(rows) != len(files) * len(QUESTIONS):
        print(p.stdout[-2000:], p.stderr[-3000:])
        return 1
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    print("| GGUF | question | prompt tokens equal | greedy tokens equal | stops where transformers stops | "
          "transformers | llama.cpp |")
    print("|---|---|---|---|---|---|---|")
    ok = True
    for r in rows:
        ref = refs[r["prompt"]]
        hf = [t for t in ref["hf_new_ids"] if t != eos]
        same = r["llama_ids"][:len(hf)] == hf
        # stopped at <|im_end|> like transformers, or both ran to the token limit
        stops = len(r["llama_ids"]) == len(hf) if ref["hf_new_ids"][-1] == eos else len(r["llama_ids"]) >= len(hf)
        ok &= r["prompt_tokens_equal"] and same and stops
        print(f"| {Path(r['file']).name} | {QUESTIONS[r['prompt']]} | {r['prompt_tokens_equal']} | {same} | {stops} | "
              f"{ref['hf_text']!r} | {r['llama_text']!r} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
