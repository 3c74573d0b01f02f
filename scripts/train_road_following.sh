#!/usr/bin/env bash
# Reproduces the shipped road-following model (models/road_following.pt and .onnx) from nothing:
# simulator data on track seeds 0-899, training, export, and a closed-loop check on held-out seeds 900-909.
# Made for one CUDA GPU and many cores; every step is resumable (re-run the script and finished steps are skipped).
#   usage: scripts/train_road_following.sh [RUN_DIR]      (default runs/road_following)
#   env:   PLAIN_FRAMES RANDOM_FRAMES EPOCHS BATCH WORKERS EPISODE_FRAMES  (defaults below), PYTHON (default python3)
set -euo pipefail
RUN=${1:-runs/road_following}
PYTHON=${PYTHON:-python3}
WORKERS=${WORKERS:-$(nproc)}
PLAIN_FRAMES=${PLAIN_FRAMES:-40000}
RANDOM_FRAMES=${RANDOM_FRAMES:-110000}
EPOCHS=${EPOCHS:-12}
BATCH=${BATCH:-256}
EPISODE_FRAMES=${EPISODE_FRAMES:-150}   # shorter episodes visit more tracks
cli() { "$PYTHON" -m jetracer_trt.cli.main "$@"; }
have() { [ -d "$1" ] && cli data check "$1" --json 2>/dev/null | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["samples"])' || echo 0; }

collect_up_to() {  # DIR FRAMES [--randomize]
  local dir=$1 want=$2; shift 2
  local n; n=$(have "$dir")
  if [ "$n" -lt "$want" ]; then
    cli sim collect --out "$dir" --frames $((want - n)) --seeds 0-899 --episode-frames "$EPISODE_FRAMES" --workers "$WORKERS" "$@"
  fi
}
collect_up_to "$RUN/data-plain" "$PLAIN_FRAMES"
collect_up_to "$RUN/data-random" "$RANDOM_FRAMES" --randomize

resume=()
[ -f "$RUN/train/last.pt" ] && resume=(--resume)
cli train --data "$RUN/data-plain" "$RUN/data-random" --out "$RUN/train" --epochs "$EPOCHS" --batch-size "$BATCH" \
    --workers "$WORKERS" "${resume[@]}"
cli export --checkpoint "$RUN/train/best.pt" --out "$RUN/road_following.onnx" --force

# closed-loop check on held-out training-range seeds (never on seeds >= 1000 while developing)
mkdir -p "$RUN/eval"
for seed in $(seq 900 909); do
  for look in plain randomized; do
    flag=(); [ "$look" = randomized ] && flag=(--randomize)
    cli sim eval --model "$RUN/road_following.onnx" --threads 1 --laps "${EVAL_LAPS:-3}" --track-seed "$seed" \
        "${flag[@]}" --json > "$RUN/eval/$seed-$look.json" 2>/dev/null &
    while [ "$(jobs -rp | wc -l)" -ge "$WORKERS" ]; do wait -n; done
  done
done
wait
"$PYTHON" - "$RUN/eval" <<'PY'
import json, pathlib, sys
rows = sorted(pathlib.Path(sys.argv[1]).glob("*.json"))
for path in rows:
    m = json.loads(path.read_text())
    print(f"{path.stem:16s} laps {m['laps_completed']} off-track {m['off_track_events']} "
          f"cte mean {m['mean_abs_cte_m']:.3f} max {m['max_abs_cte_m']:.3f} speed {m['mean_speed_mps']:.2f}")
PY
