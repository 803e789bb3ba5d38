"""Run the numbered notebooks in order, headless, with papermill.

    python -m helpers.pipeline                 # every notebook, SMOKE as set in the environment
    python -m helpers.pipeline 04 05           # only these
    python -m helpers.pipeline --out runs/x    # where executed notebooks go (default runs/<time>)

Each notebook runs in a fresh kernel with the current environment (SMOKE, LLAMA_KIT_WORKDIR, and
any parameter overrides by name). A failing notebook stops the run and names the notebook and
the cell; the executed copy (with its error) is kept for reading.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .setup import kit_root

ROOT = kit_root()
NOTEBOOKS = ROOT / "notebooks"


def notebooks(selected: list[str] | None = None) -> list[Path]:
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if selected:
        found = [p for p in found if any(p.name.startswith(s) for s in selected)]
    return found


def run_notebook(path: Path, out_dir: Path, timeout: int = 3600, parameters: dict | None = None) -> Path:
    import papermill as pm
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / path.name
    pm.execute_notebook(str(path), str(out), cwd=str(NOTEBOOKS), kernel_name="python3",
                        parameters=parameters or {}, progress_bar=False, log_output=False,
                        execution_timeout=timeout)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("only", nargs="*", help="notebook number prefixes to run (default: all)")
    ap.add_argument("--out", default=None, help="folder for the executed notebooks")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    a = ap.parse_args(argv)
    out = Path(a.out) if a.out else ROOT / "runs" / time.strftime("%Y%m%d-%H%M%S")
    nbs = notebooks(a.only)
    if not nbs:
        print(f"No notebooks match {a.only} in {NOTEBOOKS}")
        return 2
    from papermill.exceptions import PapermillExecutionError
    for nb in nbs:
        t = time.time()
        print(f"==> {nb.name}", flush=True)
        try:
            run_notebook(nb, out, a.timeout)
        except PapermillExecutionError as exc:
            print(f"FAILED {nb.name}, cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
                  f"The executed notebook with the error is {out / nb.name}", flush=True)
            return 1
        print(f"    ok in {time.time() - t:.0f}s -> {out / nb.name}", flush=True)
    print(f"All {len(nbs)} notebooks ran. Executed copies in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
