"""helpers: the code behind the numbered notebooks of the Llama fine-tuning kit, a room per step.

    core        configuration, named file paths, JSONL, HTTP, notices (imports nothing else)
    common      GPU choices, models, prompts, generation, rows, run folders, checkpoints, merge,
                loss plots, bundled material, the notebook setup (imports core)
    scrape      01: arXiv search and download, and its recorded offline server
    dataset     02: PDFs to clean text, chunks, the teacher's triples, splits, importers, leakage
    train       03, 04: train(cfg), its memory plan, packing and fused kernels
    evaluation  05: base against tuned, what tuning cost, the report
    chat        06: the chat session and widget, export (merge, GGUF, Hub)
    sweep       07: the hyperparameter sweep and its curves
    pipeline    every notebook headless; notebooks: which configs each notebook builds

A room imports only itself and the rooms above it (CONTRIBUTING.md, "Layout"). Heavy libraries
are imported inside functions, so ``import helpers`` is instant.
"""
import logging as _logging
import warnings as _warnings

__version__ = "0.2.0"

# Two messages from libraries, not from the kit's own calls, that every notebook would otherwise
# show in red: peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` when it wraps
# a model, and bitsandbytes on a CPU says it found no optional "kernels" package (it works without).
# Only these exact messages are hidden; every other warning still shows.
_warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)


class _DropMessage(_logging.Filter):
    def filter(self, record: _logging.LogRecord) -> bool:
        return "gemm_4bit_forward from kernels-community" not in record.getMessage()


_logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropMessage())
