"""Packing (helpers/train/packing.py) on the real embedded model and the bundled conversations: a packed
batch trains each document exactly as if it were alone (losses and adapter gradients), through the
kit's training forward (LoRA, the fused whole-layer path under checkpointing); the naive
padding-free batch is shown to contaminate; labels never cross a document boundary."""
import pytest
import torch

from helpers.core.jsonl import read_jsonl
from helpers.common.resources import chitchat
from helpers.common.models import load_model
from helpers.train.packing import PackedCollator, PackingError, document_labels, pack_examples
from helpers.train import TrainConfig, train
from helpers.train.config import packed_step
from tiny_train import EMB, chat_examples, lora_model



@pytest.fixture(scope="module")
def tok():
    return load_model(EMB, quantization="none", for_training=True, verbose=False)[1]


def _doc_losses(model, batch, bounds):
    """Per-document mean loss (over its reply tokens) of one forward of ``batch``; ``bounds``: per
    document (row, start, end) in the batch."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits.float()
    labels = batch["labels"]
    out = []
    for b, s, e in bounds:
        lg, lb = logits[b, s:e - 1], labels[b, s + 1:e]
        out.append(torch.nn.functional.cross_entropy(lg, lb.to(lg.device), ignore_index=-100, reduction="mean"))
    return out


def _alone(model, examples, coll):
    """Each document alone (a batch of one row), its loss and the adapter gradients of their sum."""
    model.zero_grad(set_to_none=True)
    losses = []
    for e in examples:
        batch = {k: (v.to(model.device) if torch.is_tensor(v) else v) for k, v in coll([dict(e)]).items()}
        n = len(e["input_ids"])
        (loss,) = _doc_losses(model, batch, [(0, 0, n)])
        loss.backward()
        losses.append(loss.item())
    return losses, {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _bounds(rows, flat: bool):
    out, off = [], 0
    for b, r in enumerate(rows):
        s = 0 if not flat else off
        for n in r["seq_lengths"]:
            out.append((0 if flat else b, s, s + n))
            s += n
        off += len(r["input_ids"])
    return out


def _packed(model, rows, coll):
    model.zero_grad(set_to_none=True)
    batch = {k: (v.to(model.device) if torch.is_tensor(v) else v) for k, v in coll(rows).items()}
    losses = _doc_losses(model, batch, _bounds(rows, coll.kernel != "mask"))
    sum(losses).backward()
    return [x.item() for x in losses], {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _order(rows, examples):
    """The examples in the order the packed rows hold them."""
    by_ids = {tuple(e["input_ids"]): e for e in examples}
    out = []
    for r in rows:
        s = 0
        for n in r["seq_lengths"]:
            out.append(by_ids[tuple(r["input_ids"][s:s + n])])
            s += n
    return out


@pytest.mark.parametrize("ckpt", [True, False], ids=["fused-layer", "fused-lora"])
def test_packed_documents_train_as_if_alone(tok, ckpt):
    """(a) Per-document losses and every adapter gradient of a packed batch equal those of the
    documents run alone, through the training forward train() builds (fused whole-layer path under
    checkpointing, which must be taken: it is not left for torch's checkpoint)."""
    from helpers.train.fast_lora import _LoRADecoderLayer
    examples = chat_examples(tok, 5)
    rows, rep = pack_examples(examples, 420)
    assert rep["rows"] < len(examples) and any(len(r["seq_lengths"]) > 1 for r in rows)
    model = lora_model(ckpt)
    coll = PackedCollator(tok.pad_token_id, "mask")
    calls = []
    orig = _LoRADecoderLayer.forward
    _LoRADecoderLayer.forward = staticmethod(lambda ctx, x, c, *p: calls.append(1) or orig(ctx, x, c, *p))
    try:
        packed_losses, packed_grads = _packed(model, rows, coll)
    finally:
        _LoRADecoderLayer.forward = staticmethod(orig)
    assert bool(calls) == ckpt  # the fused whole-layer function ran on the packed batch (30 layers)
    alone_losses, alone_grads = _alone(model, _order(rows, examples), coll)
    assert packed_losses == pytest.approx(alone_losses, abs=2e-5)
    assert len(packed_grads) == 30 * 7 * 2
    for n, g in packed_grads.items():
        scale = alone_grads[n].abs().max().item()
        assert (g - alone_grads[n]).abs().max().item() <= 1e-4 * max(scale, 1e-3), n


def test_naive_padding_free_batch_contaminates_and_ours_does_not(tok):
    """(b) The regression guard. TRL's padding-free batch (one row, per-document positions,
    cu_seq_lens, no mask) run as a model is called by default (its config's use_cache=True makes a
    cache, and transformers then skips its packed-sequence detection): later documents attend to
    earlier ones and their logits are far off. With the cache off transformers' own per-document
    mask is right: that is what the kit's batches carry (use_cache=False), whoever runs them."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
    examples = chat_examples(tok, 3)
    model, _ = load_model(EMB, quantization="none", for_training=True, verbose=False)
    model.eval()
    assert model.config.use_cache and model.config._attn_implementation == "sdpa"
    with torch.no_grad():
        alone = [model(input_ids=torch.tensor([e["input_ids"]]), use_cache=False).logits[0] for e in examples]

        def worst(logits, bounds):
            return max((logits[b, s:e] - a).abs().max().item() for (b, s, e), a in zip(bounds, alone))

        naive = DataCollatorForLanguageModeling(pad_token_id=tok.pad_token_id, padding_free=True)(
            [{"input_ids": e["input_ids"]} for e in examples])
        naive_in = {k: v for k, v in naive.items() if k not in ("labels", "seq_idx")}
        flat = [(0, s, e) for s, e in zip(naive["cu_seq_lens_q"][:-1].tolist(), naive["cu_seq_lens_q"][1:].tolist())]
        assert worst(model(**naive_in).logits, flat) > 1.0  # contaminated (about 26 here)
        assert worst(model(**naive_in, use_cache=False).logits, flat) < 1e-3
        rows = [dict(e, seq_lengths=[len(e["input_ids"])]) for e in examples[:2]]
        rows = [{"input_ids": rows[0]["input_ids"] + rows[1]["input_ids"],
                 "completion_mask": rows[0]["completion_mask"] + rows[1]["completion_mask"],
                 "seq_lengths": [len(rows[0]["input_ids"]), len(rows[1]["input_ids"])]},
                {**examples[2], "seq_lengths": [len(examples[2]["input_ids"])]}]
        for impl in ("sdpa", "eager", "flex_attention"):
            model.set_attn_implementation(impl)
            ours = PackedCollator(tok.pad_token_id, "mask")(rows)
            logits = model(**{k: v for k, v in ours.items() if k != "labels"}).logits
            assert worst(logits, _bounds(rows, False)) < 1e-3, impl


def test_labels_never_cross_a_boundary_and_only_replies_count(tok):
    """(c) In a packed row every document's first token has label -100 (never predicted from the
    previous document), prompt tokens have -100, reply tokens keep their id; padding is -100 with
    positions of its own; positions restart at 0 per document; the flattened batch's bounds."""
    examples = chat_examples(tok, 4)
    rows, _ = pack_examples(examples, 10_000)
    assert len(rows) == 1 and sorted(rows[0]["seq_lengths"]) == sorted(len(e["input_ids"]) for e in examples)
    ordered = _order(rows, examples)
    short = {**ordered[0], "seq_lengths": [len(ordered[0]["input_ids"])]}
    batch = PackedCollator(tok.pad_token_id, "mask")([rows[0], short])
    assert batch["use_cache"] is False and batch["input_ids"].shape == (2, len(rows[0]["input_ids"]))
    labels, pos = batch["labels"][0].tolist(), batch["position_ids"][0].tolist()
    s = 0
    for e in ordered:
        n = len(e["input_ids"])
        assert labels[s] == -100 and pos[s:s + n] == list(range(n))
        want = [t if m else -100 for t, m in zip(e["input_ids"], e["completion_mask"])]
        assert labels[s + 1:s + n] == want[1:]
        assert any(x != -100 for x in want) and any(m == 0 for m in e["completion_mask"])  # replies only
        s += n
    n0 = len(short["input_ids"])
    assert batch["labels"][1, n0:].eq(-100).all() and batch["position_ids"][1, n0:].tolist() == list(
        range(batch["input_ids"].shape[1] - n0))
    flat = PackedCollator(tok.pad_token_id, "varlen")([rows[0], short])
    cu = [0]
    for n in rows[0]["seq_lengths"] + [n0]:
        cu.append(cu[-1] + n)
    assert flat["cu_seq_lens_q"].tolist() == cu and flat["cu_seq_lens_q"].dtype == torch.int32
    assert flat["input_ids"].shape == (1, cu[-1]) and flat["max_length_q"] == max(rows[0]["seq_lengths"] + [n0])
    assert flat["labels"][0, cu[:-1]].eq(-100).all()
    # TRL's labels (its dataset preparation builds them from completion_mask) are kept, the first tokens masked
    lab = document_labels([5, 6, 7, 8], None, [5, -100, 7, 8], [2, 2])
    assert lab == [-100, -100, -100, 8]


