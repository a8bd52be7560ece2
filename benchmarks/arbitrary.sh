#!/usr/bin/env bash
# The measurements of docs/styles.md for models/any-style.pth, with the offline loss network on the CPU:
#   unseen     styles it never saw: the pictures of UNSEEN_DIR (read at run time, never committed, never trained
#              on), frozen into a conditional model outside the repository, measured by benchmarks/style_metrics.py;
#   dedicated  the same pictures: its style loss against a dedicated model trained on each picture with its own
#              steps, crops, size, batch and learning rate (made in DEDICATED_DIR, outside git, when missing;
#              about 15 minutes each for 3000 steps on 2 quiet cores), and against each picture added to it by
#              --add-style in ADD_STEPS steps (where the gap lies), by benchmarks/unseen_style_loss.py;
#   scaling    the same comparison after SCALING_STEPS (1000) steps, the arbitrary and the dedicated models trained
#              with that many into data/ when missing: how the ratio moves with training steps; and once more with
#              dedicated models trained with the arbitrary model's --lr-schedule cosine (what the schedule alone
#              is worth to a dedicated model);
#   heldout    the comparison of scaling on pictures of the generator of its training set drawn with another seed
#              (make_style_set.py --seed 1, in data/): styles never seen, of the kind it saw; set beside the
#              paintings' figures, how much of the gap is the difference between generated and painted styles;
#   seeds      scaling's and heldout's comparisons of the 1000-step model trained with each other seed of SEEDS (its
#              training run's --seed; the dedicated models stay as they are): the spread one seed gives;
#   batch      scaling's comparison of the 1000-step model trained with --batch-size BATCH (8) instead of 2, with
#              seed 0 and each of SEEDS (the dedicated models as they are, at 2): what more photos and style
#              pictures a step are worth to the predictor;
#   bound      the dedicated and scaling comparisons with each picture added by --add-style for BOUND_STEPS (900)
#              steps instead: an upper bound on how low these convolutions get with each picture's own scales and
#              shifts, so on the best a predictor could give them;
#   add-style  the bundled stained-glass.png added to any-style.pth, and the dedicated models/stained-glass.pth
#              retrained here with its own recipe (900 steps), one after the other, so that steps and time compare
#              within one run: the added style's losses after ADD_STEPS steps (20% of the 900), and the steps it
#              takes to reach the dedicated model's final style and total losses (the means of its last 100
#              steps); it runs the 900 steps too: at its constant rate its first ADD_STEPS steps are those of an
#              ADD_STEPS-step run;
#   render     a single image, the setup and each frame with --style-image against a conditional model at 1280x720
#              (benchmarks/arbitrary_render.py).
# Records: benchmarks/any-style-unseen.json, any-style-vs-dedicated.json, add-style-stained-glass.{json,csv,log},
# dedicated-stained-glass.{json,csv}, any-style-render.json, any-style-vs-dedicated-<SCALING_STEPS>{,-cosine}.json,
# any-style-vs-dedicated-heldout-<SCALING_STEPS>.json, any-style-vs-dedicated{,-heldout}-<SCALING_STEPS>-seed<S>.json,
# any-style-vs-dedicated{,-<SCALING_STEPS>}-bound-<BOUND_STEPS>.json,
# any-style-vs-dedicated-<SCALING_STEPS>-batch<BATCH>{,-seed<S>}.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
UNSEEN_DIR="${UNSEEN_DIR:-../shared/data/style-images}"
DATAPATH="${DATAPATH:-data/demo-crops}"
DEDICATED_DIR="${DEDICATED_DIR:-data/dedicated-unseen}"
ADD_STEPS="${ADD_STEPS:-180}"
BOUND_STEPS="${BOUND_STEPS:-900}"
# --add-style trains 3,200 numbers: a far higher rate than a whole network's pays (benchmarks/add-style-
# learning-rates.log: the style loss after 180 steps at 2e-3, 1e-2, 4e-2 and 1e-1; chosen on this measurement)
ADD_LEARNING_RATE="${ADD_LEARNING_RATE:-1e-1}"
SCALING_STEPS="${SCALING_STEPS:-1000}"
BATCH="${BATCH:-8}"  # the batch part's --batch-size for the arbitrary model (the dedicated ones keep the recipe's 2)
SEEDS="${SEEDS:-1}"  # the seeds part's other seeds (the models of the other parts have seed 0)
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ONLY="${ONLY:-unseen dedicated scaling bound heldout seeds batch add-style render}"
if [ ! -d "$DATAPATH" ]; then "$PYTHON" tools/make_demo_data.py --output "$DATAPATH"; fi
# the settings of models/any-style.pth and of the bundled dedicated models (tools/make_demo_models.sh)
recipe=(--datapath "$DATAPATH" --image-size 128 --batch-size 2 --learning-rate 2e-3 --epochs 100000 --seed 0
        --vgg-weights offline --device cpu --log-interval 25)

