"""The trainer (helpers/train/trainer.py) on the real embedded model: the kit's step gives TRL's loss
and metrics without reading them back mid-step, embed_tokens/lm_head train at their smaller rate,
the batches are packed at the packed learning rate, and the arguments and callbacks are the run's."""
import json
from pathlib import Path

import pytest
import torch

from helpers.common.models import load_model
from helpers.common.resources import chitchat_conversations
from helpers.common.run import RunDir
from helpers.core.jsonl import write_jsonl
from helpers.train import TrainConfig, train
from helpers.train.config import packed_step
from helpers.train.data import TrainData
from helpers.train.packing import REAL_TOKENS, PackedCollator, pack_examples
from helpers.train.trainer import kit_trainer_class, run_callbacks, training_arguments, training_batches
from tiny_train import EMB, adapter_tensors, cfg_for, chat_examples, lora_model


@pytest.fixture(scope="module")
def tok():
    return load_model(EMB, quantization="none", for_training=True, verbose=False)[1]


def test_training_batches_pack_sft_rows_at_the_packed_rate_and_keep_validation_one_per_row(tmp_path, tok):
    """PACKING: the SFT examples packed into rows of MAX_SEQ_LEN, rows per step and rate as packed_step
    says, the report for the data report; validation stays one example per row. Without a packing
    kernel the examples go as they are, at LEARNING_RATE as set."""
    examples = chat_examples(tok, 12, max_len=128)
    data = TrainData([], examples[:10], examples[10:], {}, None)
    cfg = TrainConfig(max_seq_len=256, learning_rate=1e-4)
    said = []
    batches = training_batches(cfg, data, tok, "mask", said.append)
    rows, rep = pack_examples(examples[:10], 256)
    assert batches.train == rows and batches.eval == examples[10:] and batches.has_eval
    step = packed_step(cfg, 10, len(rows))
    lr = step.learning_rate
    assert batches.step == step and lr > 1e-4 and step.why in said[0]
    assert batches.report["packing"] == dict(rep, kernel="mask", learning_rate=lr, lr_scaling="linear",
                                             rows_per_step=step.micro_batch * step.accumulation)
    assert isinstance(batches.collator, PackedCollator) and batches.collator.kernel == "mask"
    plain = training_batches(cfg.replace(packing=False), data, tok, None, said.append)
    assert plain.train == examples[:10] and plain.collator is None and plain.step is None
    assert plain.report == {}
    pretrain = training_batches(cfg.replace(mode="pretrain"), data, tok, "mask", said.append)
    assert pretrain.train == examples[:10] and pretrain.report == {"separate_documents": {"kernel": "mask"}}
    # the trainer's arguments: the packed rate, the kit's own packing (never TRL's), validation by steps
    args = training_arguments(cfg.replace(report_to="none"), batches, RunDir(tmp_path / "run"), tmp_path / "ckpt",
                              said.append)
    assert args.learning_rate == lr and args.packing is False
    assert args.per_device_train_batch_size == step.micro_batch and args.per_device_eval_batch_size == 4
    assert args.output_dir == str(tmp_path / "ckpt")
    assert args.eval_strategy == "steps" and args.optim == "adamw_torch" and args.use_cpu


def test_run_callbacks_keep_the_order_checkpoints_budget_log_extra_then_early_stopping(tmp_path):
    from transformers import EarlyStoppingCallback, TrainerCallback
    extra = TrainerCallback()
    cfg = TrainConfig(early_stopping_patience=2)
    cbs = run_callbacks(cfg, RunDir(tmp_path), tmp_path / "durable", 0.0, [extra], has_eval=True)
    assert [type(c).__name__ for c in cbs] == ["DurableCheckpoints", "TimeBudget", "LiveLog", "TrainerCallback",
                                               "EarlyStoppingCallback"]
    assert cbs[3] is extra and cbs[4].early_stopping_patience == 2
    assert not any(isinstance(c, EarlyStoppingCallback)  # no validation, or no patience: no early stopping
                   for c in run_callbacks(cfg, RunDir(tmp_path), tmp_path, 0.0, [], has_eval=False))
    assert len(run_callbacks(TrainConfig(), RunDir(tmp_path), tmp_path, 0.0, [], has_eval=True)) == 3


def test_kit_trainer_step_is_trl_loss_and_metrics(tmp_path, tok):
    """The kit's training step (helpers.train.trainer.KitTrainerMixin) keeps TRL's loss and metrics but never
    reads them back mid-step: on a packed micro-batch of the real model it gives TRL's
    ``compute_loss`` exactly (train and eval mode), and its GPU-side sums give TRL's entropy and
    token accuracy when the trainer logs; the batch's token count comes from the collator."""
    from trl import SFTConfig, SFTTrainer
    from datasets import Dataset
    model = lora_model(False)
    rows, rep = pack_examples(chat_examples(tok, 6), 300)
    coll = PackedCollator(tok.pad_token_id, "mask", count_tokens=True)
    args = SFTConfig(output_dir=str(tmp_path / "o"), report_to="none", use_cpu=True, packing=False,
                     completion_only_loss=True, max_length=300, per_device_train_batch_size=2,
                     include_num_input_tokens_seen="non_padding", dataset_num_proc=None)
    trainer = kit_trainer_class()(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                  processing_class=tok, data_collator=coll)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch[REAL_TOKENS] == int((batch["input_ids"] != tok.pad_token_id).sum()) > 0
    for training in (True, False):
        model.train(training)
        mode = "train" if training else "eval"
        trainer._metrics[mode].clear()
        inputs = trainer._prepare_inputs(batch)
        with torch.no_grad():
            ours = trainer.compute_loss(model, dict(inputs))
            theirs = SFTTrainer.compute_loss(trainer, model, {k: v for k, v in inputs.items() if k != REAL_TOKENS})
        assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
        # TRL appended its own per-step metrics; the kit's sums are read when the trainer logs
        ent, acc = trainer._metrics[mode]["entropy"][-1], trainer._metrics[mode]["mean_token_accuracy"][-1]
        valid, ent_sum, top1 = trainer._kit_sums[mode].tolist()
        assert ent_sum / valid == pytest.approx(ent, rel=1e-5) and top1 / valid == pytest.approx(acc, rel=1e-6)
    trainer._track_num_input_tokens(batch)
    assert trainer.state.num_input_tokens_seen == batch[REAL_TOKENS]


