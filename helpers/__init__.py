"""helpers: the shared code behind the numbered notebooks of the Llama fine-tuning kit.

One module per pipeline step, each small and importable on its own (heavy libraries are
imported inside functions, so ``import helpers`` is instant):

    config      step configuration dataclasses, environment overrides, SMOKE=1
    setup       Colab detection, Drive, versions, GPU report, where files go
    models      load a causal LM + tokenizer (4-bit/8-bit/16-bit/fp32), the embedded model
    prompts     instruction and chat templates, EOS handling, training tokenization
    data        JSONL datasets, validation, the embedded real conversations
    train       one training entry point (notebooks 03, 04, 07; `python -m helpers.train.loop`)
    plots       loss curves
"""
import logging as _logging
import warnings as _warnings

__version__ = "0.1.0"

# Two messages from libraries, not from the kit's own calls, that every notebook would otherwise
# show in red: peft 0.21 reads transformers' deprecated `is_gradient_checkpointing` when it wraps
# a model, and bitsandbytes on a CPU says it found no optional "kernels" package (it works without).
# Only these exact messages are hidden; every other warning still shows.
_warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)


class _DropMessage(_logging.Filter):
    def filter(self, record: _logging.LogRecord) -> bool:
        return "gemm_4bit_forward from kernels-community" not in record.getMessage()


_logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_DropMessage())
