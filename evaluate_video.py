"""Measure how much a stylised video flickers: its warping error against the source video it was made from.

    python evaluate_video.py clip.mp4 clip_stylised.mp4
    python evaluate_video.py clip.mp4 clip_stylised.mp4 --json flicker.json

The warping error of Lai et al., "Learning Blind Video Temporal Consistency" (ECCV 2018): the optical flow
is computed on the source frames (read at the stylised video's size), stylised frame t-1 is warped along it
to frame t, and the squared difference to stylised frame t (RGB in 0-1) is averaged over the pixels that
are not occluded (forward-backward check), then over the consecutive pairs, and multiplied by 1000.
Lower is steadier: a video that does not change where its source does not gives 0.
"""

import argparse
from pathlib import Path

from tqdm import tqdm

import utils
from style_transfer import optical_flow, video_io, warping_error


def build_parser() -> argparse.ArgumentParser:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("source", metavar="SOURCE", help="the video that was stylised")
    parser.add_argument("stylised", metavar="STYLISED", help="the stylised video (the same frames, any size)")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="also write the result, with the settings, to this JSON file (default: none)")
    parser.add_argument("--flow", default="dis", choices=optical_flow.FLOW_METHODS,
                        help="optical flow: OpenCV's DIS (preset medium) or Farneback, or torchvision's RAFT "
                             "where its weights are already downloaded (default: %(default)s)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="where RAFT runs (the other flows run on the CPU) (default: %(default)s)")
    return parser


def evaluate(source: Path, stylised: Path, flow: optical_flow.FlowEstimator) -> dict:
    """The warping error of `stylised` against `source`, with the facts behind it."""
    ffmpeg = video_io.find_ffmpeg()
    styled_info, source_info = video_io.probe_video(stylised, ffmpeg), video_io.probe_video(source, ffmpeg)
    size = styled_info.width, styled_info.height
    if abs(size[0] / size[1] - source_info.width / source_info.height) > 0.02 * size[0] / size[1]:
        raise utils.UserError(f"{stylised} is {size[0]}x{size[1]} but {source} is {source_info.width}x"
                              f"{source_info.height}: not the same picture (the aspect ratios differ)")
    metric = warping_error.WarpingError()
    # At a constant rate, each frame placed by its timestamp, as render_video.py reads it: a variable-frame-rate
    # source then lines up frame for frame with its stylisation.
    source_frames = video_io.FrameReader(source, size, queue_size=4, fps=source_info.fps)
    styled_frames = video_io.FrameReader(stylised, size, queue_size=4)
    pairs = optical_flow.with_motion(source_frames, flow, workers=2, ahead=4)
    styled_iter = iter(styled_frames)
    counts = [0, 0]  # frames of the source, of the stylised video
    previous = None
    try:
        with tqdm(total=styled_info.frames, unit="frame", dynamic_ncols=True) as progress:
            while True:
                pair, frame = next(pairs, None), next(styled_iter, None)
                counts = [counts[0] + (pair is not None), counts[1] + (frame is not None)]
                if pair is None or frame is None:
                    break
                if pair[1] is not None:
                    metric.add(previous, frame, pair[1])
                previous = frame
                progress.update()
            counts = [counts[0] + sum(1 for _ in pairs), counts[1] + sum(1 for _ in styled_iter)]
    finally:
        pairs.close()
        source_frames.close()
        styled_frames.close()
    if counts[0] != counts[1]:
        raise utils.UserError(f"{source} has {counts[0]} frames but {stylised} has {counts[1]}: "
                              "not a stylisation of it, frame for frame")
    if counts[1] < 2:
        raise utils.UserError(f"{stylised} has {counts[1]} frame: the warping error needs at least two")
    return {"warping_error": metric.value, "pairs": metric.pairs, "pairs_without_visible_pixels": metric.skipped,
            "occluded_share": metric.masked / max(1, metric.pairs), "width": size[0], "height": size[1],
            "flow": flow.describe(),
            "source": str(source), "stylised": str(stylised)}


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    source = utils.require_file(args.source, "SOURCE")
    stylised = utils.require_file(args.stylised, "STYLISED")
    device = utils.choose_device(args.device)
    result = evaluate(source, stylised, optical_flow.FlowEstimator(args.flow, device=device))
    print(f"warping error: {result['warping_error']:.4f}")
    print(f"({result['pairs']} frame pairs at {result['width']}x{result['height']}, flow {result['flow']}, "
          f"{100 * result['occluded_share']:.1f}% of the pixels occluded and left out)")
    if args.json:
        utils.save_json(result, args.json)


if __name__ == "__main__":
    utils.run_main(main)
