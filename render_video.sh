#!/usr/bin/env bash
# Stylise a video, keeping its frame rate and its sound. Every variable below can be overridden from
# the environment; relative paths are relative to this folder, e.g.
#   MODEL=models/mosaic.pth INPUT="$HOME/Videos/my clip.mov" SAVE_NAME="$HOME/Videos/my clip styled.mp4" bash render_video.sh
#   STYLE_IMAGE=path/to/picture.jpg bash render_video.sh                            # any picture's style (models/any-style.pth)
#   STYLE_SCHEDULE="0:1,0;4:0,1" bash render_video.sh                               # morph between the two styles
# Extra arguments go to render_video.py, e.g. --resize 0.5 --no-audio --preserve-color --crf 23.
set -euo pipefail
cd "$(dirname "$0")"

STYLE_IMAGE="${STYLE_IMAGE:-}"                              # any style picture(s), a,b: an arbitrary-style model
if [ -n "$STYLE_IMAGE" ]; then MODEL="${MODEL:-models/any-style.pth}"; fi  # the default model then
MODEL="${MODEL:-models/all-styles.pth}"                     # from train.py, the PyTorch example or the original repo
INPUT="${INPUT:-images/demo-clip.mp4}"                      # any video OpenCV reads
SAVE_NAME="${SAVE_NAME:-output/demo-clip-styled.mp4}"       # .mp4, .m4v, .mov, .mkv or .avi
RESIZE="${RESIZE:-1.0}"                                     # output scale: 0.5 halves width and height
BATCH_SIZE="${BATCH_SIZE:-}"                                # frames stylised at once (empty: 4 on CUDA, 1 on the CPU)
DEVICE="${DEVICE:-auto}"                                    # auto, cpu, cuda or mps
PRECISION="${PRECISION:-auto}"                              # auto, fp32, bf16 or fp16
STYLE="${STYLE:-}"                                          # conditional models: a style's name or number
STYLE_MIX="${STYLE_MIX:-}"                                  # conditional models: one weight per style, e.g. 0.3,0.7
STYLE_SCHEDULE="${STYLE_SCHEDULE:-}"                        # conditional models: mixes over time, "T:W1,W2;T:W1,W2"

# The default model, models/all-styles.pth, carries both bundled styles: unless a style, a mix or another
# model is chosen (here or among the extra arguments), it renders their even mix (tools/even_mix.sh).
source ./tools/even_mix.sh
if even_mix "$MODEL" "${STYLE}${STYLE_MIX}${STYLE_SCHEDULE}" "$@"; then STYLE_MIX=0.5,0.5; fi

if [ ! -f "$MODEL" ]; then
    echo "error: no model at $MODEL: train one with run_training.sh, or set MODEL=path/to/model.pth" >&2
    exit 1
fi
extra=()
if [ -n "$BATCH_SIZE" ]; then extra+=(--batch-size "$BATCH_SIZE"); fi
if [ -n "$STYLE_IMAGE" ]; then extra+=(--style-image "$STYLE_IMAGE"); fi
if [ -n "$STYLE" ]; then extra+=(--style "$STYLE"); fi
if [ -n "$STYLE_MIX" ]; then extra+=(--style-mix "$STYLE_MIX"); fi
if [ -n "$STYLE_SCHEDULE" ]; then extra+=(--style-schedule "$STYLE_SCHEDULE"); fi
source ./tools/setup_env.sh
exec "$PYTHON" render_video.py --input "$INPUT" --model "$MODEL" --save-name "$SAVE_NAME" --resize "$RESIZE" \
    --device "$DEVICE" --precision "$PRECISION" ${extra[@]+"${extra[@]}"} "$@"
