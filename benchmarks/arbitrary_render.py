"""What rendering with --style-image costs against a conditional model: the one-off prediction (loss network
built, picture read through it, predictor), and frames per second at 1280x720 of the network the prediction gives
against a conditional model (models/all-styles.pth: the same architecture, without the output norm a model
predicted by a newer arbitrary one has), alternated A/B/B/A, --rounds times, in one run. The extra time per frame
is taken from the median block of each: on the project's machine a block now and then runs 10% slower or faster
than its neighbours, which a mean of few blocks carries into the figure.

    python benchmarks/arbitrary_render.py --style-image images/style-images/stained-glass.png --json out.json
"""

import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import utils  # noqa: E402
from style_transfer import image_io, model_files, rendering  # noqa: E402
from style_transfer.arbitrary_net import check_loss_network, predict, to_conditional  # noqa: E402
from style_transfer.loss_network import load_loss_network  # noqa: E402


def frames_per_second(model: torch.nn.Module, batch: torch.Tensor, precision: str, frames: int) -> float:
    rendering.stylize(model, batch, precision)  # warm-up
    start = time.perf_counter()
    for _ in range(frames):
        rendering.stylize(model, batch, precision)
    return frames / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(ROOT / "models/any-style.pth"), help="(default: %(default)s)")
    parser.add_argument("--conditional", default=str(ROOT / "models/all-styles.pth"), help="(default: %(default)s)")
    parser.add_argument("--style-image", required=True, help="the style picture")
    parser.add_argument("--frames", type=utils.positive_int, default=2, help="frames per block (default: %(default)s)")
    parser.add_argument("--rounds", type=utils.positive_int, default=3,
                        help="how many times the A/B/B/A blocks run (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="(default: %(default)s)")
    parser.add_argument("--precision", default="auto", help="(default: %(default)s)")
    parser.add_argument("--json", default=None, help="write the record here (default: print only)")
    args = parser.parse_args(argv)
    device = utils.choose_device(args.device)
    precision = utils.choose_precision(args.precision, device)
    start = time.perf_counter()
    arbitrary = model_files.load_transformer(args.model, device, arbitrary=True)
    loss_network = load_loss_network(arbitrary.loss_network).to(device)
    check_loss_network(arbitrary, loss_network, arbitrary.loss_network, args.model)
    predicted = to_conditional(arbitrary, predict(arbitrary, loss_network, [image_io.load_rgb(args.style_image)]),
                               ["picture"])
    prediction_s = time.perf_counter() - start
    models = {"--style-image": rendering.prepare_for_rendering(predicted, precision),
              "conditional": rendering.prepare_for_rendering(model_files.load_transformer(args.conditional, device),
                                                             precision)}
    batch = torch.rand(1, 3, 720, 1280, device=device) * 255
    fps: dict[str, list[float]] = {name: [] for name in models}
    for name in ["--style-image", "conditional", "conditional", "--style-image"] * args.rounds:  # A/B/B/A
        fps[name].append(frames_per_second(models[name], batch, precision, args.frames))
    mean = {name: sum(values) / len(values) for name, values in fps.items()}
    median = {name: statistics.median(values) for name, values in fps.items()}
    record = {"command": " ".join(["python", "benchmarks/arbitrary_render.py", *(argv or sys.argv[1:])]),
              "machine": model_files.machine_description(device), "precision": precision, "size": "1280x720",
              "prediction_s": round(prediction_s, 3), "fps_blocks": fps, "fps_mean": mean, "fps_median": median,
              "extra_time_per_frame": median["conditional"] / median["--style-image"] - 1}
    print(json.dumps(record, indent=2))
    if args.json:
        utils.save_json(record, args.json)


if __name__ == "__main__":
    utils.run_main(main)
