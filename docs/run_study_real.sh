#!/usr/bin/env bash
# Reproduces the real-photograph study of docs/experiments.md: the reference study's recipes
# (baseline; corruption-trained with severities 1, 1-2, 1-3, 1-4; PGD adversarial training,
# 0.5 clean + 0.5 adversarial, PGD-5 at eps 2.5/255) on real fundus photographs, for an
# ImageNet-pretrained EfficientNet-Lite0 (the headline) and a ResNet-18 trained from scratch (the
# contrast). Only `rbf train` and `rbf bench` are used: every model is trained on the
# subject-grouped training split of DATA and benchmarked on the validation split of the same
# split (`rbf bench --split val` with the same seed and fraction), with the benchmark's defaults
# (the 4 fundus corruptions at severities 1-4; PGD-10 at 0.5, 1, 2, 2.5, 4, 8 /255), then the
# integrated-gradients panels of the baseline and the adversarial model on the same validation
# photographs of grade 0 and grade 4.
#
#   bash docs/run_study_real.sh --preset cpu   # 224 px, 5 epochs (the run in docs/experiments.md)
#   bash docs/run_study_real.sh --preset gpu   # 512 px, 20 epochs, as the reference trained
#   ARCHS=efficientnet_lite0 RECIPES="baseline adversarial" bash docs/run_study_real.sh --preset cpu
# (PRESET=cpu|gpu in the environment does the same as --preset.)
#
# Variables (each overrides the preset): DATA (default ../shared/data/fundus-real), OUT (default
# docs/results/study-real-$PRESET), CKPT (checkpoints, default $OUT/checkpoints, not committed),
# SIZE, EPOCHS, BATCH, ARCHS, RECIPES, SEED, WORKERS, RBF (the rbf command), PYTHON (the
# interpreter that has robustbench_fundus, to pick the saliency photographs).
# The script can be stopped and started again: a model whose training finished (its checkpoint
# and train_<model>.json are there) is not trained again, and `rbf bench` resumes from its store.
set -euo pipefail
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) PRESET=${2:?--preset needs cpu or gpu}; shift 2 ;;
    --preset=*) PRESET=${1#--preset=}; shift ;;
    *) echo "run_study_real.sh: unknown argument '$1' (use --preset cpu|gpu)" >&2; exit 2 ;;
  esac
done
PRESET=${PRESET:-cpu}
case "$PRESET" in
  cpu) d_SIZE=224; d_EPOCHS=5;  d_BATCH=32 ;;
  gpu) d_SIZE=512; d_EPOCHS=20; d_BATCH=32 ;;
  *) echo "run_study_real.sh: PRESET must be cpu or gpu, got '$PRESET'" >&2; exit 2 ;;
esac
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${DATA:-$HERE/../../shared/data/fundus-real}
OUT=${OUT:-$HERE/results/study-real-$PRESET}
CKPT=${CKPT:-$OUT/checkpoints}
SIZE=${SIZE:-$d_SIZE}
EPOCHS=${EPOCHS:-$d_EPOCHS}
BATCH=${BATCH:-$d_BATCH}
SEED=${SEED:-0}
WORKERS=${WORKERS:-0}
RBF=${RBF:-rbf}
ARCHS=${ARCHS:-efficientnet_lite0 resnet18}
RECIPES=${RECIPES:-baseline adversarial corruption_1-4 corruption_1 corruption_1-2 corruption_1-3}
if [ ! -d "$DATA" ]; then
  echo "run_study_real.sh: DATA=$DATA: no such folder (set DATA to a folder of graded photographs)" >&2
  exit 2
fi
mkdir -p "$OUT" "$CKPT"
echo "preset $PRESET: SIZE=$SIZE EPOCHS=$EPOCHS BATCH=$BATCH SEED=$SEED ARCHS='$ARCHS'" \
     "RECIPES='$RECIPES' started $(date -u +%FT%TZ) at $(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo '?')" \
    | tee -a "$OUT/timings.txt" >&2

