"""Stylise a video with a trained model: H.264 at the source's frame rate, with its sound.

    python render_video.py --input clip.mp4 --model models/blend.pth --save-name clip_blend.mp4
    python render_video.py --input "my clip.mov" --model models/blend.pth --save-name small.mp4 --resize 0.5

Decoding, stylising (in batches) and encoding run at the same time and only a few frames are
held in memory, so any length works. The output keeps the source's frame rate, frame count and
duration (a variable frame rate becomes its average, each frame placed by its timestamp, so that picture
and sound stay in sync), and its sound (copied, or re-encoded to AAC where the container cannot hold it as it
is). The ffmpeg that encodes comes with the imageio-ffmpeg package; without any ffmpeg the video
is written by OpenCV instead (MPEG-4 Part 2, no sound). The file appears under its name only
when complete. A conditional model (train.py --conditional) renders any of its styles, a mix, or a
mix that changes over the clip:

    python render_video.py --input clip.mp4 --model styles.pth --save-name morph.mp4 --style-schedule "0:1,0;4:0,1"

--temporal (the default) takes out flicker: the previous output frame, warped along the optical
flow of the source (computed in other threads while the network runs), is blended into each new
one where that flow is reliable; see style_transfer/temporal_blend.py. --no-temporal stylises every frame on its own.
"""

import argparse
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from tqdm import tqdm

import utils
from style_transfer import (
    model_files,
    optical_flow,
    rendering,
    stroke_scale,
    style_choice,
    style_images,
    temporal_blend,
    video_io,
)

Item = TypeVar("Item")


