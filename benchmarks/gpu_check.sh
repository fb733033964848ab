#!/usr/bin/env bash
# The GPU checks of docs/benchmarks.md as ONE prepared script (a lent GPU's time is short; docs/benchmarks.md#gpu):
#   1. translate at 224 px, fp32 and bf16, eager and the fast path, against eager ResNet-9 (bench_translate.py);
#   2. a timed `train --stage all` of the paper's preset (zebra2giraffe) at 224 px on the built-in synthetic
#      data, STEPS steps per stage: images/s per stage (the run's stats.jsonl) and the GPU's peak memory;
#   3. the level-5 stage under torchrun (all visible GPUs, nccl; one gloo process on a CPU).
# Everything lands in OUT (default gpu_check/). Dry run on a CPU (about a minute without the translate part):
#   DEVICE=cpu SIZE=32 STEPS=2 BATCH=2 SKIP_TRANSLATE=1 bash benchmarks/gpu_check.sh /tmp/gpu_check
set -euo pipefail
OUT=${1:-gpu_check}
DEVICE=${DEVICE:-cuda}; SIZE=${SIZE:-224}; STEPS=${STEPS:-50}; BATCH=${BATCH:-64}
LOAD=${LOAD:-$([ "$SIZE" = 224 ] && echo 256 || echo "$SIZE")}  # the preset's 256 at 224 px
# random VGG-19 weights unless told otherwise: the lent machines reach no download, and speed does not depend on them
WEIGHTS=${WEIGHTS:-random}
GPUS=${GPUS:-$(python -c "import torch; print(max(torch.cuda.device_count(), 1))")}
mkdir -p "$OUT"
run() { echo "+ $*" | tee -a "$OUT/commands.txt" >&2; "$@"; }

if command -v nvidia-smi >/dev/null; then  # the GPU's memory in use, every 0.5 s, for the peaks
  nvidia-smi --query-gpu=timestamp,index,memory.used --format=csv,noheader,nounits -lms 500 > "$OUT/gpu_memory.csv" &
  SMI=$!; trap 'kill $SMI 2>/dev/null || true' EXIT
  nvidia-smi -L > "$OUT/gpu.txt"
fi

[ -n "${SKIP_TRANSLATE:-}" ] || run python benchmarks/bench_translate.py --device "$DEVICE" --sizes "$SIZE" --batch "$BATCH" --repeats 10 \
  --precisions fp32 bf16 --optimize none fast 2>&1 | tee "$OUT/translate.txt"

run python -m deepcascade prepare synthetic --out "$OUT/data" --size "$SIZE" --n 200 --n-test 20
run python -m deepcascade config --preset zebra2giraffe --set "data.root=$OUT/data" --set "engine.device=$DEVICE" \
  --set "engine.precision=auto" --set "data.image_size=$SIZE" --set "data.load_size=$LOAD" --set data.workers=2 \
  --set "backbone.weights=$WEIGHTS" > "$OUT/paper.yaml"
steps=(--set "invert.steps=$STEPS" --set "deep.steps=$STEPS" --set "cascade.steps=$STEPS" --set "synth.steps=$STEPS"
       --set "engine.log_every=$STEPS" --set "engine.sample_every=$STEPS" --set "engine.checkpoint_every=$STEPS")
start=$(date +%s)
run python -m deepcascade train "$OUT/paper.yaml" --stage all --run-dir "$OUT/run" "${steps[@]}" 2>&1 | tail -40 \
  | tee "$OUT/train.txt"
echo "train --stage all: $(( $(date +%s) - start )) s" | tee -a "$OUT/train.txt"
python - "$OUT/run/stats.jsonl" <<'PY' | tee -a "$OUT/train.txt"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    print(f"{r['stage']:>16} step {r['step']:>6}  {r['images_per_s']:8.1f} img/s  data-wait {100 * r['data_wait']:.0f}%")
PY

run torchrun --standalone --nproc_per_node "$GPUS" -m deepcascade train "$OUT/paper.yaml" --stage deep \
  --run-dir "$OUT/run-torchrun" "${steps[@]}" 2>&1 | tail -15 | tee "$OUT/torchrun.txt"
if [ -n "${SMI:-}" ]; then
  kill "$SMI" 2>/dev/null || true
  python -c "import sys; print('peak GPU memory used:', max(int(l.split(',')[2]) for l in open(sys.argv[1]) if l.count(',') == 2), 'MiB')" \
    "$OUT/gpu_memory.csv" | tee -a "$OUT/train.txt"
fi