# The order puts the headline comparison first (baseline, adversarial, corruption 1-4 of each
# architecture), then the other severity ranges.
runs=()
for recipe in $RECIPES; do
  case "$recipe" in baseline|adversarial|corruption_1-4) for arch in $ARCHS; do runs+=("$arch:$recipe"); done ;; esac
done
for recipe in $RECIPES; do
  case "$recipe" in baseline|adversarial|corruption_1-4) ;; *) for arch in $ARCHS; do runs+=("$arch:$recipe"); done ;; esac
done
for run in "${runs[@]}"; do
  arch=${run%%:*}; recipe=${run#*:}
  name="${arch}_${recipe}"
  pre=()
  [ "$arch" = efficientnet_lite0 ] && pre=(--pretrained imagenet)
  args=(--recipe "${recipe%%_*}")
  sal=()
  case "$recipe" in
    baseline) sal=(--saliency 32) ;;
    adversarial) args+=(--eps 2.5/255 --steps 5 --adv-weight 0.5); sal=(--saliency 32) ;;
    corruption_*) args+=(--severities "${recipe#corruption_}") ;;
    *) echo "run_study_real.sh: unknown recipe '$recipe'" >&2; exit 2 ;;
  esac
  # a finished training writes its JSON last; a checkpoint without it is a killed run
  if [ ! -s "$OUT/train_$name.json" ] || [ ! -f "$CKPT/$name.safetensors" ]; then
    echo "== train $name" >&2
    t0=$SECONDS
    $RBF train --arch "$arch" "${pre[@]}" --data "$DATA" --size "$SIZE" --epochs "$EPOCHS" \
        --batch-size "$BATCH" --seed "$SEED" --workers "$WORKERS" "${args[@]}" \
        --out "$CKPT/$name.safetensors" --json --log-every 10 \
        > "$OUT/train_$name.json" 2> "$OUT/train_$name.log"
    echo "train $name: $((SECONDS - t0)) s wall" | tee -a "$OUT/timings.txt" >&2
  fi
  echo "== bench $name" >&2
  t0=$SECONDS
  bench=(--model "$CKPT/$name.safetensors" --data "$DATA" --split val --split-seed "$SEED"
         --size "$SIZE" --name "$name" --store "$OUT/results.sqlite" --workers "$WORKERS"
         --referral-flip "${sal[@]}")
  COLUMNS=100 $RBF bench "${bench[@]}" --no-progress --log "$OUT/bench_$name.log" > "$OUT/bench_$name.txt"
  # the second call only reads the store (every condition is there) and prints the report
  $RBF bench "${bench[@]}" --quiet --json > "$OUT/report_$name.json"
  echo "bench $name: $((SECONDS - t0)) s wall" | tee -a "$OUT/timings.txt" >&2
done

# Integrated-gradients panels: baseline vs adversarial, one validation photograph of grade 0 and
# one of grade 4 (the first of each grade in the validation split), with their scores.
for arch in $ARCHS; do
  b="$CKPT/${arch}_baseline.safetensors"; a="$CKPT/${arch}_adversarial.safetensors"
  [ -f "$b" ] && [ -f "$a" ] || continue
  for grade in 0 4; do
    img=$(${PYTHON:-python} - "$DATA" "$SEED" "$grade" <<'PY'
import sys
from robustbench_fundus.data import read_records, split_records
_, val = split_records(read_records(sys.argv[1]).records, val_fraction=0.3, seed=int(sys.argv[2]))
print(next((str(r.path) for r in val if r.label == int(sys.argv[3])), ""))
PY
)
    [ -n "$img" ] || continue
    echo "== saliency $arch grade $grade ($img)" >&2
    $RBF saliency --model "$b" --compare "$a" --image "$img" --size "$SIZE" --target "$grade" --baseline grey \
        --out "$OUT/saliency_${arch}_grade$grade.png" --json > "$OUT/saliency_${arch}_grade$grade.json"
  done
done
$RBF leaderboard --store "$OUT/results.sqlite" --format md --out "$OUT/leaderboard.md"
$RBF leaderboard --store "$OUT/results.sqlite" --format json --no-plots > "$OUT/leaderboard.json"
echo "finished $(date -u +%FT%TZ)" | tee -a "$OUT/timings.txt" >&2
