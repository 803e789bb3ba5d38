# %% [markdown]
# # 06 · Chat with the tuned model, and take it elsewhere
#
# Talk to the model notebook 04 tuned: a chat in the notebook that streams tokens, keeps a
# multi-turn history through the model's chat template, offers system-prompt presets (a plain
# assistant, a choose-your-own-adventure *storymaker*, and *documents*, which answers from your
# own documents: the most relevant chunks of notebook 02 go with each message, and each reply
# shows its sources), sampling controls, Stop and Clear
# buttons, and a switch between the base and the tuned model. Then take the model elsewhere:
# merge the adapter into the base weights (safetensors: 16-bit on a GPU, fp32 on a CPU), write a
# GGUF file for llama.cpp and Ollama (checked by loading it back), and optionally push to the
# Hugging Face Hub. The same chat also runs as a Gradio web app, launched below in this notebook,
# on your own machine (`app/app.py`) or on a Hugging Face Space.
#
# [![Open-In-Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/llama-kit/llama-notebook-kit/blob/main/notebooks/06_chat.ipynb)

# %% cellView="form"
# @title Setup: on Colab, fetch the kit and install it with its pins (Colab's torch is kept)
import os, sys
if "google.colab" in sys.modules:
    KIT = os.path.join(os.environ.get("LLAMA_KIT_COLAB_ROOT", "/content"), "llama-notebook-kit")
    if not os.path.isdir(KIT):
        REPO = os.environ.get("LLAMA_KIT_REPO", "https://github.com/llama-kit/llama-notebook-kit")
        get_ipython().system(f"git clone -q --depth 1 {REPO} {KIT}")
    get_ipython().system(f"{sys.executable} {KIT}/scripts/install.py --colab")
    os.chdir(f"{KIT}/notebooks")
from helpers.common.workspace import setup_notebook
ws = setup_notebook("06 chat and export")

# %% tags=["parameters"]
# @markdown `MODEL_NAME`: base model; "" = the one notebook 04 trained (from its run's manifest), else the default.
# @markdown Llama-3.2-1B-Instruct (a GPU's) is gated: accept its licence on huggingface.co and add an HF_TOKEN secret
# @markdown (checked first)
MODEL_NAME = ""  # @param {type:"string"}
# @markdown `RUN_NAME`: notebook 04's run folder under the outputs folder: its adapter; merged/ and gguf/ go there
RUN_NAME = "sft"  # @param {type:"string"}
# @markdown `ADAPTER_DIR`: LoRA adapter; "" = notebook 04's, in outputs/RUN_NAME/adapter
ADAPTER_DIR = ""  # @param {type:"string"}
# @markdown `QUANTIZATION`: how the base is loaded to chat: "4bit", "16bit", "none" (fp32); "auto" = 4bit on GPU, fp32
# @markdown on CPU
QUANTIZATION = "auto"  # @param ["auto", "4bit", "16bit", "none"]
# @markdown `PRESET`: system prompt preset: "assistant", "storymaker" or "documents" (answers from your documents: the
# @markdown top RETRIEVAL_K chunks of notebook 02 with each message)
PRESET = "assistant"  # @param ["assistant", "storymaker", "documents"]
# @markdown `RETRIEVAL_K`: "documents" preset: passages of your documents (BM25) given with each message
RETRIEVAL_K = 3  # @param {type:"integer"}
# @markdown `CHUNKS_PATH`: "documents" preset: the chunks searched; "" = notebook 02's chunks.jsonl (the adapter's
# @markdown dataset)
CHUNKS_PATH = ""  # @param {type:"string"}
# @markdown `TEMPERATURE`: sampling temperature (0 = greedy)
TEMPERATURE = 0.7  # @param {type:"number"}
# @markdown `TOP_P`: nucleus sampling mass
TOP_P = 0.9  # @param {type:"number"}
# @markdown `MAX_NEW_TOKENS`: longest reply, in tokens (always bounded)
MAX_NEW_TOKENS = 256  # @param {type:"integer"}
# @markdown `CONTEXT_TOKENS`: context window in tokens (0 = the model's own); the oldest turns are dropped to fit
CONTEXT_TOKENS = 0  # @param {type:"integer"}
# @markdown `SHARE_LINK`: the app (below) also at a public gradio.live link, e.g. for a phone. Anyone who has the link
# @markdown can use your GPU: set APP_USER and APP_PASSWORD secrets to require a login. The app shows inline without it
# @markdown (on Colab too)
SHARE_LINK = False  # @param {type:"boolean"}
# @markdown `MERGE`: merge the adapter into the base: safetensors in outputs/RUN_NAME/merged (16-bit on GPU, fp32 on
# @markdown CPU)
MERGE = True  # @param {type:"boolean"}
# @markdown `MERGE_MODE`: "full" (full-precision base) or "nf4-dequantized" (the NF4 weights QLoRA saw; CUDA only)
MERGE_MODE = "full"  # @param ["full", "nf4-dequantized"]
# @markdown `GGUF`: also write a GGUF file for llama.cpp / Ollama from the merged model (outputs/RUN_NAME/gguf/)
GGUF = True  # @param {type:"boolean"}
# @markdown `GGUF_TYPE`: "f16", "f32" or "q8_0"
GGUF_TYPE = "f16"  # @param ["f16", "f32", "q8_0"]
# @markdown `PUSH_TO_HUB`: upload to the Hugging Face Hub (needs an HF_TOKEN secret); off by default
PUSH_TO_HUB = False  # @param {type:"boolean"}
# @markdown `HUB_REPO_ID`: "your-name/model-name" on the Hub
HUB_REPO_ID = ""  # @param {type:"string"}
# @markdown `PUSH_WHAT`: "adapter" (small: a few MB) or "merged" (the whole model)
PUSH_WHAT = "adapter"  # @param ["adapter", "merged"]
# @markdown `HUB_PRIVATE`: create the Hub repository as private
HUB_PRIVATE = True  # @param {type:"boolean"}

