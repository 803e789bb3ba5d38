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
import threading
import time
from pathlib import Path

from helpers.common.workspace import kit_root

ROOT = kit_root()
NOTEBOOKS = ROOT / "notebooks"


def notebooks(selected: list[str] | None = None) -> list[Path]:
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if selected:
        found = [p for p in found if any(p.name.startswith(s) for s in selected)]
    return found


class Progress:
    """The console's view of one notebook running: which code cell (n of m), what it starts with,
    and the time since the notebook started. On a terminal one line is rewritten every second; in a
    log (not a terminal) there is a line per cell and one every ``heartbeat`` seconds of a long cell."""

    def __init__(self, nb_path: Path, stream=None, heartbeat: float = 60.0):
        import nbformat
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        cells = nbformat.read(str(nb_path), as_version=4).cells
        self.code_index = {i: n for n, i in enumerate((i for i, c in enumerate(cells) if c.cell_type == "code"), 1)}
        self.n_code = len(self.code_index)
        self.heartbeat = heartbeat
        self.t0 = time.time()
        self.current = ""
        self.lines: list[str] = []  # what was printed, for tests
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def elapsed(self) -> str:
        s = int(time.time() - self.t0)
        return f"{s // 60}:{s % 60:02d}"

    def _emit(self, text: str, final: bool = False) -> None:
        self.lines.append(text)
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def on_cell_start(self, cell, cell_index, **kw) -> None:
        n = self.code_index.get(cell_index)
        if n is None:
            return
        first = next(
            (line.strip() for line in cell.source.splitlines() if line.strip() and not line.strip().startswith("#")), ""
        )
        self.current = f"cell {n} of {self.n_code}" + (f": {first[:60]}" if first else "")
        self._last = time.time()
        self._emit(f"    [{self.elapsed()}] {self.current}")

    def _tick(self) -> None:
        self._last = time.time()
        while not self._stop.wait(self._next_wait()):
            if not self.current:
                continue
            if self.tty:
                self._emit(f"    [{self.elapsed()}] {self.current}")
            elif time.time() - self._last >= self.heartbeat:
                self._last = time.time()
                self._emit(f"    [{self.elapsed()}] still running {self.current}")

    def _next_wait(self) -> float:
        """Seconds until the next tick: one on a terminal (its line is rewritten every second); in a
        log, until the heartbeat is due (at most a second), so that a cell longer than ``heartbeat``
        gets its "still running" line then, not up to a second later."""
        if self.tty:
            return 1.0
        return max(0.05, min(1.0, self.heartbeat - (time.time() - self._last)))

    def __enter__(self):
        self._thread = threading.Thread(target=self._tick, daemon=True, name="pipeline-progress")
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.tty and self.lines:
            self.stream.write("\r\033[K")
            self.stream.flush()
        return False


def _kernel_manager_class():
    """The kernel talks to us over local IPC sockets (in Jupyter's runtime folder) rather than TCP
    on 127.0.0.1: the same speed, nothing listening on a port, and no "Kernel is running over TCP
    without encryption" warning from ipykernel for every notebook."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kw):
            kw.setdefault("transport", "ipc")
            super().__init__(**kw)

    return IPCKernelManager


def run_notebook(path: Path, out_dir: Path, timeout: int = 3600, parameters: dict | None = None,
                 progress: Progress | None = None) -> Path:
    """Execute ``path`` into ``out_dir`` (same name); ``progress`` gets each cell's start."""
    import papermill as pm
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / path.name
    hooks = {"on_cell_start": progress.on_cell_start} if progress is not None else {}
    pm.execute_notebook(str(path), str(out), cwd=str(NOTEBOOKS), kernel_name="python3",
                        parameters=parameters or {}, progress_bar=False, log_output=False,
                        execution_timeout=timeout, kernel_manager_class=_kernel_manager_class(), **hooks)
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
    t_all = time.time()
    for nb in nbs:
        t = time.time()
        print(f"==> {nb.name}", flush=True)
        try:
            with Progress(nb) as progress:
                run_notebook(nb, out, a.timeout, progress=progress)
        except PapermillExecutionError as exc:
            print(f"FAILED {nb.name}, cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
                  f"The executed notebook with the error is {out / nb.name}", flush=True)
            return 1
        print(f"    ok in {_mmss(time.time() - t)} -> {out / nb.name}", flush=True)
    print(f"All {len(nbs)} notebooks ran in {_mmss(time.time() - t_all)}. Executed copies in {out}")
    return 0


def _mmss(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


if __name__ == "__main__":
    sys.exit(main())
