"""What rendering with --style-image costs against a conditional model, at 1280x720, in one run.

- A single image, whole: render_image.py's main() in a fresh process each time (model loaded, picture read and
  predicted, frame rendered, file written; the interpreter's start and imports, the same for both, left out), with
  --style-image against models/all-styles.pth, alternated A B B A, --processes times each.
- The setup alone, in this process: what render_image.py --style-image does before its first frame (the model, the
  loss network, the picture, the predictor: once per run, for every image or frame of it) against loading a
  conditional model.
- Per frame: the network the prediction gives against two conditional networks: its twin (the same weights without
  the output norm that newer arbitrary models have: the architecture's cost alone) and models/all-styles.pth
  (another model, the one a user would otherwise render); and, counted, the output norm's arithmetic against the
  convolutions'. After an untimed round, blocks of --frames frames run in the order FRAME_ORDER, --rounds times.
On the project's shared machine a block now and then runs 10% slower or faster than its neighbours, so each round
gives one ratio per counterpart (the summed time of its two blocks against the --style-image network's two), and
the figure is the median round.

    python benchmarks/arbitrary_render.py --style-image images/style-images/stained-glass.png --json out.json
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import utils  # noqa: E402
from benchmark import run_measured  # noqa: E402
from style_transfer import image_io, model_files, rendering  # noqa: E402
from style_transfer.conditional_net import ConditionalTransformerNet  # noqa: E402
from style_transfer.style_images import resolve_style_images  # noqa: E402

# the output norm per colour value: sum and sum of squares for its statistics, then subtract, scale, shift (x2)
OUTPUT_NORM_OPS_PER_ELEMENT = 8
STYLE_IMAGE, TWIN, CONDITIONAL = "--style-image", "twin without the output norm", "conditional (all-styles.pth)"
FRAME_ORDER = [STYLE_IMAGE, TWIN, CONDITIONAL, CONDITIONAL, TWIN, STYLE_IMAGE]  # one round: two blocks of each
A_B_B_A = [STYLE_IMAGE, CONDITIONAL, CONDITIONAL, STYLE_IMAGE]  # the single images and the setup


def predicted_network(model_path: str, style_image: str, device: torch.device) -> ConditionalTransformerNet:
    """What render_image.py --style-image builds before its first frame (its own code)."""
    arbitrary = model_files.load_transformer(model_path, device, arbitrary=True)
    return resolve_style_images(arbitrary, argparse.Namespace(style_image=style_image, style_vgg_weights=None),
                                model_path, device)


def without_output_norm(model: ConditionalTransformerNet) -> ConditionalTransformerNet:
    """The same weights in a conditional network without the output norm."""
    twin = ConditionalTransformerNet(model.style_names, output_norm=False).to(next(model.parameters()).device)
    twin.load_state_dict({key: value for key, value in model.state_dict().items()
                          if not key.startswith("output_norm.")})
    return twin


def seconds_of(work: Callable[..., object], *args: object) -> float:
    """Wall seconds of one call of `work`."""
    start = time.perf_counter()
    work(*args)
    return time.perf_counter() - start


def frame_seconds(model: torch.nn.Module, batch: torch.Tensor, precision: str, frames: int) -> float:
    """Seconds a frame: the mean of `frames` renders after one untimed."""
    rendering.stylize(model, batch, precision)
    start = time.perf_counter()
    for _ in range(frames):
        rendering.stylize(model, batch, precision)
    return (time.perf_counter() - start) / frames


def round_ratios(seconds: dict[str, list[float]], name: str, rounds: int) -> list[float]:
    """Each round's extra time of the --style-image network over `name` (two blocks of each in a round)."""
    return [sum(seconds[STYLE_IMAGE][2 * r:2 * r + 2]) / sum(seconds[name][2 * r:2 * r + 2]) - 1
            for r in range(rounds)]


def arithmetic_shares(model: torch.nn.Module, batch: torch.Tensor) -> dict[str, float]:
    """Multiply-adds of the convolutions in one pass over one image of `batch`, and the output norm's elementwise
    operations against them."""
    macs = []

    def count(module: torch.nn.Module, _inputs, output: torch.Tensor) -> None:
        macs.append(output.numel() * module.weight[0].numel())  # each output value: in/groups x k x k

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.no_grad():
            model(batch[:1, :, :64, :64])  # the counts scale with the pixels: count at 64x64, scale to the image
    finally:
        for hook in hooks:
            hook.remove()
    conv_flops = 2 * sum(macs) * batch.shape[2] * batch.shape[3] / (64 * 64)
    return {"conv_gflops_per_frame": conv_flops / 1e9,
            "output_norm_share": OUTPUT_NORM_OPS_PER_ELEMENT * batch[0].numel() / conv_flops}


