"""Measure what a conditional model (train.py --conditional) costs and gives, in one run on one machine.

    python benchmarks/conditional.py          # minutes on 2 CPU cores: a table, the numbers in conditional.json
    python benchmarks/conditional.py --steps 4 --size 32 --render-size 64     # a smoke run

1. Size: the parameters a style adds, and the file of a 2-style conditional model against a plain one.
2. Quality: two dedicated single-style models and one 2-style conditional model, trained by train.py for the same
   steps on the same crops (tools/make_demo_data.py's crops of the bundled photos; every 7th crop held out), with
   the random VGG16; each style's style loss (and the content loss) on the held-out crops, conditional against
   dedicated.
3. Mixing: the conditional model rendered with weights (1-t, t), t = 0, 0.25, ..., 1: the held-out style loss
   against each style (the one against the second style should fall all the way).
4. Render speed: a plain model against the conditional one set to the mix 0.5,0.5, as render_image.py runs them
   (precision auto), alternating rounds; the spread between the plain model's own rounds is the noise.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent  # the repository root
sys.path.insert(0, str(ROOT))  # the suite's modules live at the top level
sys.path.insert(0, str(ROOT / "tools"))  # make_demo_data

import make_demo_data

import train
import utils
import vgg
from benchmark import synchronize, timed
from style_transfer import image_io, model_files, rendering
from style_transfer.conditional_net import ConditionalTransformerNet
from transformer_net import TransformerNet
from vgg import content_loss, gram_matrix, style_loss

STYLES = [ROOT / "images/style-images/stained-glass.png", ROOT / "images/style-images/brush-strokes.jpg"]
PHOTOS = ROOT / "images/content-images"
STYLE_WEIGHT, CONTENT_WEIGHT = 1e10, 1e5  # train.py's defaults: losses in the units of its log
HELD_OUT_EVERY = 7
MIX_STEPS = (0.0, 0.25, 0.5, 0.75, 1.0)


# ---------------------------------------------------------------- 1. size

def size_rows(folder: Path) -> dict:
    plain, conditional = TransformerNet(), ConditionalTransformerNet(["a", "b"])
    plain_params = sum(p.numel() for p in plain.parameters())
    conditional_params = sum(p.numel() for p in conditional.parameters())
    per_style = conditional_params - plain_params  # the second style's scales and shifts
    result = {"plain_parameters": plain_params, "conditional_2_parameters": conditional_params,
              "parameters_per_style": per_style, "style_share": per_style / plain_params}
    for fp16 in (False, True):
        kind = "fp16" if fp16 else "fp32"
        model_files.save_model(plain, folder / f"plain-{kind}.pth", {}, fp16=fp16)
        model_files.save_model(conditional, folder / f"conditional-{kind}.pth", {}, fp16=fp16)
        plain_bytes = (folder / f"plain-{kind}.pth").stat().st_size
        conditional_bytes = (folder / f"conditional-{kind}.pth").stat().st_size
        result[f"file_bytes_{kind}"] = {"plain": plain_bytes, "conditional_2": conditional_bytes,
                                        "growth": conditional_bytes / plain_bytes - 1}
    print(f"\nsize: a style adds {per_style:,} parameters = {100 * result['style_share']:.2f}% of the plain "
          f"network's {plain_params:,}")
    for kind in ("fp32", "fp16"):
        files = result[f"file_bytes_{kind}"]
        print(f"  {kind} file: plain {files['plain']:,} bytes, 2-style conditional {files['conditional_2']:,} bytes "
              f"({100 * files['growth']:+.2f}%)")
    return result


# ---------------------------------------------------------------- 2. quality

def write_crops(train_dir: Path, held_out_dir: Path, size: int) -> int:
    """make_demo_data.py's crops of the bundled photos; every HELD_OUT_EVERY-th goes to `held_out_dir`."""
    train_dir.mkdir(parents=True)
    held_out_dir.mkdir(parents=True)
    index = 0
    for photo in image_io.list_images(PHOTOS):
        for crop in make_demo_data.crops(image_io.load_rgb(photo), size):
            folder = held_out_dir if index % HELD_OUT_EVERY == 0 else train_dir
            crop.save(folder / f"{photo.stem}_{index:03d}.png")
            index += 1
    return index


def train_model(folder: Path, data: Path, args: argparse.Namespace, styles: list[Path], name: str,
                *extra: str) -> tuple[Path, float]:
    """train.py with the benchmark's settings; the model's path and its wall time."""
    start = time.perf_counter()
    train.main(["--datapath", str(data), "--stylepath", ",".join(map(str, styles)), "--style-size",
                str(args.style_size), "--image-size", str(args.size), "--batch-size", str(args.batch_size),
                "--max-steps", str(args.steps), "--epochs", "100000", "--seed", "0", "--vgg-weights", "random",
                "--device", args.device, "--precision", args.precision, "--log-interval", str(args.steps),
                "--checkpoint-interval", str(10 * args.steps), "--save-dir", str(folder), "--log-dir", str(folder),
                "--checkpoint-dir", str(folder), "--savename", name, *extra])
    return folder / name, time.perf_counter() - start


