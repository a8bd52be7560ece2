"""Where the flicker that --temporal leaves is: a clip's warping error split by what the blender did.

    python benchmarks/flicker_split.py /tmp/footage/vtest.avi --model models/brush-strokes.pth
    python benchmarks/flicker_split.py images/demo-clip.mp4 --render-preset medium

Renders the first --frames frames of CLIP at --width, frame by frame and with render_video.py --temporal's
blending (in memory, no video encoding), and prints for both: the warping error (as evaluate_video.py
measures it: DIS medium on the source, occluded pixels left out), each frame pair's error, and the error
split into the pixels the blender found reliable (reliability > 0.5, blended) and the rest (kept fresh).
--render-preset and --tolerance try other settings of the blender's flow and photometric check than
render_video.py's; the "Video without flicker" section of docs/rendering.md quotes this script's output.
"""

import itertools
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent  # the repository root
sys.path.insert(0, str(ROOT))  # the suite's modules live at the top level

import utils
from style_transfer import model_files, optical_flow, rendering, temporal_blend, video_io, warping_error


def to_frames(video: torch.Tensor) -> np.ndarray:
    return video.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def split_errors(video: np.ndarray, measured: list, blended: list) -> tuple[float, float, float]:
    """Warping error over the reliable pixels, over the others, and the others' share of the visible pixels."""
    sums, counts = np.zeros(2), np.zeros(2)
    for i in range(1, len(video)):
        visible = ~measured[i].occluded
        warped = optical_flow.warp(video[i - 1].astype(np.float32) / 255, measured[i].backward)
        squared = 1000 * ((video[i].astype(np.float32) / 255 - warped) ** 2).mean(axis=-1)
        reliable = blended[i].reliability > 0.5
        for k, part in enumerate((visible & reliable, visible & ~reliable)):
            sums[k] += squared[part].sum()
            counts[k] += part.sum()
    means = sums / np.maximum(counts, 1)
    return float(means[0]), float(means[1]), float(counts[1] / max(counts.sum(), 1))


def main(argv: list[str] | None = None) -> None:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("clip", metavar="CLIP", help="the video to measure on")
    parser.add_argument("--model", default="models/brush-strokes.pth", help="(default: %(default)s)")
    parser.add_argument("--frames", type=utils.positive_int, default=48, help="(default: %(default)s)")
    parser.add_argument("--width", type=utils.positive_int, default=480,
                        help="frames scaled to this width, the height keeping the aspect ratio (default: %(default)s)")
    parser.add_argument("--render-preset", default=temporal_blend.RENDER_FLOW[1],
                        choices=list(optical_flow.DIS_PRESETS),
                        help="DIS preset of the blender's flow (default: %(default)s, as render_video.py)")
    parser.add_argument("--tolerance", default=",".join(f"{t:g}" for t in optical_flow.PHOTO_TOLERANCE),
                        metavar="LOW,HIGH",
                        help="the photometric check's tolerance, 0-255 (default: %(default)s, as render_video.py)")
    args = parser.parse_args(argv)
    clip = utils.require_file(args.clip, "CLIP")
    try:
        low, high = (float(t) for t in args.tolerance.split(","))
    except ValueError:
        raise utils.UserError(f"--tolerance: two numbers LOW,HIGH, not {args.tolerance}") from None
    if not 0 <= low < high:
        raise utils.UserError(f"--tolerance: need 0 <= LOW < HIGH, not {args.tolerance}")
    info = video_io.probe_video(clip, None)  # refuses what OpenCV cannot decode
    size = args.width, 2 * max(1, round(info.height * args.width / info.width / 2))  # as flicker.py cuts its clips
    reader = video_io.FrameReader(clip, size)
    try:
        frames = list(itertools.islice(reader, args.frames))
    finally:
        reader.close()
    if len(frames) < 2:
        raise utils.UserError(f"CLIP: {clip} has {len(frames)} frames OpenCV can read; at least 2 are needed")
    render_flow = optical_flow.FlowEstimator("dis", args.render_preset, max_side=temporal_blend.RENDER_FLOW_SIDE)
    measure_flow = optical_flow.FlowEstimator("dis", "medium")  # as evaluate_video.py
    blending = optical_flow.motions_of(frames, render_flow, (low, high))
    measured = optical_flow.motions_of(frames, measure_flow)
    model = model_files.load_transformer(utils.require_file(args.model, "--model"))
    batch = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()
    per_frame = torch.cat([rendering.stylize(model, part) for part in batch.split(8)])
    blended = temporal_blend.TemporalBlender()(per_frame, blending)
    print(f"{clip.name}: {len(frames)} frames at {size[0]}x{size[1]}, model {args.model}, blender flow DIS "
          f"{args.render_preset}, tolerance {args.tolerance}; scene cuts at pairs "
          f"{[i for i, m in enumerate(blending) if m is not None and m.cut]}")
    for name, video in (("per-frame", per_frame), ("--temporal", blended)):
        video = to_frames(video)
        metric = warping_error.warping_error_of(video, measured)
        reliable, rest, share = split_errors(video, measured, blending)
        print(f"{name:>10}: warping error {metric.value:.4f} | reliable pixels {reliable:.4f} | the other "
              f"{100 * share:.1f}% {rest:.4f}")
        print(f"{'':>10}  per pair: {' '.join(f'{e:.2f}' for e in metric.pair_errors)}")


if __name__ == "__main__":
    utils.run_main(main)
