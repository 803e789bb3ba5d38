#!/usr/bin/env bash
# Install everything into a virtual environment, then run the test suite (offline, CPU).
# Usage: bash scripts/test.sh [pytest args]      VENV=/path/to/venv to use another environment.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
bash scripts/setup_env.sh "$VENV"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
"$VENV/bin/ruff" check .  # the house style: pyproject.toml [tool.ruff]
exec "$VENV/bin/python" -m pytest "$@"
