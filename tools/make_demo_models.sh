#!/usr/bin/env bash
# Retrain every bundled demo model with this suite's own scripts:
#   models/stained-glass.pth, models/brush-strokes.pth   one style each (train.py)
#   models/blend.pth                                     both styles, weights 0.5,0.5 (train.py)
#   models/distilled.pth                                 the two single-style models merged (distillation.py)
#   models/interpolation/blend-0.75.pth, blend-0.25.pth  more weights, for the README's interpolation strip
#   models/conditional.pth                               both styles in one conditional model (train.py --conditional),
#                                                        mixed at render time; the strip from it alone:
#                                                        bash tools/make_figures.sh --interpolation-model models/conditional.pth
# By default this runs offline on the CPU with the UNTRAINED (random) loss network, on crops of the
# bundled photos: that is how the shipped models were made, because ImageNet VGG16 weights and COCO
# cannot be fetched where they were trained. For real models, on a GPU box with internet:
#   VGG_WEIGHTS=imagenet DATAPATH=~/data/coco2017 IMAGE_SIZE=256 STEPS=40000 bash tools/make_demo_models.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DATAPATH="${DATAPATH:-data/demo-crops}"   # made by make_demo_data.py when missing
VGG_WEIGHTS="${VGG_WEIGHTS:-random}"
IMAGE_SIZE="${IMAGE_SIZE:-128}"
STYLE_SIZE="${STYLE_SIZE:-256}"
STEPS="${STEPS:-400}"
DEVICE="${DEVICE:-auto}"
GLASS=images/style-images/stained-glass.png
STROKES=images/style-images/brush-strokes.jpg

source ./setup_env.sh
if [ ! -d "$DATAPATH" ]; then "$PYTHON" tools/make_demo_data.py --output "$DATAPATH"; fi

common=(--datapath "$DATAPATH" --image-size "$IMAGE_SIZE" --max-steps "$STEPS" --epochs 100000 --seed 0
        --vgg-weights "$VGG_WEIGHTS" --device "$DEVICE" --precision fp32 --save-fp16 --log-dir logs/demo
        --checkpoint-dir checkpoints/demo --log-interval 25)
train() { "$PYTHON" train.py --style-size "$STYLE_SIZE" "${common[@]}" "$@"; }

train --stylepath "$GLASS" --save-dir models --savename stained-glass.pth
train --stylepath "$STROKES" --save-dir models --savename brush-strokes.pth
train --stylepath "$GLASS,$STROKES" --style-weights 0.5,0.5 --save-dir models --savename blend.pth
"$PYTHON" distillation.py --teachers models/stained-glass.pth,models/brush-strokes.pth --teacher-weights 0.5,0.5 \
    "${common[@]}" --save-dir models --savename distilled.pth
for weight in 0.75 0.25; do
    train --stylepath "$GLASS,$STROKES" --alpha "$weight" --save-dir models/interpolation --savename "blend-$weight.pth"
done
train --stylepath "$GLASS,$STROKES" --conditional --style-names stained-glass,brush-strokes --save-dir models \
    --savename conditional.pth