# %% [markdown]
# ## Load the base model with the tuned adapter
# One model in memory: the base/tuned switch turns the adapter off and on.

# %%
from helpers.chat import (ChatConfig, ChatSession, ExportConfig, RunDir, chat_model_name, chunks_for_chat,
                          load_chat_index, load_chat_model)
chat_cfg = ChatConfig.from_params(globals())
run = ws.run(chat_cfg.run_name)  # notebook 04's run: its adapter, and the merged model and GGUF beside it
if not chat_cfg.adapter_dir:
    chat_cfg = chat_cfg.replace(adapter_dir=str(run.adapter))
export_cfg = ExportConfig.from_params(globals())
print(chat_cfg.describe())
print(export_cfg.describe())
model_name = chat_model_name(chat_cfg.model_name, chat_cfg.adapter_dir)  # a clear message if notebook 04 has not run
print(RunDir.of(chat_cfg.adapter_dir).describe())
model, tok = load_chat_model(model_name, chat_cfg.adapter_dir, chat_cfg.quantization)
index = load_chat_index(chunks_for_chat(chat_cfg.chunks_path, chat_cfg.adapter_dir, ws.dataset.chunks))
session = ChatSession(model, tok, preset=chat_cfg.preset, temperature=chat_cfg.temperature, top_p=chat_cfg.top_p,
                      max_new_tokens=chat_cfg.max_new_tokens, context_tokens=chat_cfg.context_tokens, index=index,
                      retrieval_k=chat_cfg.retrieval_k)

# %% [markdown]
# ## Chat
# Type below and press **Enter** (or **Send**; Shift+Enter adds a new line); **Stop** ends a reply
# mid-stream, **Clear** starts over. Each reply is labelled with the model that wrote it: switch
# *Model* to compare the tuned model with its base. Switch the preset to *storymaker* for an
# adventure that ends every scene with three choices, or to *documents* (offered when notebook
# 02's chunks are there) to answer from your documents: the top `RETRIEVAL_K` passages (BM25) go
# with each message and the sources used show under each reply.

# %%
from helpers.chat import ChatWidget
ui = ChatWidget(session).display()

# %% [markdown]
# ### A scripted conversation (only under `SMOKE=1`)
# Under `SMOKE=1` (the headless check) code drives the chat above: the same messages to the tuned
# model and to its base, each reply labelled, and where their replies part; a question about your
# documents; Stop pressed mid-reply. Otherwise this cell does nothing, so *Run all* leaves your chat alone.

# %%
from helpers.chat.demo import scripted_chat
if ws.smoke:
    scripted_chat(ui, index)
else:
    print("Not under SMOKE=1: the scripted conversation is skipped; the chat above is yours.")

# %% [markdown]
# ## The same chat as a web app
# The Gradio app of `app/app.py` on this model, shown below (on Colab too, through Colab's own
# link): a bigger page, with the same labels for each reply. `SHARE_LINK = True` adds a public
# link to open it elsewhere; **anyone who has that link can use your GPU**, so add a login first: two
# Colab secrets (the key icon on the left) or environment variables, `APP_USER` and `APP_PASSWORD`,
# never typed here. **Stop the app** (the button under it, or `app.close()`) frees the port; the
# chat above and the app share the model, so use one at a time. On your own machine:
# `ADAPTER=outputs/sft/adapter python app/app.py`, then open http://127.0.0.1:7860.

# %%
from helpers.chat import app_login, launch_app
app = launch_app(model, tok, model_name, chat_cfg.adapter_dir, share=chat_cfg.share_link, auth=app_login())
if ws.smoke:  # the headless check: the app answered on its port; stop it and go on
    app.close()

# %% [markdown]
# ## Merge the adapter into the base weights
# The merged model is saved in the base's unquantized dtype: 16-bit (bf16/fp16) on a GPU, fp32 on
# a CPU (the message below says which). An adapter trained with QLoRA learned against the 4-bit
# (NF4) rounded base. Merging it into the full-precision base changes the model slightly;
# `MERGE_MODE="nf4-dequantized"` (GPU) merges into the dequantized NF4 weights instead. We never merge
# into a quantized base and re-round it.

# %%
from helpers.chat import check_gguf, export_gguf, merge_adapter, push_to_hub
merged_dir = merge_adapter(model_name, chat_cfg.adapter_dir, run.merged_dir, mode=export_cfg.merge_mode) \
    if export_cfg.merge else None

# %% [markdown]
# ## GGUF for llama.cpp and Ollama
# Written by our own converter; loaded back with transformers and compared with the merged model.

# %%
if export_cfg.gguf:
    gguf_path = export_gguf(merged_dir, run.gguf_dir, export_cfg.gguf_type, name=run.name)
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