def single_image_seconds(args: argparse.Namespace, device: torch.device) -> dict[str, list[float]]:
    """render_image.py's main() on a 1280x720 photo in fresh processes, with --style-image and with the
    conditional model, A_B_B_A --processes times."""
    seconds: dict[str, list[float]] = {STYLE_IMAGE: [], CONDITIONAL: []}
    with tempfile.TemporaryDirectory() as folder:
        photo = Path(folder) / "photo.png"
        image_io.load_rgb(ROOT / "images/content-images/coffee.jpg").resize((1280, 720)).save(photo)
        common = ["--content-path", str(photo), "--output-path", str(Path(folder) / "out.png"),
                  "--device", device.type, "--precision", args.precision]
        flags = {STYLE_IMAGE: ["--model", args.model, "--style-image", args.style_image],
                 CONDITIONAL: ["--model", args.conditional]}
        for name in A_B_B_A * args.processes:
            seconds[name].append(run_measured("render_image", *common, *flags[name])[0])
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(ROOT / "models/any-style.pth"), help="(default: %(default)s)")
    parser.add_argument("--conditional", default=str(ROOT / "models/all-styles.pth"), help="(default: %(default)s)")
    parser.add_argument("--style-image", required=True, help="the style picture")
    parser.add_argument("--frames", type=utils.positive_int, default=2, help="frames per block (default: %(default)s)")
    parser.add_argument("--rounds", type=utils.positive_int, default=3,
                        help="how many times the per-frame and setup blocks run (default: %(default)s)")
    parser.add_argument("--processes", type=utils.positive_int, default=2,
                        help="how many times each single-image process runs, twice per round (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="(default: %(default)s)")
    parser.add_argument("--precision", default="auto", help="(default: %(default)s)")
    parser.add_argument("--json", default=None, help="write the record here (default: print only)")
    args = parser.parse_args(argv)
    device = utils.choose_device(args.device)
    precision = utils.choose_precision(args.precision, device)
    utils.require_file(args.style_image, "--style-image")  # one line here, before any process starts

    single = single_image_seconds(args, device)
    setup: dict[str, list[float]] = {STYLE_IMAGE: [], CONDITIONAL: []}
    for name in A_B_B_A * args.rounds:
        if name == STYLE_IMAGE:
            setup[name].append(seconds_of(predicted_network, args.model, args.style_image, device))
        else:
            setup[name].append(seconds_of(model_files.load_transformer, args.conditional, device))

    predicted = predicted_network(args.model, args.style_image, device)
    batch = torch.rand(1, 3, 720, 1280, device=device) * 255
    shares = arithmetic_shares(predicted, batch)  # before the networks are prepared (cast) for rendering
    models = {STYLE_IMAGE: predicted, TWIN: without_output_norm(predicted),
              CONDITIONAL: model_files.load_transformer(args.conditional, device)}
    models = {name: rendering.prepare_for_rendering(model, precision) for name, model in models.items()}
    for model in models.values():  # an untimed round first: the first blocks of a run are slower
        frame_seconds(model, batch, precision, 1)
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for name in FRAME_ORDER * args.rounds:
        seconds[name].append(frame_seconds(models[name], batch, precision, args.frames))

    median = {name: statistics.median(values) for name, values in single.items()}
    median_setup = {name: statistics.median(values) for name, values in setup.items()}
    median_frame = {name: statistics.median(values) for name, values in seconds.items()}
    record = {"command": " ".join(["python", "benchmarks/arbitrary_render.py", *(argv or sys.argv[1:])]),
              "machine": model_files.machine_description(device), "precision": precision, "size": "1280x720",
              "frames_per_block": args.frames, "rounds": args.rounds, "processes": args.processes,
              "single_image_s": single, "single_image_median_s": median,
              "single_image_extra": median[STYLE_IMAGE] / median[CONDITIONAL] - 1,
              "setup_s": setup, "setup_median_s": median_setup,
              "extra_setup_s": median_setup[STYLE_IMAGE] - median_setup[CONDITIONAL],
              "frame_s": seconds, "frame_median_s": median_frame,
              "round_ratios": {name: round_ratios(seconds, name, args.rounds) for name in (TWIN, CONDITIONAL)},
              **shares}
    record["extra_time_per_frame"] = {name: statistics.median(ratios)
                                      for name, ratios in record["round_ratios"].items()}
    record["extra_setup_in_frames"] = record["extra_setup_s"] / median_frame[CONDITIONAL]
    print(json.dumps(record, indent=2))
    if args.json:
        utils.save_json(record, args.json)


if __name__ == "__main__":
    utils.run_main(main)
