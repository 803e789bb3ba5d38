#!/usr/bin/env bash
# Create (or update) a virtual environment with the kit installed (editable) and everything its
# notebooks and tests need, at the versions in requirements.txt.
# Usage: bash scripts/setup_env.sh [VENV_DIR]   (default .venv; VENV in the environment also works)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-${VENV:-.venv}}"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "The kit needs Python 3.11 or newer; $PY is $("$PY" -V 2>&1). Set PYTHON=/path/to/python3.11 and rerun." >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" scripts/install.py
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
"$VENV/bin/python" - <<'PY'
import importlib.metadata as m
names = ("torch", "transformers", "peft", "trl", "datasets", "llama-notebook-kit")
print("environment ready:", ", ".join(f"{p} {m.version(p)}" for p in names))
PY
