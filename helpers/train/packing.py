"""Packing without cross-document attention: several short SFT examples in one row, each of them
trained exactly as if it were alone.

A packed row holds whole documents (encoded examples) back to back. For it to train as the
documents alone would, four things must hold, and this module makes each of them hold:

* each document attends only to itself (block-diagonal causal attention);
* positions (RoPE) restart at 0 for each document;
* the loss covers the replies only (the examples' ``completion_mask``);
* no label crosses a boundary: a document's first token is never predicted from the previous
  document's last one (its label is -100).

How the libraries behave (transformers 5.23, TRL 1.16, torch 2.11+):

* TRL's ``DataCollatorForLanguageModeling(padding_free=True)`` flattens the whole micro-batch into
  one row and gives per-document ``position_ids`` and ``cu_seq_lens_q/k``, no attention mask, and
  sets the label of each document's first token to -100.
* transformers' ``masking_utils._preprocess_mask_arguments`` infers the documents from
  ``position_ids`` (``find_packed_sequence_indices``: a new document wherever the position does not
  grow by one) and builds the block-diagonal causal mask of the attention implementation (a boolean
  mask for SDPA, an additive one for eager, a document ``BlockMask`` for flex attention), but only
  when there is no attention mask AND no cache. ``LlamaModel.forward`` makes a ``DynamicCache``
  whenever ``use_cache`` is on, and ``use_cache`` defaults to the config's (True): a packed batch run
  with the cache on gets a plain causal mask over the whole row, and every document attends to
  the ones before it. TRL's ``compute_loss`` passes ``use_cache=False``; anything else that runs
  the batch (an evaluation loop, a test, a callback) silently trains or scores the contaminated
  version. Flash-attention kernels instead take ``cu_seq_lens_q/k`` (or infer them from the
  positions of a single row) and are right either way.

The kit's design: :func:`pack_examples` packs the encoded examples into rows of at most
``MAX_SEQ_LEN`` tokens (best fit decreasing, whole documents only) and records each row's
document lengths; :class:`PackedCollator` makes the micro-batch for the kernel chosen by
capability (``helpers.common.hardware``):

* ``"mask"`` (a T4, any GPU without a varlen kernel, the CPU): the rows stay rows, padded to the
  longest, with per-document ``position_ids`` and ``use_cache=False`` in the batch itself, so
  transformers builds the per-document mask of the model's attention (SDPA, eager or flex) whoever
  runs the batch. The mask is (rows, 1, tokens, tokens) booleans: 4 MiB for 4 rows of 1024.
* ``"varlen"`` (compute capability 8.0+, PyTorch's ``torch.nn.attention.varlen``, no flash_attn):
  the micro-batch is flattened into one row with ``cu_seq_lens_q/k`` and ``max_length_q/k``; the
  model's attention is :data:`VARLEN` (registered here with transformers' ``AttentionInterface``,
  and with ``AttentionMaskInterface`` as flash attention's mask, which is None without padding),
  which calls ``varlen_attn`` with causal masking per document.
* ``"flash_attention_2"`` (flash_attn installed, 8.0+): the same flattened batch, for
  transformers' own flash path (``_flash_attention_forward``, its varlen branch).

The kit's fused decoder layer (``helpers.train.fast_lora``) takes the same keyword arguments to its
attention call, so packed batches keep the fused whole-layer path. Nothing here is global across
processes: under DDP each rank collates its own micro-batches.
"""
from __future__ import annotations

import bisect
import inspect
from dataclasses import dataclass
from typing import Any

from helpers.common.hardware import torch_varlen

KERNELS = ("mask", "varlen", "flash_attention_2")
VARLEN = "kit_varlen"  # the attention implementation name registered for PyTorch's varlen kernel
# key of a micro-batch's non-padding token count, a Python int counted on the CPU
# (PackedCollator(count_tokens=True)); the trainer (helpers.train.trainer.KitTrainerMixin) takes it out
REAL_TOKENS = "kit_real_tokens"


class PackingError(ValueError):
    pass


