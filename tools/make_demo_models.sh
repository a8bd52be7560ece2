#!/usr/bin/env bash
# Retrain every bundled demo model with this suite's own scripts:
#   models/stained-glass.pth, models/brush-strokes.pth   one style each (train.py)
#   models/blend.pth                                     both styles, weights 0.5,0.5 (train.py)
#   models/distilled.pth                                 the two single-style models merged (distillation.py)
#   models/interpolation/blend-0.75.pth, blend-0.25.pth  more weights, for the README's interpolation strip
# By default this runs offline on the CPU with the OFFLINE loss network (loss_network.py: colour statistics
# and random multi-scale filters, not VGG16), on crops of the bundled photos, because ImageNet VGG16 weights
# and COCO cannot be fetched where the demo is made; see models/README.md for which shipped model was made
# how. For real models, on a GPU box with internet:
#   VGG_WEIGHTS=imagenet DATAPATH=~/data/coco2017 IMAGE_SIZE=256 BATCH_SIZE=4 LEARNING_RATE=1e-3 STEPS=40000 \
#       bash tools/make_demo_models.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DATAPATH="${DATAPATH:-data/demo-crops}"   # made by make_demo_data.py when missing
VGG_WEIGHTS="${VGG_WEIGHTS:-offline}"
IMAGE_SIZE="${IMAGE_SIZE:-128}"
STYLE_SIZE="${STYLE_SIZE:-256}"
BATCH_SIZE="${BATCH_SIZE:-2}"
LEARNING_RATE="${LEARNING_RATE:-2e-3}"
STEPS="${STEPS:-900}"
DEVICE="${DEVICE:-auto}"
PRECISION="${PRECISION:-auto}"            # bf16 on CPUs with native bfloat16 (1.6x faster here), else fp32
ONLY="${ONLY:-all}"                       # or some of: stained-glass brush-strokes blend distilled interpolation
GLASS=images/style-images/stained-glass.png
STROKES=images/style-images/brush-strokes.jpg

source ./setup_env.sh
if [ ! -d "$DATAPATH" ]; then "$PYTHON" tools/make_demo_data.py --output "$DATAPATH"; fi

common=(--datapath "$DATAPATH" --image-size "$IMAGE_SIZE" --batch-size "$BATCH_SIZE" --learning-rate "$LEARNING_RATE"
        --max-steps "$STEPS" --epochs 100000 --seed 0 --vgg-weights "$VGG_WEIGHTS" --device "$DEVICE"
        --precision "$PRECISION" --save-fp16 --log-dir logs/demo --checkpoint-dir checkpoints/demo --log-interval 25
        --checkpoint-interval 100)
train() { "$PYTHON" train.py --style-size "$STYLE_SIZE" "${common[@]}" "$@"; }
wanted() { [ "$ONLY" = all ] || [[ " $ONLY " == *" $1 "* ]]; }

if wanted stained-glass; then train --stylepath "$GLASS" --save-dir models --savename stained-glass.pth; fi
if wanted brush-strokes; then train --stylepath "$STROKES" --save-dir models --savename brush-strokes.pth; fi
if wanted blend; then
    train --stylepath "$GLASS,$STROKES" --style-weights 0.5,0.5 --save-dir models --savename blend.pth
fi
if wanted distilled; then
    "$PYTHON" distillation.py --teachers models/stained-glass.pth,models/brush-strokes.pth --teacher-weights 0.5,0.5 \
        "${common[@]}" --save-dir models --savename distilled.pth
fi
if wanted interpolation; then
    for weight in 0.75 0.25; do
        train --stylepath "$GLASS,$STROKES" --alpha "$weight" --save-dir models/interpolation --savename "blend-$weight.pth"
    done
fi
