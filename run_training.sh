#!/usr/bin/env bash
# Train a two-style network on COCO 2017 (as the original repo's script did), or distil trained
# models into one. Every variable below can be overridden from the environment, e.g.
#   DATAPATH=~/data/coco STYLES="images/style-images/mosaic.png,images/style-images/strokes.png" bash run_training.sh
#   METHOD=distill TEACHERS="models/a.pth,models/b.pth" bash run_training.sh
#   NPROC=4 BATCH_SIZE=4 bash run_training.sh     # 4 GPUs of this machine with torchrun: global batch 16
#   CONDITIONAL=1 bash run_training.sh            # one model that keeps the styles apart, mixed when rendering
# On several machines, run torchrun yourself on each of them, e.g. for 2 machines of 8 GPUs:
#   torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 train.py --datapath ...
# Extra arguments are passed on to the Python script (e.g. --max-steps 3 --vgg-weights random).
set -euo pipefail
cd "$(dirname "$0")"

METHOD="${METHOD:-loss}"                      # loss (train.py) or distill (distillation.py)
DATAPATH="${DATAPATH:-data/coco2017}"         # COCO root (train2017/ ...) or any folder of photos
STYLES="${STYLES:-images/style-images/stained-glass.png,images/style-images/brush-strokes.jpg}"
STYLE_WEIGHTS="${STYLE_WEIGHTS:-0.5,0.5}"     # one weight per style, normalised to sum 1
TEACHERS="${TEACHERS:-models/stained-glass.pth,models/brush-strokes.pth}"
TEACHER_WEIGHTS="${TEACHER_WEIGHTS:-0.5,0.5}"
SAVE_DIR="${SAVE_DIR:-models}"
SAVENAME="${SAVENAME:-}"                      # empty: named after the styles or teachers
EPOCHS="${EPOCHS:-2}"
BATCH_SIZE="${BATCH_SIZE:-4}"
IMAGE_SIZE="${IMAGE_SIZE:-256}"
VGG_WEIGHTS="${VGG_WEIGHTS:-imagenet}"        # imagenet, random (smoke runs) or a local .pth
DEVICE="${DEVICE:-auto}"
NPROC="${NPROC:-1}"                           # processes (GPUs) on this machine; BATCH_SIZE is per process
CONDITIONAL="${CONDITIONAL:-0}"               # 1: --conditional, the styles (teachers) chosen or mixed when rendering

source ./tools/setup_env.sh

common=(--datapath "$DATAPATH" --save-dir "$SAVE_DIR" --epochs "$EPOCHS" --batch-size "$BATCH_SIZE"
        --image-size "$IMAGE_SIZE" --vgg-weights "$VGG_WEIGHTS" --device "$DEVICE")
if [ -n "$SAVENAME" ]; then common+=(--savename "$SAVENAME"); fi
launch=("$PYTHON")
if [ "$NPROC" -gt 1 ]; then launch=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC"); fi

style_weights=(--style-weights "$STYLE_WEIGHTS")
teacher_weights=(--teacher-weights "$TEACHER_WEIGHTS")
if [ "$CONDITIONAL" = 1 ]; then   # no blend weights: the mix is chosen when rendering
    common+=(--conditional); style_weights=(); teacher_weights=()
fi

case "$METHOD" in
    loss)    exec "${launch[@]}" train.py --stylepath "$STYLES" ${style_weights[@]+"${style_weights[@]}"} \
                  "${common[@]}" "$@" ;;
    distill) exec "${launch[@]}" distillation.py --teachers "$TEACHERS" ${teacher_weights[@]+"${teacher_weights[@]}"} \
                  "${common[@]}" "$@" ;;
    *)       echo "error: METHOD must be loss or distill, not '$METHOD'" >&2; exit 2 ;;
esac
