#!/usr/bin/env bash
# Stylise a photo (or every photo in a folder) with a trained model. Every variable below can be
# overridden from the environment; relative paths are relative to this folder, e.g.
#   MODEL=models/mosaic.pth CONTENT="$HOME/My Photos/beach.jpg" OUTPUT="$HOME/beach styled.jpg" bash render_image.sh
#   CONTENT=images/content-images OUTPUT=output/all-photos bash render_image.sh     # a whole folder
#   STYLE_IMAGE=path/to/picture.jpg bash render_image.sh                            # any picture's style (models/any-style.pth)
#   STYLE_MIX=0.3,0.7 bash render_image.sh                                         # another mix of the two styles
#   STYLE=brush-strokes bash render_image.sh                                       # one style of the conditional model
# Extra arguments go to render_image.py, e.g. --preserve-color --strength 0.8 --max-size 1024.
set -euo pipefail
cd "$(dirname "$0")"

STYLE_IMAGE="${STYLE_IMAGE:-}"                              # any style picture(s), a,b: an arbitrary-style model
if [ -n "$STYLE_IMAGE" ]; then MODEL="${MODEL:-models/any-style.pth}"; fi  # the default model then
MODEL="${MODEL:-models/all-styles.pth}"                     # from train.py, the PyTorch example or the original repo
CONTENT="${CONTENT:-images/content-images/coffee.jpg}"      # an image or a folder of images
OUTPUT="${OUTPUT:-output/coffee-styled.jpg}"                # an image (extension = format) or a folder
DEVICE="${DEVICE:-auto}"                                    # auto, cpu, cuda or mps
PRECISION="${PRECISION:-auto}"                              # auto, fp32, bf16 or fp16
STYLE="${STYLE:-}"                                          # conditional models: a style's name or number
STYLE_MIX="${STYLE_MIX:-}"                                  # conditional models: one weight per style, e.g. 0.3,0.7

# The default model, models/all-styles.pth, carries both bundled styles: unless a style, a mix or another
# model is chosen (here or among the extra arguments), it renders their even mix (tools/even_mix.sh).
source ./tools/even_mix.sh
if even_mix "$MODEL" "${STYLE}${STYLE_MIX}" "$@"; then STYLE_MIX=0.5,0.5; fi

if [ ! -f "$MODEL" ]; then
    echo "error: no model at $MODEL: train one with run_training.sh, or set MODEL=path/to/model.pth" >&2
    exit 1
fi
extra=()
if [ -n "$STYLE_IMAGE" ]; then extra+=(--style-image "$STYLE_IMAGE"); fi
if [ -n "$STYLE" ]; then extra+=(--style "$STYLE"); fi
if [ -n "$STYLE_MIX" ]; then extra+=(--style-mix "$STYLE_MIX"); fi
source ./tools/setup_env.sh
exec "$PYTHON" render_image.py --content-path "$CONTENT" --model-path "$MODEL" --output-path "$OUTPUT" \
    --device "$DEVICE" --precision "$PRECISION" ${extra[@]+"${extra[@]}"} "$@"