# ----------------------------------------------------------------------------------------------
# Rows: whole documents packed into token budgets
# ----------------------------------------------------------------------------------------------
def pack_examples(examples: list[dict], budget: int) -> tuple[list[dict], dict]:
    """Encoded examples (``input_ids``, ``completion_mask``) packed into rows of at most ``budget``
    tokens, best fit decreasing (the longest first, each into the fullest row it still fits).
    A row: ``input_ids`` and ``completion_mask`` of its documents back to back, ``seq_lengths``
    (their lengths, in order). No document is cut or dropped; one longer than the budget is an
    error naming it. Deterministic: ties keep the examples' order. Returns (rows, report)."""
    if budget < 1:
        raise PackingError(f"packing budget {budget}: must be at least 1 token")
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        if n > budget:
            raise PackingError(f"example {i} has {n} tokens, more than the packing budget of {budget} "
                               "(MAX_SEQ_LEN): encode with max_len <= the budget")
        if len(e["completion_mask"]) != n:
            raise PackingError(f"example {i}: completion_mask has {len(e['completion_mask'])} entries for {n} tokens")
    order = sorted((i for i, e in enumerate(examples) if e["input_ids"]), key=lambda i: -len(examples[i]["input_ids"]))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (tokens left, bin index), sorted
    for i in order:
        n = len(examples[i]["input_ids"])
        k = bisect.bisect_left(free, (n, -1))
        if k < len(free):
            left, b = free.pop(k)
        else:
            left, b = budget, len(bins)
            bins.append([])
        bins[b].append(i)
        if left - n > 0:
            bisect.insort(free, (left - n, b))
    rows = []
    for docs in bins:
        docs.sort()  # documents in their original order within a row
        rows.append({"input_ids": [t for i in docs for t in examples[i]["input_ids"]],
                     "completion_mask": [m for i in docs for m in examples[i]["completion_mask"]],
                     "seq_lengths": [len(examples[i]["input_ids"]) for i in docs]})
    tokens = sum(len(r["input_ids"]) for r in rows)
    report = {"examples": len(order), "rows": len(rows), "tokens": tokens, "budget": budget,
              "fill": round(tokens / max(1, len(rows) * budget), 3)}
    return rows, report


def describe_packing(rep: dict, kernel: str) -> str:
    return (f"Packing: {rep['examples']} examples into {rep['rows']} rows of at most {rep['budget']} tokens "
            f"({100 * rep['fill']:.0f}% full), each document attending to itself only ({kernel} path)")


def document_labels(ids: list[int], loss_mask: list[int] | None, labels: list[int] | None,
                    seq_lengths: list[int]) -> list[int]:
    """The labels of one packed row: the token where the loss is taken (``labels`` as given, else
    ``loss_mask``), -100 elsewhere and at every document's first token (the model predicts label t
    from token t-1, which for a first token is the previous document's last)."""
    if sum(seq_lengths) != len(ids):
        raise PackingError(f"seq_lengths {seq_lengths} add up to {sum(seq_lengths)}, the row has {len(ids)} tokens")
    if labels is not None:
        out = list(labels)
    elif loss_mask is not None:
        out = [t if m else -100 for t, m in zip(ids, loss_mask)]
    else:
        out = list(ids)
    start = 0
    for n in seq_lengths:
        out[start] = -100
        start += n
    return out


def document_positions(seq_lengths: list[int]) -> list[int]:
    return [p for n in seq_lengths for p in range(n)]


@dataclass
class PackedCollator:
    """Micro-batches of packed rows (``input_ids``, ``seq_lengths``, and ``labels`` or
    ``completion_mask``; a row without ``seq_lengths`` is one document) for ``kernel``:

    * ``"mask"``: (rows, longest) tensors; ``position_ids`` restart per document; padding at the
      end with label -100 and positions 0, 1, ... (a document of its own, so no query row is fully
      masked); ``use_cache=False`` so transformers builds the per-document mask.
    * ``"varlen"`` / ``"flash_attention_2"``: every document of the micro-batch in one row, with
      ``position_ids``, ``cu_seq_lens_q/k`` (int32) and ``max_length_q/k``; no padding.

    ``count_tokens``: the batch also carries :data:`REAL_TOKENS`, its tokens that are not
    ``pad_token_id`` (the Trainer's "non_padding" count), so the trainer need not read it back
    from the GPU. Only for the kit's trainer, which removes it before the model runs.
    """
    pad_token_id: int
    kernel: str = "mask"
    pad_to_multiple_of: int | None = None
    count_tokens: bool = False

    def __post_init__(self):
        if self.kernel not in KERNELS:
            raise PackingError(f"packing kernel {self.kernel!r}: one of {', '.join(KERNELS)}")

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch
        rows = []
        for f in features:
            ids = list(f["input_ids"])
            lens = list(f.get("seq_lengths") or [len(ids)])
            labels = document_labels(ids, f.get("completion_mask"), f.get("labels"), lens)
            rows.append((ids, labels, lens))
        if self.kernel != "mask":
            ids = [t for r in rows for t in r[0]]
            labels = [t for r in rows for t in r[1]]
            lens = [n for r in rows for n in r[2]]
            cu = torch.tensor([0] + lens, dtype=torch.int32).cumsum(0, dtype=torch.int32)
            longest = max(lens)
            return self._counted({"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
                                  "position_ids": torch.tensor([document_positions(lens)]),
                                  "cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest,
                                  "max_length_k": longest, "use_cache": False})
        width = max(len(r[0]) for r in rows)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids_t = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels_t = torch.full((len(rows), width), -100, dtype=torch.long)
        pos_t = torch.zeros((len(rows), width), dtype=torch.long)
        for b, (ids, labels, lens) in enumerate(rows):
            n = len(ids)
            ids_t[b, :n] = torch.tensor(ids)
            labels_t[b, :n] = torch.tensor(labels)
            pos_t[b, :n] = torch.tensor(document_positions(lens))
            pos_t[b, n:] = torch.arange(width - n)
        return self._counted({"input_ids": ids_t, "labels": labels_t, "position_ids": pos_t, "use_cache": False})

    def _counted(self, batch: dict) -> dict:
        if self.count_tokens:
            batch[REAL_TOKENS] = int((batch["input_ids"] != self.pad_token_id).sum())
        return batch


