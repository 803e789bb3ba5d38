"""A training run's folder, and the one manifest that says what the run is and what it did.

Every notebook and module finds, checks and describes a run through :class:`RunDir`::

    outputs/<run name>/                the run folder (Drive on Colab)
        run.json                       the manifest: one JSON object, see below
        adapter/  (model/ for FINETUNE='full')   the trained weights and the tokenizer
        checkpoints/checkpoint-N/      Drive-safe checkpoint copies (helpers.common.checkpoints)
        log_history.jsonl              every log line as it happens (a killed run keeps its curve)
        log_history.json               the finished run's log, the loss before training first
        loss.png, eval/, merged/, gguf/   written by notebooks 04, 05 and 06
        shard-000/ ...                 one run folder per shard when NUM_SHARDS > 1

``run.json`` holds, each under its own key and each written when it becomes known:

    signature    the settings a resume must share (model, mode, LoRA shape, template, data, seed)
    start_eval   the validation loss of the untrained model
    metrics      the finished run: steps, losses, time, tokens/s, memory, data report, config
    shards       the ledger of trained shards (on the parent folder of ``shard-NNN/``)
    sweep        the sweep's fingerprint of the run (notebook 07)

It is replaced atomically on each write. Folders written by earlier versions of the kit (a
``metrics.json``, ``run_signature.json``, ``shards.json``, ``start_eval.json`` and
``sweep_run.json`` each) are read as they are, so runs on Drive from before still resume.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers.common.plots import load_history
from helpers.core.config import ConfigError
from helpers.core.files import cache_dir

MANIFEST_FILE = "run.json"
SECTIONS = ("signature", "start_eval", "metrics", "shards", "sweep")
# files of earlier versions, one per section
LEGACY_FILES = {"signature": "run_signature.json", "start_eval": "start_eval.json", "metrics": "metrics.json",
                "shards": "shards.json", "sweep": "sweep_run.json"}
SIGNATURE_FIELDS = ("model_name", "mode", "finetune", "quantization", "lora_r", "lora_alpha", "target_modules",
                    "train_embeddings", "template", "max_seq_len", "dataset_path", "seed", "num_shards",
                    "replay_share", "replay_path", "packing", "separate_documents")
# fields added to the signature later: a signature written before them ran with these values (no
# replay, one example per row, pretraining blocks as one stream)
SIGNATURE_BEFORE = {"replay_share": 0.0, "replay_path": "", "packing": False, "separate_documents": False}
# fields that shape the data of one mode only (PACKING: SFT rows; SEPARATE_DOCUMENTS: pretraining blocks)
SIGNATURE_MODE = {"packing": "sft", "separate_documents": "pretrain"}
ADAPTER_CONFIG = "adapter_config.json"


def is_adapter(folder: str | os.PathLike | None) -> bool:
    """Whether ``folder`` holds a LoRA adapter (peft's ``adapter_config.json``)."""
    return bool(folder) and (Path(folder) / ADAPTER_CONFIG).is_file()


def adapter_base_name(adapter: str) -> str | None:
    cfg = Path(adapter) / "adapter_config.json"
    if not cfg.exists():
        return None
    return json.loads(cfg.read_text()).get("base_model_name_or_path")


def same_base(adapter_base: str | None, name: str) -> bool:
    """Whether an adapter's recorded base matches ``name`` (embedded names resolve to their folder)."""
    if not adapter_base:
        return True
    cands = {name, str(Path(name).resolve()) if os.path.isdir(name) else name}
    if name.startswith("embedded/"):
        cands.add(str(cache_dir() / name.split("/", 1)[1]))
        cands.add(name.split("/", 1)[1])
    base = adapter_base.rstrip("/")
    return (
        base in cands
        or Path(base).name == Path(name).name
        or any(c.rstrip("/").endswith(Path(base).name) for c in cands)
    )


class RunDir:
    """One training run's folder. ``RunDir.of(path)`` accepts the run folder or its adapter folder."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @classmethod
    def of(cls, path: str | os.PathLike) -> "RunDir":
        """The run a folder belongs to: the folder itself, or its parent for the run's ``adapter/``
        or ``model/`` folder (or any adapter folder whose parent is a run)."""
        path = Path(path)
        if (path / MANIFEST_FILE).exists() or (path / LEGACY_FILES["metrics"]).exists():
            return cls(path)
        if path.name in ("adapter", "model") or is_adapter(path):
            return cls(path.parent)
        return cls(path)

    # -- layout -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE

    @property
    def adapter(self) -> Path:
        """Where the trained weights are: ``adapter/``, or ``model/`` after a full fine-tune."""
        if not (self.path / "adapter").exists() and (self.path / "model").exists():
            return self.path / "model"
        return self.path / "adapter"

    def weights_dir(self, finetune: str) -> Path:
        """Where a run with this ``finetune`` ("lora" or "full") saves its weights."""
        return self.path / ("adapter" if finetune == "lora" else "model")

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def live_log(self) -> Path:
        return self.path / "log_history.jsonl"

    @property
    def train_log(self) -> Path:
        """The run's whole console log, where a sweep worker writes it (``train.log``)."""
        return self.path / "train.log"

    @property
    def history_file(self) -> Path:
        return self.path / "log_history.json"

    @property
    def loss_plot(self) -> Path:
        return self.path / "loss.png"

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"

    @property
    def merged_dir(self) -> Path:
        return self.path / "merged"

    @property
    def gguf_dir(self) -> Path:
        return self.path / "gguf"

    def shard(self, index: int) -> "RunDir":
        return RunDir(self.path / f"shard-{index:03d}")

    def exists(self) -> bool:
        return self.manifest_path.exists() or any((self.path / f).exists() for f in LEGACY_FILES.values())

    # -- the manifest -----------------------------------------------------------------------
    def manifest(self) -> dict[str, Any]:
        """The manifest as one dict (``{}`` for a folder without one); legacy files fill the
        sections a ``run.json`` does not have. A manifest that does not parse is an error naming it."""
        data: dict[str, Any] = {}
        if self.manifest_path.exists():
            try:
                data = json.loads(self.manifest_path.read_text())
            except ValueError as exc:
                raise ConfigError(f"{self.manifest_path} is damaged ({exc}); move it away to start this run over.") \
                    from None
        for section, fname in LEGACY_FILES.items():
            p = self.path / fname
            if section not in data and p.exists():
                try:
                    data[section] = json.loads(p.read_text())
                except ValueError:
                    pass  # an unreadable file of an earlier version knows nothing
        return data

    def get(self, section: str, default: Any = None) -> Any:
        return self.manifest().get(section, default)

    def update(self, section: str, value: Any) -> None:
        """Set one section of the manifest (written to a temporary file, then renamed over it)."""
        if section not in SECTIONS:
            raise KeyError(f"{section!r} is not a section of {MANIFEST_FILE} ({', '.join(SECTIONS)})")
        data = self.manifest()
        data[section] = value
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / f".{MANIFEST_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
        os.replace(tmp, self.manifest_path)

    # -- what the run knows -----------------------------------------------------------------
    @property
    def metrics(self) -> dict[str, Any]:
        """The finished run's metrics (``{}`` before the run finished)."""
        m = self.get("metrics") or {}
        return m if isinstance(m, dict) else {}

    @property
    def config(self) -> dict[str, Any]:
        """The TrainConfig the run finished with (``{}`` when unknown)."""
        return self.metrics.get("config") or {}

    @property
    def base_model(self) -> str | None:
        """The base model the run trained: its metrics, else what the adapter records."""
        return self.metrics.get("model_name") or (adapter_base_name(str(self.adapter)) if is_adapter(self.adapter)
                                                  else None)

    @property
    def quantization(self) -> str | None:
        return self.metrics.get("quantization")

    @property
    def dataset_path(self) -> str | None:
        return self.config.get("dataset_path") or None

    def history(self) -> list[dict]:
        """The run's log lines: the finished log, else the live one of a run still going or killed."""
        for p in (self.history_file, self.live_log):
            if p.exists():
                return load_history(p)
        return []

    def finish(self, metrics: dict, history: list[dict]) -> None:
        """Record a finished run (rank 0 only under DDP)."""
        self.update("metrics", metrics)
        self.history_file.write_text(json.dumps(history, indent=1) + "\n")

    def append_log(self, row: dict) -> None:
        with open(self.live_log, "a") as fh:
            fh.write(json.dumps(row) + "\n")

    def describe(self) -> str:
        """One line for a notebook: which run, trained on what, how far, and how it ended."""
        m = self.metrics
        if not m:
            return f"run {self.name} ({self.path}): not finished (no metrics in {MANIFEST_FILE})"
        facts = [f"{m['steps']} step{'s' if m.get('steps') != 1 else ''}" if m.get("steps") is not None else None,
                 f"base {m['model_name']}" if m.get("model_name") else None,
                 m.get("quantization"),
                 (f"eval loss {m['first_eval_loss']:.3f} -> {m['eval_loss']:.3f}"
                  if m.get("first_eval_loss") is not None and m.get("eval_loss") is not None
                  else (f"eval loss {m['eval_loss']:.3f}" if m.get("eval_loss") is not None else None))]
        return f"run {self.name} ({self.path}): " + ", ".join(f for f in facts if f)

    # -- resume guards ----------------------------------------------------------------------
    def check_signature(self, cfg, resuming: bool) -> None:
        """Refuse to resume a run folder written for another model or config; then record this one's."""
        mine = {k: getattr(cfg, k) for k in SIGNATURE_FIELDS}
        theirs = self.get("signature")
        if theirs and resuming:
            theirs = {**SIGNATURE_BEFORE, **theirs}
            diff = {k: (theirs.get(k), mine[k]) for k in SIGNATURE_FIELDS if k in theirs and theirs.get(k) != mine[k]
                    and SIGNATURE_MODE.get(k, cfg.mode) == cfg.mode}
            if diff:
                lines = "; ".join(f"{k}: folder has {a!r}, this run {b!r}" for k, (a, b) in diff.items())
                raise ConfigError(f"{self.path} holds checkpoints of another run ({lines}). Use another OUTPUT_DIR, "
                                  "or RESUME='never' to start over there (its checkpoints are then replaced).")
        self.update("signature", mine)

    # -- shards ------------------------------------------------------------------------------
    def shards_done(self) -> dict[str, dict]:
        """``{shard index: what it finished with}`` of the shards trained so far."""
        return dict((self.get("shards") or {}).get("done") or {})

    def has_shards(self) -> bool:
        return bool(self.get("shards"))

    def next_shard(self, num_shards: int, shard_index: int = -1) -> int | None:
        """The shard to train now: ``shard_index`` (refused when already trained), else the first
        untrained one; None when all are trained."""
        done = self.shards_done()
        if shard_index >= 0:
            if str(shard_index) in done:
                raise ConfigError(f"Shard {shard_index} of {num_shards} was already trained "
                                  f"({done[str(shard_index)]['finished']}); {MANIFEST_FILE} in {self.path} records "
                                  "it. Set SHARD_INDEX=-1 to take the next untrained one.")
            return shard_index
        return next((i for i in range(num_shards) if str(i) not in done), None)

    def record_shard(self, index: int, info: dict) -> None:
        done = self.shards_done()
        done[str(index)] = info
        self.update("shards", {"done": done})


@dataclass
class AdapterCheck:
    """What :func:`check_adapter` found: the base model to load, the run, the adapter's config."""
    model_name: str
    run: RunDir
    adapter_config: dict = field(default_factory=dict)


def check_adapter(adapter_dir: str | os.PathLike | None, model_name: str = "", error: type[Exception] = ValueError,
                  need_base: bool = True) -> AdapterCheck:
    """Refuse a folder that holds no adapter, or an adapter trained on another base than
    ``model_name``; with ``model_name`` "" the base the run trained (its manifest, else what the
    adapter records). ``error``: the exception class the caller's users expect (EvalError, ...)."""
    path = Path(adapter_dir) if adapter_dir else None
    if path is None or not is_adapter(path):
        raise error(f"No LoRA adapter in {str(path) if path else '(no folder given)'!r}: it holds no "
                    f"{ADAPTER_CONFIG}, so it is not a LoRA adapter folder. Run notebook 04 (fine-tune) first, "
                    "which writes it, or set ADAPTER_DIR to an adapter folder.")
    run = RunDir.of(path)
    recorded = adapter_base_name(str(path))
    trained_on = run.metrics.get("model_name") or recorded
    adapter_config = json.loads((path / ADAPTER_CONFIG).read_text())
    if not model_name:
        if not trained_on and need_base:
            raise error(f"The adapter in {path} does not record its base model; set MODEL_NAME.")
        return AdapterCheck(trained_on or "", run, adapter_config)
    if not same_base(recorded, model_name) or (run.metrics.get("model_name")
                                               and not same_base(run.metrics["model_name"], model_name)):
        raise error(f"The adapter in {path} was trained on {trained_on!r}, not on {model_name!r}: its weights only "
                    f"fit that base model. Set MODEL_NAME={trained_on!r} (or leave it empty).")
    return AdapterCheck(model_name, run, adapter_config)
