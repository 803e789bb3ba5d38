#!/usr/bin/env bash
# Install everything, then run the whole pipeline (notebooks 01-07) end to end on the embedded
# default model, offline (SMOKE=1), writing executed notebooks to runs/ and plots to plots/smoke/.
# Usage: bash scripts/demo.sh         VENV=/path/to/venv to use another environment.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
bash scripts/setup_env.sh "$VENV"
export SMOKE="${SMOKE:-1}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$VENV/bin/python" -m helpers.pipeline "$@"
