#!/usr/bin/env bash
# Reproduces docs/experiments.md: a small version of the reference study (DESIGN.md section 1).
# Trains three models with `rbf train` on synthetic fundus images -- baseline, corruption-trained
# (severities 1-4) and PGD adversarially trained (0.5 clean + 0.5 adversarial, 5 steps,
# eps 2.5/255) -- then benchmarks each with `rbf bench` on the benchmark's held-out synthetic set
# and writes the leaderboard. Everything lands in $OUT (default exp-out/).
#
#   bash docs/run_experiments.sh                 # the settings of docs/experiments.md
#   N=64 EPOCHS=1 BENCH_N=16 SIZE=64 bash docs/run_experiments.sh   # a smoke run (minutes on CPU)
set -euo pipefail
OUT=${OUT:-exp-out}
ARCH=${ARCH:-tiny_cnn}
SIZE=${SIZE:-128}
N=${N:-4000}
EPOCHS=${EPOCHS:-15}
BATCH=${BATCH:-64}
BENCH_N=${BENCH_N:-500}
WORKERS=${WORKERS:-0}
RBF=${RBF:-rbf}
mkdir -p "$OUT"
common=(--arch "$ARCH" --size "$SIZE" --data "synthetic:$N" --epochs "$EPOCHS"
        --batch-size "$BATCH" --seed 0 --workers "$WORKERS")
for recipe in baseline corruption adversarial; do
  extra=()
  [ "$recipe" = corruption ] && extra=(--severities 1-4)
  [ "$recipe" = adversarial ] && extra=(--eps 2.5/255 --steps 5 --adv-weight 0.5)
  echo "== train $recipe" >&2
  t0=$SECONDS
  $RBF train "${common[@]}" --recipe "$recipe" "${extra[@]}" \
      --out "$OUT/$recipe.safetensors" --json > "$OUT/train_$recipe.json" 2> >(tee "$OUT/train_$recipe.log" >&2)
  echo "train $recipe: $((SECONDS - t0)) s wall" | tee -a "$OUT/timings.txt" >&2
done
for recipe in baseline corruption adversarial; do
  echo "== bench $recipe" >&2
  t0=$SECONDS
  $RBF bench --model "$OUT/$recipe.safetensors" --data "synthetic:$BENCH_N" --name "$recipe" \
      --store "$OUT/results.sqlite" --workers "$WORKERS" --no-progress > "$OUT/bench_$recipe.txt"
  echo "bench $recipe: $((SECONDS - t0)) s wall" | tee -a "$OUT/timings.txt" >&2
  cat "$OUT/bench_$recipe.txt"
done
$RBF leaderboard --store "$OUT/results.sqlite" --format md --out "$OUT/leaderboard.md"
$RBF leaderboard --store "$OUT/results.sqlite" --format json --no-plots > "$OUT/leaderboard.json"
echo "done: $OUT" >&2