def crf(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 51:
        raise ValueError(f"must be from 0 to 51: {text}")
    return value


crf.__name__ = "integer from 0 to 51"  # argparse names the type in its error message


def build_parser() -> argparse.ArgumentParser:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--input", required=True, metavar="VIDEO", help="the video to stylise (any OpenCV reads)")
    parser.add_argument("--model", "--model-path", dest="model", required=True, metavar="PATH",
                        help="the model file (.pth or .model)")
    parser.add_argument("--save-name", required=True, metavar="PATH",
                        help=f"the output video: {', '.join(sorted(video_io.VIDEO_SUFFIXES))}")
    parser.add_argument("--resize", type=utils.positive_float, default=1.0, metavar="F",
                        help="output scale, the aspect ratio kept: 0.5 halves width and height (default: %(default)s)")
    parser.add_argument("--batch-size", type=utils.positive_int, default=None, metavar="N",
                        help="frames stylised at once (default: 4 on CUDA; 1 elsewhere, where benchmark.py measured "
                             "batches as slower per frame)")
    parser.add_argument("--crf", type=crf, default=18, metavar="N",
                        help="H.264 quality, 0-51: lower is better and bigger; 18 looks like the source, 23 is "
                             "ffmpeg's default (default: %(default)s)")
    parser.add_argument("--preset", default="medium", choices=video_io.X264_PRESETS,
                        help="H.264 encoder speed: slower makes smaller files at the same quality "
                             "(default: %(default)s)")
    parser.add_argument("--no-audio", action="store_true", help="leave the sound out (default: keep it)")
    parser.add_argument("--temporal", action=argparse.BooleanOptionalAction, default=True,
                        help="take out flicker: blend each stylised frame with the previous output, warped along "
                             "the optical flow of the source, where that flow is reliable (not where something "
                             "appears, after a scene cut or in motion too fast to follow); --no-temporal "
                             "stylises every frame on its own (default: --temporal)")
    rendering.add_render_args(parser)
    stroke_scale.add_stroke_scale_arg(parser)
    style_images.add_style_image_args(parser)
    style_choice.add_style_args(parser, schedule=True)
    return parser


def batched(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def smaller_settings(args: argparse.Namespace, device: torch.device) -> str:
    """The flags that make a batch smaller than this run's, for when one is too large for the device."""
    flags = ["--batch-size 1"] if args.batch_size > 1 else []
    flags.append(f"--resize {args.resize / 2:g}")
    if device.type != "cpu":
        flags.append("--device cpu")
    return " or ".join(flags)


def stylise_frames(model: torch.nn.Module, batch: torch.Tensor, precision: str,
                   args: argparse.Namespace) -> torch.Tensor:
    """A batch of frames stylised, with --stroke-scale through stroke_scale (--temporal then blends the
    full-resolution result, as without it: the flow is the full-resolution frames')."""
    if args.stroke_scale == 1:
        return rendering.stylize(model, batch, precision, args.preserve_color, args.strength)
    return stroke_scale.stylise_with_stroke_scale(batch, args.stroke_scale,
                                                  lambda small: rendering.stylize(model, small, precision),
                                                  args.preserve_color, args.strength)


def main(argv: list[str] | None = None) -> None:
    if style_choice.list_styles_if_asked(argv):
        return
    args = build_parser().parse_args(argv)
    source = utils.require_file(args.input, "--input")
    output = Path(args.save_name)
    if output.suffix.lower() not in video_io.VIDEO_SUFFIXES:
        suffixes = ", ".join(sorted(video_io.VIDEO_SUFFIXES))
        raise utils.UserError(f"--save-name: {output} should end in one of {suffixes}")
    if output.exists() and output.resolve() == source.resolve():
        raise utils.UserError("--save-name: the output would overwrite the input")
    device = utils.choose_device(args.device)
    args.batch_size = args.batch_size or rendering.default_batch_size(device)
    precision = utils.choose_precision(args.precision, device)
    ffmpeg = video_io.find_ffmpeg()
    info = video_io.probe_video(source, ffmpeg)
    size = max(1, round(info.width * args.resize)), max(1, round(info.height * args.resize))
    frame_pixels = round(size[0] / args.stroke_scale) * round(size[1] / args.stroke_scale)  # what the network sees
    work = (lambda: (info.frames * frame_pixels, 2)) if info.frames else None  # the short last batch: a second size
    runtime = utils.choose_runtime(args.runtime, device, precision, args.compile, work)
    network = model_files.load_transformer(args.model, device, arbitrary=True)
    network = style_images.resolve_style_images(network, args, args.model, device)
    schedule = style_choice.apply_style_choice(network, args, args.model)
    torch.backends.cudnn.benchmark = True  # every frame has the same size: tune cuDNN's kernels once
    model = rendering.prepare_for_rendering(network, precision, args.compile, runtime)
    encoded = (size[0] + size[0] % 2, size[1] + size[1] % 2) if ffmpeg else size  # see video_io.VideoWriter

    audio_from, audio_codec = None, "copy"
    if ffmpeg is None:
        utils.warn("no ffmpeg binary (pip install imageio-ffmpeg): writing MPEG-4 (mp4v) with OpenCV, without sound")
    else:
        if info.audio and not args.no_audio:
            audio_from, audio_codec = source, video_io.audio_codec(ffmpeg, source, output.suffix)
            if audio_codec != "copy":
                utils.warn(f"the source's {info.audio} sound cannot be copied into {output.suffix}: re-encoding to AAC")
        if encoded != size:
            utils.warn(f"H.264 (yuv420p) needs even sides: the {size[0]}x{size[1]} frames get their last "
                       f"column/row repeated, to {encoded[0]}x{encoded[1]}")

    reader = video_io.FrameReader(source, size, queue_size=2 * args.batch_size, fps=info.fps)  # a steady rate
    args.temporal = args.temporal and args.strength > 0  # with --strength 0 the source is given back as it is
    if args.temporal:  # the source's motion, estimated in other threads while the network runs
        flow = optical_flow.FlowEstimator(*temporal_blend.RENDER_FLOW, max_side=temporal_blend.RENDER_FLOW_SIDE)
        workers = optical_flow.flow_workers(device)
        frames_and_motion = optical_flow.with_motion(reader, flow, workers, ahead=args.batch_size + workers)
        blender = temporal_blend.TemporalBlender()
    else:
        frames_and_motion = ((frame, None) for frame in reader)
    progress = tqdm(total=info.frames, unit="frame", dynamic_ncols=True)
    count = 0
    try:
        with utils.atomic_path(output) as temp:
            writer = video_io.VideoWriter(temp, size, info.fps, ffmpeg, args.crf, args.preset, audio_from, audio_codec,
                                          sar=info.sar)
            try:
                for items in batched(frames_and_motion, args.batch_size):
                    frames, motions = zip(*items, strict=True)
                    # torch.compile compiles for one batch size: the clip's short last batch is padded to it with
                    # copies of its last frame (dropped again) rather than compiled anew (seconds to tens of
                    # seconds; benchmarks/compile_last_batch.py). OpenVINO compiles a new size in a fraction of a
                    # second, less than the padding's frames would cost.
                    padded = args.batch_size if args.compile else len(frames)
                    # NCHW, contiguous: permute() alone leaves the channels_last layout, slower for the network
                    batch = torch.from_numpy(np.stack(frames + frames[-1:] * (padded - len(frames))))
                    batch = batch.to(device).permute(0, 3, 1, 2).float().contiguous()
                    if schedule is not None:  # each frame's mix, set once per batch
                        seconds = [float((count + min(i, len(frames) - 1)) / info.fps) for i in range(padded)]
                        model.set_style_mix(schedule.mixes(seconds))
                    try:
                        stylised = stylise_frames(model, batch, precision, args)
                    except utils.TooLarge as exc:
                        raise utils.TooLarge(f"{exc}; try {smaller_settings(args, device)}") from None
                    stylised = stylised[:len(frames)]
                    if args.temporal:
                        stylised = blender(stylised, list(motions))
                    writer.write(stylised.round().byte().permute(0, 2, 3, 1).contiguous().cpu().numpy())
                    count += len(frames)
                    progress.update(len(frames))
                if count == 0:
                    raise utils.UserError(f"cannot read video {source}: no frame could be decoded")
                writer.close()
            except BaseException:
                writer.abort()
                raise
    except OSError as exc:  # creating the folder or the temporary file, or starting ffmpeg
        raise utils.UserError(f"--save-name: cannot write {output}: {exc.strerror or exc}") from None
    finally:
        frames_and_motion.close()
        reader.close()
        progress.close()
    if info.frames and reader.decoded < info.frames - max(1, info.frames // 100):  # an estimate in some files
        utils.warn(f"only {reader.decoded} of the {info.frames} frames that {source} announces could be decoded "
                   "(is it damaged or cut short?): the output is shorter")
    sound = "with sound" if audio_from else "without sound"
    print(f"wrote {output}: {count} frames {encoded[0]}x{encoded[1]} at {float(info.fps):.6g} fps, {sound}")


if __name__ == "__main__":
    utils.run_main(main)
