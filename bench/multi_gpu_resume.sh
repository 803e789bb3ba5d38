#!/usr/bin/env bash
# A checkpoint saved with 2 GPUs resumes on 1, and one saved on 1 resumes on 2 (DDP, QLoRA of the
# embedded model on the bundled conversations). Run on a machine with 2 GPUs after gpu_setup.sh.
set -euo pipefail
OUTD=${1:-/tmp/out/mgpu}
mkdir -p "$OUTD"
mk() {  # name max_steps
  python3 - "$OUTD/$1.json" "$2" "$OUTD/$3" <<'PY'
import json, sys
json.dump({"model_name": "embedded/smollm2-135m-instruct", "quantization": "4bit",
           "dataset_path": "helpers/resources/chitchat/train.jsonl", "eval_fraction": 0.0, "output_dir": sys.argv[3],
           "max_seq_len": 512, "per_device_batch_size": 8, "gradient_accumulation_steps": 1,
           "max_steps": int(sys.argv[2]), "save_steps": 10, "logging_steps": 5, "report_to": "none"},
          open(sys.argv[1], "w"))
PY
}
mk a2 20 run_2to1; mk b1 30 run_2to1; mk c1 20 run_1to2; mk d2 30 run_1to2
torchrun --nproc_per_node 2 -m helpers.train.loop "$OUTD/a2.json" 2>&1 | grep -E "Done|Memory plan|Resuming" | head -3
python3 -m helpers.train.loop "$OUTD/b1.json" 2>&1 | grep -E "Done|Resuming" | head -3
python3 -m helpers.train.loop "$OUTD/c1.json" 2>&1 | grep -E "Done|Resuming" | head -3
torchrun --nproc_per_node 2 -m helpers.train.loop "$OUTD/d2.json" 2>&1 | grep -E "Done|Resuming" | head -3
for r in run_2to1 run_1to2; do
  python3 -c "import json,sys; m=json.load(open('$OUTD/$r/run.json'))['metrics']; print('$r', 'steps', m['steps'], 'world', m['world_size'], 'resumed_from', m['resumed_from'], 'train_loss', m['train_loss'])"
done
