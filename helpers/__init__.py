"""helpers: the shared code behind the numbered notebooks of the Llama fine-tuning kit.

One module per pipeline step, each small and importable on its own (heavy libraries are
imported inside functions, so ``import helpers`` is instant):

    config      step configuration dataclasses, environment overrides, SMOKE=1
    setup       Colab detection, Drive, versions, GPU report, where files go
    models      load a causal LM + tokenizer (4-bit/8-bit/16-bit/fp32), the embedded model
    prompts     instruction and chat templates, EOS handling, training tokenization
    data        JSONL datasets, validation, the embedded real conversations
    train       one training entry point (notebooks 03, 04, 07; `python -m helpers.train`)
    plots       loss curves
"""
__version__ = "0.1.0"
