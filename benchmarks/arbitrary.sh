#!/usr/bin/env bash
# The measurements of docs/styles.md for models/any-style.pth, with the offline loss network on the CPU:
#   1. styles it never saw: the pictures of UNSEEN_DIR (read at run time, never committed, never trained on),
#      frozen into a conditional model outside the repository, measured by benchmarks/style_metrics.py;
#   2. --add-style: the bundled stained-glass.png added to any-style.pth in ADD_STEPS steps (20% of the 900 of the
#      dedicated models/stained-glass.pth, same settings), its final losses and time in its provenance;
#   3. rendering with --style-image against a conditional model at 1280x720 (benchmarks/arbitrary_render.py).
# Records: benchmarks/any-style-unseen.json, benchmarks/add-style-stained-glass.json, benchmarks/any-style-render.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
UNSEEN_DIR="${UNSEEN_DIR:-../shared/data/style-images}"
DATAPATH="${DATAPATH:-data/demo-crops}"
ADD_STEPS="${ADD_STEPS:-180}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ONLY="${ONLY:-unseen add-style render}"

if [[ " $ONLY " == *" unseen "* ]]; then
    unseen=$(ls "$UNSEEN_DIR"/*.jpg | paste -sd, -)
    "$PYTHON" render_image.py --content-path images/content-images/coffee.jpg --model models/any-style.pth \
        --output-path "$WORK/coffee.png" --max-size 64 --style-image "$unseen" --save-conditional "$WORK/unseen.pth"
    "$PYTHON" benchmarks/style_metrics.py --models "$WORK/unseen.pth" --max-size 256 --json benchmarks/any-style-unseen.json
fi
if [[ " $ONLY " == *" add-style "* ]]; then
    if [ ! -d "$DATAPATH" ]; then "$PYTHON" tools/make_demo_data.py --output "$DATAPATH"; fi
    "$PYTHON" train.py --add-style images/style-images/stained-glass.png --init-from models/any-style.pth \
        --style-size 256 --datapath "$DATAPATH" --image-size 128 --batch-size 2 --learning-rate 2e-3 \
        --max-steps "$ADD_STEPS" --epochs 100000 --seed 0 --vgg-weights offline --device cpu --log-interval 25 \
        --log-dir "$WORK/logs" --checkpoint-dir "$WORK/checkpoints" --save-dir "$WORK" --savename added.pth
    cp "$WORK/added.json" benchmarks/add-style-stained-glass.json
fi
if [[ " $ONLY " == *" render "* ]]; then
    "$PYTHON" benchmarks/arbitrary_render.py --style-image images/style-images/brush-strokes.jpg --device cpu \
        --json benchmarks/any-style-render.json
fi