def test_pretraining_with_embeddings_at_a_smaller_learning_rate(tmp_path, embedded_dir):
    docs = [{"text": (c["messages"][0]["content"] + " ") * 30} for c in chitchat_conversations()[:12]]
    write_jsonl(tmp_path / "corpus.jsonl", docs)
    cfg = cfg_for(tmp_path / "pt", tmp_path / "corpus.jsonl", mode="pretrain", max_steps=6, save_steps=6,
                  eval_fraction=0.25, train_embeddings=True, embedding_lr_ratio=0.1, eval_steps=6)
    r = train(cfg)
    m = r.metrics
    assert m["data"]["train"]["blocks"] > 0 and m["eval_perplexity"] < m["start_perplexity"]
    saved = adapter_tensors(r.adapter_dir)
    assert any("embed_tokens" in k for k in saved)  # the embeddings were trained and saved
    st = json.loads((r.output_dir / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    lrs = [h["learning_rate"] for h in st["log_history"] if "learning_rate" in h]
    # the logged rate (group 0's, as the table shows it) is LEARNING_RATE's, not the embeddings' 10x smaller one
    assert lrs[0] == pytest.approx(cfg.learning_rate)
    opt = torch.load(r.output_dir / "checkpoints" / "checkpoint-6" / "optimizer.pt", weights_only=False)
    assert opt["param_groups"][0]["initial_lr"] == pytest.approx(cfg.learning_rate)
    group_lrs = sorted({g["initial_lr"] for g in opt["param_groups"]})
    assert group_lrs[0] == pytest.approx(cfg.learning_rate * 0.1) and group_lrs[-1] == pytest.approx(cfg.learning_rate)


@pytest.mark.gpu
def test_gpu_training_step_never_waits_for_the_gpu(tmp_path):
    """The default path on a bf16 GPU (QLoRA, packed rows, fused layers), over steps 4 to 7 (the
    steps that log are outside) in torch's sync debug mode: neither the Trainer's loop nor the
    loss and its metrics (helpers.train.trainer.KitTrainerMixin) wait for the GPU any more (TRL's
    ``compute_loss`` read four figures back per step, the Trainer two). The waits left are
    the libraries' own, each in every step (H200, 2026-12-01): TRL's fused LM head picks the
    trained positions with a boolean mask (trl/trainer/utils.py, twice, and twice again in its
    backward, torch/autograd/graph.py), and transformers checks whether the positions hold
    several documents (masking_utils.py, find_packed_sequence_indices). Any other wait fails. The
    watch proves itself with one wait of its own, so the test still holds when the libraries' go.
    On fp16 the gradient scaler reads its overflow flag every step, by design."""
    import warnings

    from transformers import TrainerCallback

    from helpers.common.resources import chitchat
    from helpers.core.jsonl import read_jsonl, write_jsonl
    from helpers.common.hardware import choose, gpu_caps
    if choose(gpu_caps()).dtype != "bfloat16":
        pytest.skip("fp16 training: the gradient scaler checks for overflow every step")
    write_jsonl(tmp_path / "train.jsonl", read_jsonl(chitchat("train"))[:200])  # the bundled real conversations
    found = []

    class Watch(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                self.cm = warnings.catch_warnings(record=True)
                self.log = self.cm.__enter__()
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                torch.ones(1, device="cuda").item()  # a wait of our own: the watch must see it
            elif state.global_step == 7:
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("default")
                self.cm.__exit__(None, None, None)
                found.extend(f"{w.filename}:{w.lineno}: {w.message}" for w in self.log
                             if "called a synchronizing CUDA operation" in str(w.message))

    cfg = TrainConfig.from_params(dict(MODEL_NAME=EMB, QUANTIZATION="4bit", MAX_SEQ_LEN=512, PER_DEVICE_BATCH_SIZE=4,
                                       GRADIENT_ACCUMULATION_STEPS=1, MAX_STEPS=9, LOGGING_STEPS=100, REPORT_TO="none",
                                       EVAL_FRACTION=0.0, EVAL_STEPS=0, SAVE_STEPS=1000, RESUME="never",
                                       DATASET_PATH=str(tmp_path / "train.jsonl"),
                                       OUTPUT_DIR=str(tmp_path / "run")), environ={})
    m = train(cfg, callbacks=[Watch()]).metrics
    assert m["steps"] == 9 and m["data"]["train"]["packing"]["kernel"] in ("varlen", "flash_attention_2")
    probe = [f for f in found if Path(f.split(":")[0]).name == Path(__file__).name]
    assert probe, "the sync debug mode did not see the test's own .item(): the watch is not on"
    known = ("trl/trainer/utils.py:", "torch/autograd/graph.py:", "transformers/masking_utils.py:")
    other = [f for f in found if f not in probe and not any(k in f for k in known)]
    assert not other, "host syncs inside training steps:\n" + "\n".join(other[:20])
