#!/usr/bin/env bash
# Retrain every bundled demo model with this suite's own scripts:
#   models/all-styles.pth                                both styles in one conditional model (train.py --conditional),
#                                                        chosen or mixed at render time; render_image.sh's default,
#                                                        the gallery's and the interpolation strip's model
#   models/stained-glass.pth, models/brush-strokes.pth   one style each (train.py)
#   models/blend.pth                                     both styles, fixed weights 0.5,0.5 (train.py)
#   models/distilled.pth                                 the two single-style models merged (distillation.py)
#   models/any-style.pth                                 any picture as the style (train.py --arbitrary) over a
#                                                        seeded set of generated style pictures (make_style_set.py)
# By default this runs offline on the CPU with the OFFLINE loss network (style_transfer/loss_network.py: colour statistics
# and random multi-scale filters, not VGG16), on crops of the bundled photos, because ImageNet VGG16 weights
# and COCO cannot be fetched where the demo is made; see models/README.md. For real models, on a GPU box with
# internet:
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
ARBITRARY_STEPS="${ARBITRARY_STEPS:-3000}"  # any-style.pth: as many as fit; its .json records the steps it had
STYLE_SET="${STYLE_SET:-data/style-set}"    # made by make_style_set.py when missing                     # the conditional model gets twice as many: one style per image
DEVICE="${DEVICE:-auto}"
PRECISION="${PRECISION:-auto}"            # bf16 on CPUs with native bfloat16 (1.6x faster here), else fp32
ONLY="${ONLY:-all}"                       # or some of: all-styles stained-glass brush-strokes blend distilled any-style
GLASS=images/style-images/stained-glass.png
STROKES=images/style-images/brush-strokes.jpg

source ./tools/setup_env.sh
if [ ! -d "$DATAPATH" ]; then "$PYTHON" tools/make_demo_data.py --output "$DATAPATH"; fi

common=(--datapath "$DATAPATH" --image-size "$IMAGE_SIZE" --batch-size "$BATCH_SIZE" --learning-rate "$LEARNING_RATE"
        --epochs 100000 --seed 0 --vgg-weights "$VGG_WEIGHTS" --device "$DEVICE" --precision "$PRECISION" --save-fp16
        --log-dir logs/demo --checkpoint-dir checkpoints/demo --log-interval 25 --checkpoint-interval 100)
train() { "$PYTHON" train.py --style-size "$STYLE_SIZE" "${common[@]}" "$@"; }
wanted() { [ "$ONLY" = all ] || [[ " $ONLY " == *" $1 "* ]]; }

if wanted all-styles; then
    train --max-steps $((2 * STEPS)) --stylepath "$GLASS,$STROKES" --conditional --style-names stained-glass,brush-strokes \
        --save-dir models --savename all-styles.pth
fi
if wanted stained-glass; then train --max-steps "$STEPS" --stylepath "$GLASS" --save-dir models --savename stained-glass.pth; fi
if wanted brush-strokes; then train --max-steps "$STEPS" --stylepath "$STROKES" --save-dir models --savename brush-strokes.pth; fi
if wanted blend; then
    train --max-steps "$STEPS" --stylepath "$GLASS,$STROKES" --style-weights 0.5,0.5 --save-dir models --savename blend.pth
fi
if wanted distilled; then
    "$PYTHON" distillation.py --teachers models/stained-glass.pth,models/brush-strokes.pth --teacher-weights 0.5,0.5 \
        --max-steps "$STEPS" "${common[@]}" --save-dir models --savename distilled.pth
fi
if wanted any-style; then
    if [ ! -d "$STYLE_SET" ]; then "$PYTHON" tools/make_style_set.py --output "$STYLE_SET" --count 300 --size 192; fi
    "$PYTHON" train.py "${common[@]}" --arbitrary --style-dir "$STYLE_SET" --max-steps "$ARBITRARY_STEPS" --lr-schedule cosine \
        --save-dir models --savename any-style.pth
fi