class HeldOutLosses:
    """Style and content losses of a rendering of the held-out crops, in train.py's units."""

    def __init__(self, held_out: Path, args: argparse.Namespace, device: torch.device):
        self.device = device
        self.vgg = vgg.load_vgg16("random").to(device)
        self.images = torch.stack([image_io.image_to_tensor(image_io.load_rgb(p))
                                   for p in image_io.list_images(held_out)]).to(device)
        with torch.no_grad():
            self.content = self.vgg(self.images, depth=2)[1]
            self.grams = [[gram_matrix(f) for f in self.vgg(
                image_io.image_to_tensor(image_io.load_rgb(p, args.style_size)).unsqueeze(0).to(device))]
                for p in STYLES]

    def __call__(self, model: torch.nn.Module) -> dict:
        with torch.no_grad():
            features = self.vgg(rendering.stylize(model, self.images))
            return {"style": [STYLE_WEIGHT * style_loss(features, [grams], [1.0]).item() for grams in self.grams],
                    "content": CONTENT_WEIGHT * content_loss(features, self.content).item()}


def quality_rows(folder: Path, args: argparse.Namespace, device: torch.device) -> tuple[dict, dict, list[Path]]:
    """The quality and mixing tables; the paths of the first dedicated model and of the conditional one."""
    crops = write_crops(folder / "train", folder / "held-out", args.size)
    losses = HeldOutLosses(folder / "held-out", args, device)
    print(f"\nquality: {crops} crops at {args.size} px ({len(losses.images)} held out), batch {args.batch_size}, "
          f"{args.steps} steps each, styles at {args.style_size} px, random VGG16, precision {args.precision}")
    dedicated, paths, wall = [], [], {}
    for index, style in enumerate(STYLES):
        path, wall[style.stem] = train_model(folder, folder / "train", args, [style], f"dedicated-{index}.pth")
        dedicated.append(losses(model_files.load_transformer(path, device)))
        paths.append(path)
    conditional_path, wall["conditional"] = train_model(folder, folder / "train", args, STYLES, "conditional.pth",
                                                        "--conditional")
    conditional = model_files.load_transformer(conditional_path, device)
    rows = []
    for index, style in enumerate(STYLES):
        conditional.set_style_mix([1.0 if i == index else 0.0 for i in range(len(STYLES))])
        own = losses(conditional)
        rows.append({"style": style.stem, "dedicated_style_loss": dedicated[index]["style"][index],
                     "conditional_style_loss": own["style"][index],
                     "dedicated_content_loss": dedicated[index]["content"], "conditional_content_loss": own["content"]})
        rows[-1]["style_loss_ratio"] = rows[-1]["conditional_style_loss"] / rows[-1]["dedicated_style_loss"]
    print(f"  {'style':<14} | style loss: dedicated | conditional | ratio | content loss: dedicated | conditional")
    for row in rows:
        print(f"  {row['style']:<14} | {row['dedicated_style_loss']:21.4g} | {row['conditional_style_loss']:11.4g} | "
              f"{row['style_loss_ratio']:5.2f} | {row['dedicated_content_loss']:23.4g} | "
              f"{row['conditional_content_loss']:.4g}")
    print("  training wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in wall.items()))

    mixing = []
    for t in MIX_STEPS:
        conditional.set_style_mix([1 - t, t])
        mixing.append({"t": t, "style_losses": losses(conditional)["style"]})
    against_second = [m["style_losses"][1] for m in mixing]
    monotonic = all(b < a for a, b in zip(against_second, against_second[1:], strict=False))
    print(f"\nmixing: weights (1-t, t) of {STYLES[0].stem} and {STYLES[1].stem}, held-out style loss against each")
    for m in mixing:
        print(f"  t = {m['t']:.2f} | against {STYLES[0].stem} {m['style_losses'][0]:10.4g} | "
              f"against {STYLES[1].stem} {m['style_losses'][1]:10.4g}")
    print(f"  against {STYLES[1].stem}: {'falls at every step' if monotonic else 'does NOT fall at every step'}")
    return ({"rows": rows, "wall_time_s": wall, "crops": crops, "held_out": len(losses.images)},
            {"rows": mixing, "monotonic_against_second": monotonic}, [paths[0], conditional_path])


# ---------------------------------------------------------------- 4. render speed

def speed_rows(trained: list[Path], args: argparse.Namespace, device: torch.device) -> dict:
    """Render speed of the plain and the conditional model: the trained ones of quality_rows if given, else
    untrained ones."""
    precision = utils.choose_precision("auto", device)  # what render_image.py runs by default
    torch.manual_seed(0)
    if trained:
        plain, conditional = (model_files.load_transformer(path, device) for path in trained)
    else:
        plain = TransformerNet().to(device).eval()
        conditional = ConditionalTransformerNet([s.stem for s in STYLES]).to(device).eval()
    conditional.set_style_mix([0.5, 0.5])
    plain = rendering.prepare_for_rendering(plain, precision)
    mixed = rendering.prepare_for_rendering(conditional, precision)
    side = args.render_size
    frame = (torch.rand(1, 3, side, side, device=device) * 255)
    seconds = {"plain": [], "conditional_mix": []}
    for _ in range(args.rounds):  # alternate, so that a busy spell of the machine hits both
        for name, model in (("plain", plain), ("conditional_mix", mixed)):
            seconds[name].append(timed(lambda m=model: rendering.stylize(m, frame, precision), device, args.repeats,
                                       args.seconds))
    start = time.perf_counter()
    for _ in range(100):
        conditional.set_style_mix([0.3, 0.7])
    synchronize(device)
    set_mix_s = (time.perf_counter() - start) / 100
    plain_s, mixed_s = statistics.median(seconds["plain"]), statistics.median(seconds["conditional_mix"])
    result = {"size": f"{side}x{side}", "precision": precision, "rounds": args.rounds, "seconds": seconds,
              "plain_fps": 1 / plain_s, "conditional_mix_fps": 1 / mixed_s, "ratio": plain_s / mixed_s,
              "plain_spread": max(seconds["plain"]) / min(seconds["plain"]) - 1, "set_style_mix_s": set_mix_s}
    print(f"\nrender speed, {side}x{side}, batch 1, precision {precision} (median of {args.rounds} alternating rounds)")
    print(f"  plain model              {result['plain_fps']:8.3f} fps (its own rounds spread "
          f"{100 * result['plain_spread']:.1f}%)")
    print(f"  conditional, mix 0.5,0.5 {result['conditional_mix_fps']:8.3f} fps = {100 * result['ratio']:.1f}% of "
          "the plain model's")
    print(f"  set_style_mix: {1e6 * set_mix_s:.0f} us per call (once per image, or per batch of a --style-schedule)")
    return result


# ---------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    parser = utils.ArgumentParser(description=__doc__, allow_abbrev=False)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"],
                        help="device to train and measure on (default: %(default)s)")
    parser.add_argument("--parts", default="size,quality,speed", help="what to measure (default: %(default)s)")
    parser.add_argument("--size", type=utils.positive_int, default=64,
                        help="training crop side in pixels (default: %(default)s)")
    parser.add_argument("--style-size", type=utils.positive_int, default=128,
                        help="style images' shorter side in pixels (default: %(default)s)")
    parser.add_argument("--steps", type=utils.positive_int, default=200,
                        help="training steps of each model (default: %(default)s)")
    parser.add_argument("--batch-size", type=utils.positive_int, default=4,
                        help="training batch (default: %(default)s)")
    parser.add_argument("--precision", default="fp32", choices=utils.PRECISIONS,
                        help="training precision, the same for every model (default: %(default)s)")
    parser.add_argument("--render-size", type=utils.positive_int, default=512,
                        help="side of the square frame of the speed measurement (default: %(default)s)")
    parser.add_argument("--rounds", type=utils.positive_int, default=5,
                        help="alternating timing rounds per model (default: %(default)s)")
    parser.add_argument("--repeats", type=utils.positive_int, default=2,
                        help="timed calls per round, at least (default: %(default)s)")
    parser.add_argument("--seconds", type=utils.positive_float, default=2.0,
                        help="timed seconds per round, at least (default: %(default)s)")
    parser.add_argument("--json", default="conditional.json", help="where the numbers go (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    device = utils.choose_device(args.device)
    args.device = device.type
    parts = set(args.parts.split(","))
    if unknown := parts - {"size", "quality", "speed"}:
        raise utils.UserError(f"--parts: unknown {sorted(unknown)[0]} (choose from size, quality, speed)")
    results = {"machine": model_files.machine_description(device), "threads": torch.get_num_threads(),
               "command": model_files.command_line("benchmarks/conditional.py", argv)}
    print(f"{results['machine']}, {results['threads']} threads")
    trained = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        if "size" in parts:
            results["size"] = size_rows(folder)
        if "quality" in parts:
            results["quality"], results["mixing"], trained = quality_rows(folder, args, device)
        if "speed" in parts:
            results["speed"] = speed_rows(trained, args, device)
    with utils.atomic_file(args.json) as temp:
        temp.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    utils.run_main(main)
