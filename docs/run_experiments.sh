#!/usr/bin/env bash
# Reproduces docs/experiments.md: a small version of the reference study (see docs/experiments.md).
# Trains three models with `rbf train` on synthetic fundus images -- baseline, corruption-trained
# (severities 1-4) and PGD adversarially trained (0.5 clean + 0.5 adversarial, 5 steps,
# eps 2.5/255) -- then benchmarks each with `rbf bench` (its defaults: the 4 fundus corruptions at
# severities 1-4, PGD-10 at 0.5,1,2,2.5,4,8 /255) on the benchmark's held-out synthetic set and
# writes the leaderboard. Everything lands in $OUT (default exp-out/). Each model is benchmarked
# right after its training (the results do not depend on the order).
#
#   bash docs/run_experiments.sh                 # GPU-scale settings (the H100 run of docs/experiments.md):
#                                                #   N=4000 EPOCHS=15 BATCH=64 BENCH_N=500 SIZE=128
#   PRESET=cpu bash docs/run_experiments.sh      # CPU-scale settings (the main tables of docs/experiments.md,
#                                                #   about 30 min on a shared 2-core CPU):
#                                                #   N=1600 EPOCHS=8 BATCH=32 BENCH_N=300 SIZE=128
#   N=64 EPOCHS=1 BENCH_N=16 SIZE=64 bash docs/run_experiments.sh   # a smoke run (minutes on CPU)
#
# Any variable set explicitly overrides the preset.
set -euo pipefail
PRESET=${PRESET:-gpu}
case "$PRESET" in
  gpu) d_N=4000; d_EPOCHS=15; d_BATCH=64; d_BENCH_N=500 ;;
  cpu) d_N=1600; d_EPOCHS=8;  d_BATCH=32; d_BENCH_N=300 ;;
  *) echo "run_experiments.sh: PRESET must be gpu or cpu, got '$PRESET'" >&2; exit 2 ;;
esac
OUT=${OUT:-exp-out}
ARCH=${ARCH:-tiny_cnn}
SIZE=${SIZE:-128}
N=${N:-$d_N}
EPOCHS=${EPOCHS:-$d_EPOCHS}
BATCH=${BATCH:-$d_BATCH}
BENCH_N=${BENCH_N:-$d_BENCH_N}
WORKERS=${WORKERS:-0}
RBF=${RBF:-rbf}
RECIPES=${RECIPES:-baseline corruption adversarial}
mkdir -p "$OUT"
echo "preset $PRESET: N=$N EPOCHS=$EPOCHS BATCH=$BATCH BENCH_N=$BENCH_N SIZE=$SIZE ARCH=$ARCH" \
    | tee -a "$OUT/timings.txt" >&2
common=(--arch "$ARCH" --size "$SIZE" --data "synthetic:$N" --epochs "$EPOCHS"
        --batch-size "$BATCH" --seed 0 --workers "$WORKERS")
for recipe in $RECIPES; do
  extra=()
  [ "$recipe" = corruption ] && extra=(--severities 1-4)
  [ "$recipe" = adversarial ] && extra=(--eps 2.5/255 --steps 5 --adv-weight 0.5)
  echo "== train $recipe" >&2
  t0=$SECONDS
  $RBF train "${common[@]}" --recipe "$recipe" "${extra[@]}" \
      --out "$OUT/$recipe.safetensors" --json > "$OUT/train_$recipe.json" 2> >(tee "$OUT/train_$recipe.log" >&2)
  echo "train $recipe: $((SECONDS - t0)) s wall" | tee -a "$OUT/timings.txt" >&2
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
