#!/usr/bin/env bash
# Everything this suite owes a GPU, in one run on a bare GPU machine, in at most 8 minutes of wall time:
#   1. the CUDA tier (pytest -m cuda), its full output in $OUT/gpu-cuda-tier.log;
#   2. the GPU benchmarks (benchmarks/benchmark.py: rendering at 720p and 1080p with --compile, the video
#      pipeline, training at batch 4, 256x256), their JSON records and logs in $OUT.
# Each part has its own time limit, so that one that hangs cannot eat the others' time; what a part wrote before
# its limit stays in $OUT. Missing Python packages (imageio-ffmpeg, ...) travel as wheels in .whl/ (see the
# device tool's notes) and are installed into /tmp/site first.
#
#   OUT=/tmp/gpu-out bash benchmarks/gpu_check.sh            # on the GPU machine
#   QUICK=1 OUT=/tmp/gpu-out bash benchmarks/gpu_check.sh    # the script's logic on a CPU-only machine, in minutes:
#                                                            # the tier is skipped there, the benchmarks run --quick
# Then copy $OUT/* to benchmarks/ (gpu-cuda-tier.log by that name) and update docs/performance.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:?set OUT to the folder for the logs and records}"
PYTHON="${PYTHON:-python3}"
QUICK="${QUICK:-0}"
mkdir -p "$OUT"
start=$SECONDS
log() { echo "[gpu_check +$((SECONDS - start))s] $*" | tee -a "$OUT/gpu-check.log"; }

if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1

# part name, time limit in seconds, command: on the GPU the limits add up to 445 s (465 s if every part had to be
# killed), leaving time for the machine's start-up work above and the copying of $OUT.
part() {
    local name=$1 limit=$2
    shift 2
    log "$name (limit ${limit}s): $*"
    timeout --kill-after=5 "$limit" "$@" >"$OUT/$name.log" 2>&1
    local status=$?
    log "$name: exit $status$([ $status -eq 124 ] && echo ' (time limit)')"
}

{
    nvidia-smi 2>&1 | head -15
    "$PYTHON" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda',
torch.version.cuda, 'device', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
    "$PYTHON" -c "import imageio_ffmpeg; print('ffmpeg', imageio_ffmpeg.get_ffmpeg_exe())" 2>&1
    "$PYTHON" -m pip list 2>/dev/null | grep -iE "^(torch|torchvision|numpy|pillow|opencv|tqdm|imageio|onnx|pytest)"
} >"$OUT/gpu-env.log" 2>&1
log "environment: $(grep -m1 '^python' "$OUT/gpu-env.log")"

if [ "$QUICK" = 1 ]; then  # the same parts at the smallest settings: their command lines and outputs checked
    device=cpu; tier_limit=120; video_limit=90; sizes=256; batches=2; compile=(); train=(--train-size 64 --train-steps 12)
    video=(--clip-seconds 0.5)
else
    device=cuda; tier_limit=230; video_limit=45; sizes=720p,1080p; batches=4,8; compile=(--compile); train=(--train-steps 60); video=()
fi

# 1. The CUDA tier: the whole of it, slow tests (compile, torchrun) included.
part gpu-cuda-tier "$tier_limit" "$PYTHON" -m pytest -m cuda -v -rs -p no:cacheprovider tests/
tail -3 "$OUT/gpu-cuda-tier.log" | tee -a "$OUT/gpu-check.log"

# 2. The benchmarks: rendering (batches 1 to 8, eager and --compile), training at batch 4 (the plain loop, train.py,
#    train.py --compile), the video pipeline; each writes its JSON record when it ends.
part gpu-render 85 "$PYTHON" benchmarks/benchmark.py --device "$device" --parts render --sizes "$sizes" \
    --batches "$batches" ${compile[@]+"${compile[@]}"} --seconds 1 --json "$OUT/gpu-render.json"
part gpu-train 85 "$PYTHON" benchmarks/benchmark.py --device "$device" --parts train ${compile[@]+"${compile[@]}"} ${train[@]+"${train[@]}"} \
    --json "$OUT/gpu-train.json"
part gpu-video "$video_limit" "$PYTHON" benchmarks/benchmark.py --device "$device" --parts video ${video[@]+"${video[@]}"} \
    --json "$OUT/gpu-video.json"
log "done in $((SECONDS - start))s (device: $device)"