if [[ " $ONLY " == *" unseen "* ]]; then
    unseen=$(ls "$UNSEEN_DIR"/*.jpg | paste -sd, -)
    "$PYTHON" render_image.py --content-path images/content-images/coffee.jpg --model models/any-style.pth \
        --output-path "$WORK/coffee.png" --max-size 64 --style-image "$unseen" --save-conditional "$WORK/unseen.pth"
    "$PYTHON" benchmarks/style_metrics.py --models "$WORK/unseen.pth" --max-size 256 --json benchmarks/any-style-unseen.json
fi
# recipe_of MODEL.json: "STEPS SCHEDULE" of a trained model (a model from before --lr-schedule had a constant rate)
recipe_of() {
    "$PYTHON" -c "import json, sys; d = json.load(open(sys.argv[1])); print(d.get('steps'), d.get('lr_schedule', 'constant'))" \
        "$1" 2>/dev/null || echo none
}
# dedicated MODEL STEPS DIR JSON SCHEDULE PICTURE...: a dedicated model on each PICTURE with STEPS steps and
# --lr-schedule SCHEDULE in DIR (kept, made when missing), each picture added to MODEL by --add-style in ADD_STEPS
# steps (in $WORK, one folder per MODEL and ADD_STEPS), and the comparison: its table to stdout, its figures to JSON.
dedicated() {
    local model=$1 steps=$2 dir=$3 json=$4 schedule=$5 added="$WORK/added-${1//\//-}-$ADD_STEPS" picture name
    shift 5
    mkdir -p "$dir" "$added"
    for picture in "$@"; do
        name=$(basename "${picture%.*}")
        if [ "$(recipe_of "$dir/$name.json")" != "$steps $schedule" ] || [ ! -f "$dir/$name.pth" ]; then
            "$PYTHON" train.py --stylepath "$picture" --style-size 256 "${recipe[@]}" --max-steps "$steps" \
                --lr-schedule "$schedule" \
                --log-dir "$dir/logs" --checkpoint-dir "$WORK/checkpoints-$name" \
                --save-dir "$dir" --savename "$name.pth"
        fi
        if [ ! -f "$added/$name.pth" ]; then  # made by an earlier call with the same MODEL and ADD_STEPS
            "$PYTHON" train.py --add-style "$picture" --init-from "$model" --style-size 256 "${recipe[@]}" \
                --learning-rate "$ADD_LEARNING_RATE" --max-steps "$ADD_STEPS" --log-dir "$added/logs" \
                --checkpoint-dir "$added/checkpoints-$name" --save-dir "$added" --savename "$name.pth"
        fi
    done
    "$PYTHON" benchmarks/unseen_style_loss.py --arbitrary "$model" --dedicated "$dir" --added "$added" \
        --styles "$(IFS=,; printf '%s' "$*")" --datapath "$DATAPATH" --json "$json"
}
if [[ " $ONLY " == *" dedicated "* ]]; then
    read -r steps _ <<< "$(recipe_of models/any-style.json)"
    dedicated models/any-style.pth "$steps" "$DEDICATED_DIR" benchmarks/any-style-vs-dedicated.json constant \
        "$UNSEEN_DIR"/*.jpg
fi
# small_model [SEED [BATCH]]: models/any-style.pth's recipe (tools/make_demo_models.sh, on the CPU: cosine
# schedule) with SCALING_STEPS steps, --seed SEED (default 0) and --batch-size BATCH (default the recipe's 2),
# trained into data/ when missing; sets $small to its folder
small_model() {
    local seed=${1:-0} batch=${2:-2}
    small="data/any-style-$SCALING_STEPS"
    if [ "$seed" != 0 ]; then small="$small-seed$seed"; fi
    if [ "$batch" != 2 ]; then small="$small-batch$batch"; fi
    if [ "$(recipe_of "$small/any-style.json")" != "$SCALING_STEPS cosine" ] || [ ! -f "$small/any-style.pth" ]; then
        if [ ! -d data/style-set ]; then
            "$PYTHON" tools/make_style_set.py --output data/style-set --count 300 --size 192  # as make_demo_models.sh
        fi
        "$PYTHON" train.py "${recipe[@]}" --precision auto --save-fp16 --arbitrary --style-dir data/style-set \
            --lr-schedule cosine --max-steps "$SCALING_STEPS" --seed "$seed" --batch-size "$batch" \
            --log-dir "$small/logs" \
            --checkpoint-dir "$WORK/checkpoints-small-$seed-$batch" \
            --save-dir "$small" --savename any-style.pth
    fi
}
if [[ " $ONLY " == *" scaling "* ]]; then
    small_model
    dedicated "$small/any-style.pth" "$SCALING_STEPS" "$DEDICATED_DIR-$SCALING_STEPS" \
        "benchmarks/any-style-vs-dedicated-$SCALING_STEPS.json" constant "$UNSEEN_DIR"/*.jpg
    # the arbitrary model's cosine schedule given to the dedicated models too: what the schedule alone is worth
    dedicated "$small/any-style.pth" "$SCALING_STEPS" "$DEDICATED_DIR-$SCALING_STEPS-cosine" \
        "benchmarks/any-style-vs-dedicated-$SCALING_STEPS-cosine.json" cosine "$UNSEEN_DIR"/*.jpg
fi
if [[ " $ONLY " == *" bound "* ]]; then
    read -r steps _ <<< "$(recipe_of models/any-style.json)"
    ADD_STEPS=$BOUND_STEPS dedicated models/any-style.pth "$steps" "$DEDICATED_DIR" \
        "benchmarks/any-style-vs-dedicated-bound-$BOUND_STEPS.json" constant "$UNSEEN_DIR"/*.jpg
    small_model
    ADD_STEPS=$BOUND_STEPS dedicated "$small/any-style.pth" "$SCALING_STEPS" "$DEDICATED_DIR-$SCALING_STEPS" \
        "benchmarks/any-style-vs-dedicated-$SCALING_STEPS-bound-$BOUND_STEPS.json" constant "$UNSEEN_DIR"/*.jpg
fi
heldout=data/style-set-heldout
heldout_set() {
    if [ ! -d "$heldout" ]; then "$PYTHON" tools/make_style_set.py --output "$heldout" --count 5 --size 192 --seed 1; fi
}
if [[ " $ONLY " == *" heldout "* ]]; then
    small_model
    heldout_set
    dedicated "$small/any-style.pth" "$SCALING_STEPS" data/dedicated-heldout-"$SCALING_STEPS" \
        "benchmarks/any-style-vs-dedicated-heldout-$SCALING_STEPS.json" constant "$heldout"/*.png
fi
if [[ " $ONLY " == *" seeds "* ]]; then
    heldout_set
    for seed in $SEEDS; do
        small_model "$seed"
        dedicated "$small/any-style.pth" "$SCALING_STEPS" "$DEDICATED_DIR-$SCALING_STEPS" \
            "benchmarks/any-style-vs-dedicated-$SCALING_STEPS-seed$seed.json" constant "$UNSEEN_DIR"/*.jpg
        dedicated "$small/any-style.pth" "$SCALING_STEPS" data/dedicated-heldout-"$SCALING_STEPS" \
            "benchmarks/any-style-vs-dedicated-heldout-$SCALING_STEPS-seed$seed.json" constant "$heldout"/*.png
    done
fi
if [[ " $ONLY " == *" batch "* ]]; then
    for seed in 0 $SEEDS; do
        small_model "$seed" "$BATCH"
        suffix="batch$BATCH"
        if [ "$seed" != 0 ]; then suffix="$suffix-seed$seed"; fi
        dedicated "$small/any-style.pth" "$SCALING_STEPS" "$DEDICATED_DIR-$SCALING_STEPS" \
            "benchmarks/any-style-vs-dedicated-$SCALING_STEPS-$suffix.json" constant "$UNSEEN_DIR"/*.jpg
    done
fi
if [[ " $ONLY " == *" add-style "* ]]; then
    if (( ADD_STEPS % 20 != 0 || ADD_STEPS > 900 )); then  # a row of the 900-step log below, read at the end
        echo "error: ADD_STEPS must be a multiple of 20, at most 900, for the add-style part, not $ADD_STEPS" >&2
        exit 2
    fi
    # logged every 20 steps, so that the rows compared are means of 20 steps (180 = 9 x 20, 900 = 45 x 20)
    "$PYTHON" train.py --add-style images/style-images/stained-glass.png --init-from models/any-style.pth \
        --style-size 256 "${recipe[@]}" --learning-rate "$ADD_LEARNING_RATE" --max-steps 900 \
        --log-interval 20 --log-dir "$WORK/logs" --checkpoint-dir "$WORK/checkpoints" --save-dir "$WORK" \
        --savename added.pth
    "$PYTHON" train.py --stylepath images/style-images/stained-glass.png --style-size 256 "${recipe[@]}" \
        --max-steps 900 --log-interval 20 --log-dir "$WORK/logs" --checkpoint-dir "$WORK/checkpoints" \
        --save-dir "$WORK" --savename dedicated.pth
    cp "$WORK/added.json" benchmarks/add-style-stained-glass.json
    cp "$WORK/logs/added.csv" benchmarks/add-style-stained-glass.csv
    cp "$WORK/dedicated.json" benchmarks/dedicated-stained-glass.json
    cp "$WORK/logs/dedicated.csv" benchmarks/dedicated-stained-glass.csv
    "$PYTHON" benchmarks/first_reached.py benchmarks/add-style-stained-glass.csv \
        benchmarks/dedicated-stained-glass.csv --at-step "$ADD_STEPS" --window 5 \
        | tee benchmarks/add-style-stained-glass.log
fi
if [[ " $ONLY " == *" render "* ]]; then
    "$PYTHON" benchmarks/arbitrary_render.py --style-image images/style-images/brush-strokes.jpg --device cpu \
        --frames 3 --rounds 6 --processes 3 --json benchmarks/any-style-render.json
fi