def test_pack_examples_keeps_every_document_and_names_a_bad_one(tok):
    examples = chat_examples(tok, 12, max_len=128)
    rows, rep = pack_examples(examples, 256)
    assert all(len(r["input_ids"]) <= 256 and sum(r["seq_lengths"]) == len(r["input_ids"]) for r in rows)
    assert sorted(map(tuple, (e["input_ids"] for e in _order(rows, examples)))) == sorted(
        tuple(e["input_ids"]) for e in examples)
    assert rep["examples"] == 12 and rep["rows"] == len(rows) < 12 and 0 < rep["fill"] <= 1
    assert pack_examples(examples, 256)[0] == rows  # deterministic
    with pytest.raises(PackingError, match="example 3 has 21 tokens, more than the packing budget of 20"):
        pack_examples([{"input_ids": [1, 2], "completion_mask": [0, 1]}] * 3
                      + [{"input_ids": list(range(21)), "completion_mask": [1] * 21}], 20)


def _run_params(tmp_path, **extra):
    return {**dict(MODEL_NAME=EMB, QUANTIZATION="none", MAX_SEQ_LEN=256, PER_DEVICE_BATCH_SIZE=2,
                   GRADIENT_ACCUMULATION_STEPS=1, LEARNING_RATE=1e-3, WARMUP_RATIO=0.0, LOGGING_STEPS=1,
                   REPORT_TO="none", GRADIENT_CHECKPOINTING=True, LORA_R=4, LORA_ALPHA=8, EVAL_STEPS=0, MAX_STEPS=6,
                   EVAL_FRACTION=0.2, DATASET_PATH=str(tmp_path / "train.jsonl")), **extra}


