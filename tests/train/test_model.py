"""Model preparation (helpers/train/model.py) on the real embedded model: LoRA, the fused layers and
the packing kernel as train() sets them up, fp32 master weights under fp16, and Liger's process-wide
patches scoped to CUDA tensors."""
import torch

from helpers.common.models import load_model
from helpers.train import TrainConfig
from helpers.train.data import TrainData
from helpers.train.model import (add_lora, describe_trainable, keep_master_weights_fp32, prepare_model,
                                 scope_liger_to_cuda)
from tiny_train import EMB


def test_prepare_model_adds_lora_fused_layers_and_the_packing_kernel(embedded_dir):
    """On the CPU: no memory plan (no GPU), no Liger, LoRA on the target modules only, routed through
    the fused layers, and the per-document mask for packed rows; the log says each."""
    model, _ = load_model(EMB, quantization="none", for_training=True, verbose=False)
    cfg = TrainConfig(model_name=EMB, lora_r=4, lora_alpha=8, target_modules="q_proj,v_proj",
                      gradient_checkpointing=False)
    said = []
    prep = prepare_model(model, cfg, "none", TrainData([], [{"input_ids": [0] * 10}], [], {}, None), said.append)
    assert prep.plan is None and prep.cfg is cfg and prep.packing == "mask" and prep.kernels == "fused-lora"
    trained = [n for n, p in prep.model.named_parameters() if p.requires_grad]
    assert trained and all("lora_" in n and ("q_proj" in n or "v_proj" in n) for n in trained)
    assert prep.trainable == sum(p.numel() for p in prep.model.parameters() if p.requires_grad)
    assert any(s.startswith("Fast kernels: fused LoRA on") for s in said)
    assert "Packing kernel: mask" in " ".join(said) and said[-1].startswith("Trainable parameters: ")


def test_add_lora_trains_the_embeddings_in_full_when_asked(embedded_dir):
    model, _ = load_model(EMB, quantization="none", for_training=True, verbose=False)
    model = add_lora(model, TrainConfig(model_name=EMB, lora_r=4, train_embeddings=True))
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("embed_tokens" in n for n in trained) and any("lora_A" in n for n in trained)
    assert model.peft_config["default"].r == 4
    # the figures add up with the load line's: the base's weights stay (frozen), LoRA and the copies are added
    base = sum(p.numel() for p in load_model(EMB, quantization="none", verbose=False)[0].parameters())
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    emb = model.get_input_embeddings().weight.numel()
    line = describe_trainable(model)
    assert line == (f"Trainable parameters: {(lora + emb) / 1e6:.2f}M (LoRA {lora / 1e6:.2f}M + trainable copies of "
                    f"embed_tokens/lm_head {emb / 1e6:.2f}M), added beside the {base / 1e6:.1f}M frozen weights of "
                    "the base model")


def test_fp16_training_keeps_master_weights_fp32(embedded_dir):
    """TRL's SFTTrainer casts a quantized model's trainable weights to bf16 (its QLoRA recipe); under
    fp16 the kit puts them back in fp32 so the GradScaler can unscale their gradients. The embedded
    model with the kit's LoRA, its adapters cast as TRL casts them."""
    model, _ = load_model("embedded/smollm2-135m-instruct", quantization="none", for_training=True)
    model = add_lora(model, TrainConfig(model_name="embedded/smollm2-135m-instruct", dataset_path="x"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen_dtypes = {p.dtype for p in model.parameters() if not p.requires_grad}
    for p in trainable:  # what trl.SFTTrainer.__init__ does for a quantized model
        p.data = p.data.to(torch.bfloat16)
    # bf16 runs keep TRL's cast
    assert keep_master_weights_fp32(model, fp16=False) == 0 and trainable[0].dtype == torch.bfloat16
    assert keep_master_weights_fp32(model, fp16=True) == len(trainable) > 100
    assert {p.dtype for p in trainable} == {torch.float32}
    assert {p.dtype for p in model.parameters() if not p.requires_grad} == frozen_dtypes  # the base is untouched


def test_liger_module_patches_run_on_cuda_tensors_only_and_never_nest():
    """Liger replaces functions of transformers' modeling module process-wide; the kit routes CPU
    tensors back to the original, and a second training run (a sweep) replaces the dispatcher
    instead of wrapping it again."""
    import types

    def rope(q, k):
        return "plain"

    class Norm:
        pass

    modeling = types.ModuleType("fake_modeling")
    modeling.apply_rotary_pos_emb, modeling.LlamaRMSNorm = rope, Norm
    for _ in range(3):  # three runs in one process
        before = dict(vars(modeling))
        modeling.apply_rotary_pos_emb = lambda q, k: "liger"
        modeling.LlamaRMSNorm = type("LigerRMSNorm", (), {})
        scope_liger_to_cuda(modeling, before)
        assert modeling.LlamaRMSNorm is Norm  # classes put back
        assert modeling.apply_rotary_pos_emb._kit_plain is rope  # one level, whatever the run
        assert modeling.apply_rotary_pos_emb(torch.zeros(2), torch.zeros(2)) == "plain"