# ----------------------------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------------------------
def packing_kernel(model, choice) -> tuple[str, str]:
    """(kernel, reason) for a packed run of ``model`` with the hardware ``choice``
    (``helpers.common.hardware.Choice.packing``): flash attention when the model runs it, PyTorch's varlen
    kernel where the choice says so and the model is on a GPU, else the per-document mask."""
    impl = getattr(model.config, "_attn_implementation", None) or "eager"
    if impl.startswith("flash_attention"):
        return "flash_attention_2", f"the model runs {impl}: its varlen kernel takes the documents' bounds"
    on_gpu = any(p.is_cuda for p in model.parameters())
    if choice.packing == "varlen" and on_gpu and torch_varlen() is not None:
        return "varlen", "PyTorch's varlen attention (torch.nn.attention.varlen) takes the documents' bounds"
    return "mask", f"{impl} attention with a per-document causal mask built from the positions"


def varlen_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                             scaling: float | None = None, cu_seq_lens_q=None, cu_seq_lens_k=None,
                             max_length_q=None, max_length_k=None, **kwargs):
    """transformers' attention-function signature over PyTorch's ``varlen_attn``: q, k, v of one
    flattened row (1, heads, tokens, head_dim), causal within each document of ``cu_seq_lens``.
    Without the documents' bounds (a batch that is not packed) it is SDPA, as the model would run."""
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
    if cu_seq_lens_q is None:
        if attention_mask is not None and attention_mask.ndim == 2:
            attention_mask = _causal_padding_mask(attention_mask, query.shape[2])
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if query.shape[0] != 1:
        raise PackingError(f"varlen attention takes one flattened row of documents, got a batch of {query.shape[0]}")
    if dropout:
        raise PackingError("varlen attention runs without attention dropout")
    fn = torch_varlen()
    params = inspect.signature(fn).parameters
    heads, kv_heads = query.shape[1], key.shape[1]
    extra = {}
    if kv_heads != heads:
        if "enable_gqa" in params:
            extra["enable_gqa"] = True
        else:
            key, value = repeat_kv(key, heads // kv_heads), repeat_kv(value, heads // kv_heads)
    if "is_causal" in params:  # torch 2.10 / 2.11
        extra["is_causal"] = True
    else:  # later: causal is the window (-1, 0)
        extra["window_size"] = (-1, 0)
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (tokens, heads, head_dim)
    out = fn(q, k, v, cu_seq_lens_q, cu_seq_lens_k if cu_seq_lens_k is not None else cu_seq_lens_q,
             int(max_length_q), int(max_length_k if max_length_k is not None else max_length_q), scale=scaling, **extra)
    return out.unsqueeze(0), None  # (1, tokens, heads, head_dim), as transformers' attention functions return


def _causal_padding_mask(mask2d, q_len: int):
    import torch
    kv = mask2d.shape[-1]
    causal = torch.ones(q_len, kv, dtype=torch.bool, device=mask2d.device).tril(kv - q_len)
    return causal[None, None] & mask2d.bool()[:, None, None, :]


def register_varlen() -> str:
    """Register :data:`VARLEN` with transformers (attention function and mask function); idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask
    AttentionInterface.register(VARLEN, varlen_attention_forward)
    AttentionMaskInterface.register(VARLEN, flash_attention_mask)
    return VARLEN


def prepare_model_for_packing(model, kernel: str) -> None:
    """The model's side of a packed run: no cache (so the per-document mask is built whoever runs
    the batch), and for ``"varlen"`` the :data:`VARLEN` attention."""
    model.config.use_cache = False
    if kernel == "varlen":
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        base.set_attn_implementation(register_varlen())
