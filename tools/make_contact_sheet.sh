#!/usr/bin/env bash
# The contact sheet of docs/your-own-style.md (images/figures/contact-sheet.jpg): sweep.py over the style weight
# on crops of the bundled photos (tools/make_demo_data.py), rendered on the bundled photos. Offline, on the CPU,
# with the OFFLINE loss network (colour statistics and random filters, not VGG16): it shows what the setting does
# to the balance of photo and style, not what an artistic model looks like. Minutes; sets up .venv on first use.
# The runs, sweep.csv and the sheet stay in $OUT (rerun to continue an interrupted sweep).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-data/sweeps/contact-sheet}"
STEPS="${STEPS:-150}"
source ./tools/setup_env.sh
if [ ! -d data/demo-crops ]; then "$PYTHON" tools/make_demo_data.py --output data/demo-crops; fi
"$PYTHON" sweep.py --grid "style-weight=1e9,1e10,1e11" --max-steps "$STEPS" --out-dir "$OUT" \
    --datapath data/demo-crops --stylepath images/style-images/brush-strokes.jpg --style-size 256 \
    --vgg-weights offline --image-size 64 --batch-size 2 --learning-rate 2e-3 --epochs 100 --seed 0 --preview-interval 0 \
    --device cpu
cp "$OUT/contact_sheet.jpg" images/figures/contact-sheet.jpg
echo "wrote images/figures/contact-sheet.jpg"
