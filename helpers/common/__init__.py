"""What two or more steps share, over ``helpers.core``: GPU capabilities (``hardware``), access to a
gated model (``access``), model and tokenizer loading (``models``), prompt formatting (``prompts``),
generation (``generate``), a run folder and its adapter (``run``), Drive-safe checkpoints
(``checkpoints``), merging an adapter (``merge``), loss plots (``plots``), dataset rows (``rows``),
bundled material (``resources``) and the notebook setup (``workspace``). Imports only
``helpers.core`` and itself."""
