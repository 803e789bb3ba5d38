#!/usr/bin/env bash
# Create (or update) a virtual environment with the kit installed (editable) and everything its
# notebooks and tests need, at the versions in requirements.txt.
# Usage: bash scripts/setup_env.sh [VENV_DIR]   (default .venv; VENV in the environment also works)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-${VENV:-.venv}}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" scripts/install.py
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
"$VENV/bin/python" - <<'PY'
import importlib.metadata as m
print("environment ready:", ", ".join(f"{p} {m.version(p)}" for p in ("torch", "transformers", "peft", "trl", "datasets", "llama-notebook-kit")))
PY
