#!/usr/bin/env bash
# Build .devcarry/ (git-ignored): what bench/gpu_setup.sh assembles on the GPU machine (no network),
# split so that each `run` call carries at most 64 MiB:
#   call 1: .devcarry/ga                  first half of the embedded model's GGUF
#   call 2: .devcarry/gb                  second half
#   call 3: .devcarry/whl .devcarry/bnb .devcarry/tok [.devcarry/data]
#           the pinned wheels of requirements.txt that the GPU image lacks or has at other versions
#           (transformers, peft, trl, accelerate, datasets, liger-kernel, gguf, rouge-score, bm25s, optuna), bitsandbytes
#           unpacked with its CUDA 13 library only, the Llama 3 tokenizer, R-manual pages
#   (Unsloth comparisons: .devcarry/siteu from ../shared/bench/make_peer_site.sh, in a call of its own)
# Usage: bash bench/make_carry.sh   (needs .venv from scripts/setup_env.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$PWD/.venv/bin/python"
pin() { $PY -c "import sys; from helpers.common.workspace import requirement_pins; print(next(p.spec for p in requirement_pins() if p.name == sys.argv[1]))" "$1"; }
G=$($PY -c "from helpers.common.models import EMBEDDED, EMBEDDED_DEFAULT, embedded_gguf; print(embedded_gguf(EMBEDDED[EMBEDDED_DEFAULT]))")
rm -rf .devcarry/ga .devcarry/gb .devcarry/whl .devcarry/bnb
mkdir -p .devcarry/ga .devcarry/gb .devcarry/tok .devcarry/data .devcarry/whl .devcarry/bnb
half=$(( $(stat -c %s "$G") / 2 ))
head -c "$half" "$G" > .devcarry/ga/part_a
tail -c +"$((half + 1))" "$G" > .devcarry/gb/part_b
P="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
python3 -m pip download -q $P -d .devcarry/whl $(pin transformers) $(pin peft) $(pin trl) $(pin accelerate) \
  $(pin datasets) $(pin liger-kernel) $(pin gguf) $(pin pypdf) $(pin pypdfium2) $(pin cryptography) $(pin bm25s) dill==0.4.1 multiprocess==0.70.19 nltk \
  $(pin optuna) colorlog==6.12.0
$PY -m pip wheel -q --no-deps -w .devcarry/whl $(pin rouge-score)
python3 -m pip download -q $P -d /tmp/bnb-whl $(pin bitsandbytes)
(cd .devcarry/bnb && unzip -q -o /tmp/bnb-whl/bitsandbytes-*.whl && find bitsandbytes -name 'libbitsandbytes_*.so' ! -name '*cuda130*' -delete)
$PY -c "import sys; sys.path.insert(0, 'tests'); from offline import llama3_tokenizer_dir; import shutil; d = llama3_tokenizer_dir(); [shutil.copy(d / f, '.devcarry/tok/') for f in ('tokenizer.json', 'tokenizer_config.json')]"
if [ -d /usr/share/R/doc/manual ]; then $PY bench/quality.py --extract-r-manuals .devcarry/data/r_pages.jsonl; fi
du -sh --apparent-size .devcarry/* | sort -k2
