"""Measure flicker, and what render_video.py --temporal and --temporal-weight do about it, clip by clip.

    python benchmarks/flicker.py CLIP [CLIP ...] --models models/blend.pth --json flicker.json
    python benchmarks/flicker.py clip.avi --models models/blend.pth,stand-in --trained a.pth,b.pth --frames 48

For each clip, its first --frames frames (after --skip), scaled to --width, are cut into a short H.264 clip
(CRF 12), the source of everything that follows. Each of --models renders it with render_video.py
--no-temporal and with --temporal, in this process, alternately (ABBA), timed end to end (the fastest of
--repeats each; the process's first render, which pays for starting torch's kernels, is an untimed
warm-up). evaluate_video.py gives the warping error of both (the flow on the source, DIS medium;
--cross-check adds the error with another flow, so that a reduction is not an artefact of one flow method),
and the mean PSNR between the two outputs says how close --temporal stays to the per-frame stylisation
(frame 0, identical by construction, left out). The model name `stand-in` is stand_in.flickering_network(),
a seeded random network that flickers by construction, for machines where no sharply trained model can be
made. --trained WITHOUT,WITH adds the per-frame warping error of a model without and with --temporal-weight,
and the PSNR between their outputs. Prints tables; --json writes every number with the machine and the
command.
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent  # the repository root
sys.path.insert(0, str(ROOT))  # the suite's modules live at the top level

import evaluate_video
import render_video
import utils
from benchmarks import stand_in
from style_transfer import model_files, optical_flow, temporal_blend, video_io

STAND_IN = "stand-in"


def build_parser() -> argparse.ArgumentParser:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("clips", nargs="+", metavar="CLIP", help="videos to measure on")
    parser.add_argument("--models", default="models/blend.pth", metavar="A,B,...",
                        help=f"models to render with, separated by commas; {STAND_IN} = a seeded random network; "
                             "empty: none, only --trained (default: %(default)s)")
    parser.add_argument("--trained", default=None, metavar="WITHOUT,WITH",
                        help="two models trained alike, without and with --temporal-weight (default: none)")
    parser.add_argument("--frames", type=utils.positive_int, default=40, help="frames per clip (default: %(default)s)")
    parser.add_argument("--skip", type=int, default=0, help="frames skipped at the start (default: %(default)s)")
    parser.add_argument("--width", type=utils.positive_int, default=320,
                        help="the cut clips' width; the height keeps the aspect ratio (default: %(default)s)")
    parser.add_argument("--repeats", type=utils.positive_int, default=1,
                        help="timed renders of each kind; the fastest counts (default: %(default)s)")
    parser.add_argument("--cross-check", default=None, choices=optical_flow.FLOW_METHODS,
                        help="also measure the warping errors with this flow (default: none)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where to render (default: %(default)s)")
    parser.add_argument("--json", default=None, metavar="PATH",
                        help="where the numbers go, written after every clip (default: nowhere)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the clips --json already holds and measure only the others (default: off)")
    return parser


def cut_clip(source: Path, output: Path, frames: int, skip: int, width: int) -> dict:
    """The first `frames` frames of `source` after `skip`, scaled to `width`, as H.264 at CRF 12."""
    ffmpeg = video_io.find_ffmpeg()
    info = video_io.probe_video(source, ffmpeg)
    size = width, 2 * max(1, round(info.height * width / info.width / 2))
    reader = video_io.FrameReader(source, size)
    writer = video_io.VideoWriter(output, size, info.fps, ffmpeg, crf=12)
    count = 0
    try:
        for index, frame in enumerate(reader):
            if index >= skip:
                writer.write(frame[None])
                count += 1
            if count == frames:
                break
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        reader.close()
    return {"clip": source.name, "frames": count, "skipped": skip, "width": size[0], "height": size[1],
            "fps": float(info.fps), "source_size": f"{info.width}x{info.height}"}


def stand_in_model(path: Path) -> Path:
    torch.save(stand_in.flickering_network().state_dict(), path)
    return path


def render(clip: Path, model: Path, output: Path, device: str, temporal_on: bool) -> float:
    """Wall seconds of render_video.py, end to end."""
    start = time.perf_counter()
    render_video.main(["--input", str(clip), "--model", str(model), "--save-name", str(output), "--device", device,
                       "--temporal" if temporal_on else "--no-temporal"])
    return time.perf_counter() - start


def mean_psnr(first: Path, second: Path, size: tuple[int, int]) -> float:
    """Mean over frames 1... of the PSNR between two videos of the same frames (0-255 RGB)."""
    readers = [video_io.FrameReader(path, size) for path in (first, second)]
    values = []
    try:
        for index, (a, b) in enumerate(zip(*readers, strict=True)):
            mse = float(np.mean((a.astype(np.float64) - b) ** 2))
            if index > 0:
                values.append(100.0 if mse == 0 else 10 * math.log10(255**2 / mse))
    finally:
        for reader in readers:
            reader.close()
    return float(np.mean(values))


def measure_clip(clip: Path, models: dict[str, Path], trained: list[Path], args: argparse.Namespace,
                 folder: Path, warmed_up: list[bool]) -> dict:
    source = folder / f"{clip.stem}-cut.mp4"
    result = cut_clip(clip, source, args.frames, args.skip, args.width)
    size = result["width"], result["height"]
    flows = {"dis": optical_flow.FlowEstimator("dis")}
    if args.cross_check:
        flows[args.cross_check] = optical_flow.FlowEstimator(args.cross_check)

    def warping_errors(video: Path) -> dict[str, float]:
        return {name: evaluate_video.evaluate(source, video, flow)["warping_error"] for name, flow in flows.items()}

    result["source_warping_error"] = warping_errors(source)["dis"]
    result["models"] = []
    for name, model in models.items():
        outputs = {kind: folder / f"{clip.stem}-{Path(name).stem}-{kind}.mp4" for kind in ("per-frame", "temporal")}
        seconds: dict[str, list[float]] = {"per-frame": [], "temporal": []}
        if not warmed_up:  # the first render of a process pays for the start-up of torch's kernels: not timed
            render(source, model, outputs["per-frame"], args.device, False)
            warmed_up.append(True)
        for repeat in range(args.repeats):
            for kind in ("per-frame", "temporal")[::1 if repeat % 2 == 0 else -1]:  # ABBA: drift cancels out
                seconds[kind].append(render(source, model, outputs[kind], args.device, kind == "temporal"))
        row = {"model": name}
        for kind, output in outputs.items():
            errors = warping_errors(output)
            row[kind] = errors["dis"]
            if args.cross_check:
                row[f"{kind}_{args.cross_check}"] = errors[args.cross_check]
            row[f"{kind}_fps"] = result["frames"] / min(seconds[kind])
            row[f"{kind}_seconds"] = seconds[kind]
        row["reduction"] = 1 - row["temporal"] / row["per-frame"]
        row["speed_ratio"] = row["temporal_fps"] / row["per-frame_fps"]
        row["psnr_temporal_vs_per_frame"] = mean_psnr(outputs["temporal"], outputs["per-frame"], size)
        result["models"].append(row)
    if trained:
        errors, outputs = [], []
        for model in trained:
            outputs.append(folder / f"{clip.stem}-{model.stem}-trained.mp4")
            render(source, model, outputs[-1], args.device, False)
            errors.append(warping_errors(outputs[-1])["dis"])
        result["trained"] = {"without": errors[0], "with": errors[1], "reduction": 1 - errors[1] / errors[0],
                             "psnr_with_vs_without": mean_psnr(outputs[1], outputs[0], size)}
    return result


def print_rendering_table(clips: list[dict]) -> None:
    print("\n| clip | model | per-frame | --temporal | change | PSNR to per-frame | fps per-frame | fps --temporal "
          "| speed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for clip in clips:
        name = (f"{clip['clip']} ({clip['frames']} frames, {clip['width']}x{clip['height']}; source itself "
                f"{clip['source_warping_error']:.3f})")
        for row in clip["models"]:
            print(f"| {name} | {row['model']} | {row['per-frame']:.4f} | {row['temporal']:.4f} | "
                  f"{-100 * row['reduction']:+.0f}% | {row['psnr_temporal_vs_per_frame']:.1f} dB | "
                  f"{row['per-frame_fps']:.2f} | {row['temporal_fps']:.2f} | "
                  f"{100 * (row['speed_ratio'] - 1):+.0f}% |")


def print_cross_check_table(clips: list[dict], flow: str) -> None:
    print(f"\n| clip | model | per-frame ({flow}) | --temporal ({flow}) | change |")
    print("|---|---|---|---|---|")
    for clip in clips:
        for row in clip["models"]:
            before, after = row[f"per-frame_{flow}"], row[f"temporal_{flow}"]
            change = 100 * (after / before - 1)
            print(f"| {clip['clip']} | {row['model']} | {before:.4f} | {after:.4f} | {change:+.0f}% |")


def print_trained_table(clips: list[dict], trained: list[Path]) -> None:
    print(f"\n| clip | per-frame, {trained[0].name} (no --temporal-weight) | per-frame, {trained[1].name} "
          "(--temporal-weight) | change | PSNR between the two |")
    print("|---|---|---|---|---|")
    for clip in clips:
        t = clip["trained"]
        print(f"| {clip['clip']} | {t['without']:.4f} | {t['with']:.4f} | {-100 * t['reduction']:+.0f}% | "
              f"{t['psnr_with_vs_without']:.1f} dB |")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    clips = [utils.require_file(c, "CLIP") for c in args.clips]
    trained = [utils.require_file(p, "--trained") for p in args.trained.split(",")] if args.trained else []
    if args.trained and len(trained) != 2:
        raise utils.UserError("--trained: give two models, WITHOUT,WITH")
    if args.resume and not args.json:
        raise utils.UserError("--resume needs --json")
    device = utils.choose_device(args.device)
    results = {"machine": model_files.machine_description(device), "torch": torch.__version__,
               "commands": [], "load_averages": [], "temporal_settings": {
                   "blend": temporal_blend.BLEND, "photo_tolerance": optical_flow.PHOTO_TOLERANCE,
                   "cut_fraction": optical_flow.CUT_FRACTION, "render_flow": temporal_blend.RENDER_FLOW,
                   "render_flow_side": temporal_blend.RENDER_FLOW_SIDE}, "evaluation_flow": "dis (medium)",
               "cross_check_flow": args.cross_check, "clips": []}
    if args.resume and Path(args.json).exists():
        results = json.loads(Path(args.json).read_text())
    results["commands"].append(model_files.command_line("benchmarks/flicker.py", argv))
    done = {clip["path"] for clip in results["clips"]}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        models, warmed_up = {}, []
        for name in filter(None, args.models.split(",")):
            models[name] = stand_in_model(folder / "stand-in.pth") if name == STAND_IN else utils.require_file(
                name, "--models")
        for clip in clips:
            if str(clip) in done:
                continue
            load = os.getloadavg()[0]
            results["clips"].append({"path": str(clip), **measure_clip(clip, models, trained, args, folder,
                                                                      warmed_up)})
            results["load_averages"].append([load, os.getloadavg()[0]])  # 1-minute, before and after the clip
            if args.json:  # after every clip, so that --resume can go on from there
                utils.save_json(results, args.json)
    if models:
        print_rendering_table(results["clips"])
        if args.cross_check:
            print_cross_check_table(results["clips"], args.cross_check)
    if trained:
        print_trained_table(results["clips"], trained)
    print(f"\nload average (1 minute) before and after each clip: {results['load_averages']}")
    if args.json:
        print(f"wrote {args.json}")


if __name__ == "__main__":
    utils.run_main(main)