def test_training_packs_by_default_and_validation_loss_is_the_same_figure(tmp_path, tok):
    """PACKING is on by default through train(): packed rows (fewer than examples), the mask kernel
    on the CPU, the fused layers on, the validation loss falls. The validation examples stay one per
    row, so the loss before training is the same figure with PACKING=False; that run pads."""
    from helpers.common.resources import chitchat_conversations
    from helpers.core.jsonl import write_jsonl
    assert TrainConfig().packing is True and TrainConfig().separate_documents is False
    write_jsonl(tmp_path / "train.jsonl", chitchat_conversations()[:40])
    cfg = TrainConfig.from_params(_run_params(tmp_path, OUTPUT_DIR=str(tmp_path / "run"), MAX_STEPS=-1), environ={})
    res = train(cfg)
    m = res.metrics
    pk = m["data"]["train"]["packing"]
    assert pk["kernel"] == "mask" and pk["examples"] == 32 and pk["rows"] < 32 and pk["budget"] == 256
    assert "fused-lora" in m["kernels"] and m["eval_loss"] < m["start_eval_loss"], m
    # one epoch: every packed row once, and the token count (from the collator, never read back
    # from the device) is every token of the rows (the pad token is not in the conversations)
    step = packed_step(cfg, 32, pk["rows"])  # rows of k examples: at most 2 x the batch of 2 in a step
    per_step = step.micro_batch * step.accumulation
    assert pk["rows_per_step"] == per_step == min(2, max(1, round(4 * pk["rows"] / 32))), (pk, step)
    assert m["steps"] == -(-pk["rows"] // per_step) and m["tokens_seen"] == pk["tokens"], (m, pk)
    # the rate follows the examples a step holds against the batch of 2
    assert pk["lr_scaling"] == "linear" and pk["learning_rate"] == pytest.approx(1e-3 * per_step * 32 / pk["rows"] / 2)
    rates = [h["learning_rate"] for h in res.log_history if "learning_rate" in h]
    assert max(rates) > 1e-3 and max(rates) <= pk["learning_rate"] + 1e-12, rates
    # TRL's metrics still come, read once per log line
    steps = [h for h in res.log_history if "loss" in h]
    assert steps and all(0 < h["mean_token_accuracy"] < 1 and h["entropy"] > 0 for h in steps), steps
    logs = []
    off = TrainConfig.from_params(_run_params(tmp_path, OUTPUT_DIR=str(tmp_path / "off"), PACKING=False, MAX_STEPS=1),
                                  environ={})
    res_off = train(off, log=logs.append)
    m_off = res_off.metrics
    assert "packing" not in m_off["data"]["train"] and any("Packing off (PACKING=False)" in str(x) for x in logs)
    assert m_off["start_eval_loss"] == pytest.approx(m["start_eval_loss"], abs=1e-4)
    assert max(h["learning_rate"] for h in res_off.log_history if "learning_rate" in h) <= 1e-3
    # a packed step holds more examples: the same 6 steps saw more tokens than 6 padded ones would
    assert m["tokens_seen"] > 6 * 2 * 200


def test_pretraining_keeps_documents_apart_when_asked(tmp_path, tok):
    """SEPARATE_DOCUMENTS (pretraining): blocks record the document pieces they hold, the collator
    trains them apart (positions restart at each piece, no label crosses into the next one); off,
    a block is one stream. The run's manifest says which."""
    from helpers.core.jsonl import write_jsonl
    from helpers.train.examples import cut_blocks, pack_texts
    assert cut_blocks([[1, 2, 3], [4, 5, 6, 7, 8], [9]], 4) == [
        {"input_ids": [1, 2, 3, 4], "completion_mask": [1] * 4},
        {"input_ids": [5, 6, 7, 8], "completion_mask": [1] * 4},
        {"input_ids": [9], "completion_mask": [1]}]
    separate = cut_blocks([[1, 2, 3], [4, 5, 6, 7, 8], [9]], 4, separate=True)
    assert [b["seq_lengths"] for b in separate] == [[3, 1], [4], [1]]
    texts = [" ".join(m["content"] for m in r["messages"]) for r in read_jsonl(chitchat("train"))[:30]]
    blocks, rep = pack_texts(tok, texts, 128, separate=True)
    one, _ = pack_texts(tok, texts, 128)
    assert [b["input_ids"] for b in blocks] == [b["input_ids"] for b in one] and rep["separate_documents"]
    assert all(sum(b["seq_lengths"]) == len(b["input_ids"]) for b in blocks)
    multi = next(b for b in blocks if len(b["seq_lengths"]) > 1)
    batch = PackedCollator(tok.pad_token_id, "mask")([multi])
    first = multi["seq_lengths"][0]
    assert batch["position_ids"][0, first].item() == 0 and batch["labels"][0, first].item() == -100
    write_jsonl(tmp_path / "train.jsonl", [{"text": t} for t in texts])
    for sep in (True, False):
        cfg = TrainConfig.from_params(_run_params(tmp_path, OUTPUT_DIR=str(tmp_path / f"pt{sep}"), MODE="pretrain",
                                                  MAX_SEQ_LEN=128, MAX_STEPS=2, SEPARATE_DOCUMENTS=sep), environ={})
        m = train(cfg).metrics
        assert (m["data"]["train"].get("separate_documents") == {"kernel": "mask"}) is sep
        assert m["steps"] == 2 and m["train_loss"] == m["train_loss"]  # trained, not NaN


def test_collator_rejects_an_unknown_kernel_and_a_wrong_row():
    with pytest.raises(PackingError, match="packing kernel 'flash'"):
        PackedCollator(0, "flash")
    with pytest.raises(PackingError, match=r"seq_lengths \[2, 2\] add up to 4, the row has 3 tokens"):
        PackedCollator(0)([{"input_ids": [1, 2, 3], "completion_mask": [1, 1, 1], "seq_lengths": [2, 2]}])


# ------------------------------------------------------------------------------------------------
# GPU: the varlen kernels, in bf16 and fp16 (the lead runs these: python -m pytest -m gpu tests/)
# ------------------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("kernel", ["mask", "varlen", "flash_attention_2"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_gpu_packed_documents_train_as_if_alone(tok, kernel, dtype):
    """(a) on a GPU, per kernel and dtype: the mask path (a T4's), PyTorch's varlen and
    FlashAttention-2 (skipped where the GPU or the install lacks them), through the fused layers
    under checkpointing. Tolerances are those of 16-bit sums in a different order."""
    from helpers.common.hardware import choose, gpu_caps
    from helpers.common.hardware import torch_varlen
    from helpers.train.packing import packing_kernel, prepare_model_for_packing
    caps = gpu_caps()
    if kernel != "mask" and caps.capability[0] < 8:
        pytest.skip(f"{kernel} needs compute capability 8.0")
    if kernel == "varlen" and torch_varlen() is None:
        pytest.skip("this torch has no torch.nn.attention.varlen")
    if kernel == "flash_attention_2" and not caps.flash_attn:
        pytest.skip("flash_attn is not installed")
    if dtype == torch.bfloat16 and caps.capability[0] < 8:
        pytest.skip("bf16 needs compute capability 8.0")
    model = lora_model(True, "cuda", torch.float32)
    if kernel == "flash_attention_2":
        model.get_base_model().set_attn_implementation("flash_attention_2")
    prepare_model_for_packing(model, kernel)
    if kernel == "varlen":
        assert packing_kernel(model, choose(caps))[0] == ("varlen" if choose(caps).packing == "varlen" else "mask")
    examples = chat_examples(tok, 5)
    rows, _ = pack_examples(examples, 420)
    coll = PackedCollator(tok.pad_token_id, kernel)
    with torch.autocast("cuda", dtype=dtype):
        packed_losses, packed_grads = _packed(model, rows, coll)
        alone_losses, alone_grads = _alone(model, _order(rows, examples), coll)
    assert packed_losses == pytest.approx(alone_losses, abs=2e-2)
    for n, g in packed_grads.items():
        ref = alone_grads[n]
        assert (g - ref).norm().item() <= 0.05 * ref.norm().item() + 1e-6, n

