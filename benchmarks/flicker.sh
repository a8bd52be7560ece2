#!/usr/bin/env bash
# The measurements behind docs/rendering.md's "Video without flicker" table (records: benchmarks/cpu-2core-flicker.*).
#   bash benchmarks/flicker.sh                   # only make the model of the training comparison
#   bash benchmarks/flicker.sh CLIP [CLIP ...]   # then measure on the clips (benchmarks/README.md names ours)
# Training comparison: the bundled models/brush-strokes.pth is distilled into a copy of itself with
# --temporal-weight (and --pixel-weight, so that it stays close to the original in pixels as well). Without
# --temporal-weight that run would change nothing (the student starts equal to its teacher: zero loss, zero
# gradients), so the original is the model "without". The offline loss network (as the bundled model was
# trained), the bundled photos' crops at 128 pixels, seed 0, into data/flicker-models/ (git-ignored); an
# existing model is reused.
# Settings overridable from the environment: STEPS, WEIGHT, PIXEL_WEIGHT, FRAMES, WIDTH, REPEATS, JSON (the
# records' name without .json), RESUME=1 (keep the clips the records already hold, measure only the others).
set -euo pipefail
cd "$(dirname "$0")/.."
source ./tools/setup_env.sh

MODELS=data/flicker-models
ORIGINAL=models/brush-strokes.pth
if [ ! -d data/demo-crops ]; then "$PYTHON" tools/make_demo_data.py --output data/demo-crops; fi
if [ ! -f "$MODELS/steadier.pth" ]; then
    "$PYTHON" distillation.py --datapath data/demo-crops --teachers "$ORIGINAL" --init-from "$ORIGINAL" \
        --temporal-weight "${WEIGHT:-1}" --pixel-weight "${PIXEL_WEIGHT:-1}" --image-size 128 \
        --max-steps "${STEPS:-150}" --epochs 100000 --seed 0 --vgg-weights offline --log-interval 10 \
        --log-dir "$MODELS/logs" --checkpoint-dir "$MODELS/checkpoints" --save-dir "$MODELS" --savename steadier.pth
fi

if [ $# -gt 0 ]; then
    resume=()
    if [ "${RESUME:-0}" = 1 ]; then resume=(--resume); fi
    common=(--frames "${FRAMES:-48}" --width "${WIDTH:-480}" --cross-check farneback)
    "$PYTHON" benchmarks/flicker.py "$@" "${common[@]}" --models "$ORIGINAL,stand-in" --repeats "${REPEATS:-2}" \
        --json "${JSON:-flicker}.json" ${resume[@]+"${resume[@]}"}
    "$PYTHON" benchmarks/flicker.py "$@" "${common[@]}" --models "" --trained "$ORIGINAL,$MODELS/steadier.pth" \
        --json "${JSON:-flicker}-trained.json" ${resume[@]+"${resume[@]}"}
fi
