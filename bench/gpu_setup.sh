#!/usr/bin/env bash
# Assemble, on the GPU machine (no network), what our code needs from the parts carried in
# .devcarry/ over consecutive calls (each call carries at most 64 MiB; /tmp survives while warm):
#   .devcarry/ga/part_a, .devcarry/gb/part_b   the embedded model's GGUF in two halves
#   .devcarry/whl, .devcarry/bnb                the pinned packages (requirements.txt) the image lacks
#   .devcarry/tok                               the Llama 3 tokenizer (for random-weight Llama shapes)
# Build .devcarry/ here with `bash bench/make_carry.sh`; on the GPU machine source this file in
# every call: `. bench/gpu_setup.sh` (sets PYTHONPATH, caches, offline mode).
mkdir -p /tmp/site /tmp/kitcache/gguf
[ -f .devcarry/ga/part_a ] && cp .devcarry/ga/part_a /tmp/gguf_part_a
if [ -f .devcarry/gb/part_b ]; then
  cat /tmp/gguf_part_a .devcarry/gb/part_b > /tmp/kitcache/gguf/SmolLM2-135M-Instruct.Q4_1.gguf
fi
if [ -d .devcarry/whl ] && ls .devcarry/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site --upgrade .devcarry/whl/*.whl
fi
[ -d .devcarry/bnb ] && cp -r .devcarry/bnb/. /tmp/site/
[ -d .devcarry/tok ] && mkdir -p /tmp/tok && cp .devcarry/tok/* /tmp/tok/
[ -d .devcarry/data ] && mkdir -p /tmp/data && cp .devcarry/data/* /tmp/data/
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 LLAMA_KIT_CACHE=/tmp/kitcache \
       BENCH_TOKENIZER=/tmp/tok TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 MPLBACKEND=Agg
