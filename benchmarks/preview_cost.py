"""What the training previews cost (train.py --preview-interval): timed runs with and without them, in ABBA
order, at the training defaults (256-pixel crops, batch 4, the VGG16 architecture: --vgg-weights random costs
what imagenet costs), on crops of the bundled photos.

    python benchmarks/preview_cost.py --steps 4 --preview-interval 2 --json benchmarks/preview-cost-cpu-2core.json

Each run trains --steps steps; the runs with previews add one every --preview-interval steps (a row of the
bundled photos, shorter side 256). Per preview = (time with - time without) / previews, from the runs' own
wall time (model provenance, wall_time_s: the training loop, previews included, without start-up). The share at
the default interval (a preview at every checkpoint, 2000 steps) = per preview / (2000 x the time of a step).
The preview is also timed on its own (Previews.after_step, best of 3), which is steadier than the difference of
two noisy runs on a shared machine.
"""

import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import make_demo_data  # noqa: E402  (after the path above)

import train  # noqa: E402
import utils  # noqa: E402
from style_transfer import image_io, model_files, previews  # noqa: E402
from transformer_net import TransformerNet  # noqa: E402

DEFAULT_INTERVAL = 2000  # --checkpoint-interval's default, where the previews happen by default


def timed_run(folder: Path, name: str, steps: int, interval: int, device: str) -> float:
    """The training loop's wall time of one run (seconds)."""
    style = ROOT / "images/style-images/brush-strokes.jpg"
    train.main(["--datapath", str(folder / "crops"), "--stylepath", str(style),
                "--vgg-weights", "random", "--max-steps", str(steps), "--device", device, "--savename", name,
                "--save-dir", str(folder / "models"), "--log-dir", str(folder / "logs"),
                "--checkpoint-dir", str(folder / "checkpoints"), "--log-interval", str(steps),
                "--preview-interval", str(interval)])
    provenance = json.loads(model_files.provenance_path(folder / "models" / f"{name}.pth").read_text())
    return float(provenance["wall_time_s"])


def direct_preview_times(folder: Path, device: str, repeats: int = 3) -> list[float]:
    """The time of one preview row (Previews.after_step) of the bundled photos, measured on its own."""
    import argparse
    import time

    args = argparse.Namespace(preview_interval=1, checkpoint_interval=DEFAULT_INTERVAL, preview_images=None,
                              log_dir=str(folder / "direct"), tensorboard=False)
    torch_device = utils.choose_device(device)
    model = TransformerNet().to(torch_device).train()
    preview = previews.Previews(model, args, torch_device, utils.training_precision("auto", torch_device), "m", 0)
    times = []
    for step in range(1, repeats + 1):
        started = time.perf_counter()
        preview.after_step(step)
        times.append(time.perf_counter() - started)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=utils.positive_int, default=12, help="steps per run (default: %(default)s)")
    parser.add_argument("--preview-interval", type=utils.positive_int, default=4,
                        help="steps between previews in the runs with previews (default: %(default)s)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where to train (default: %(default)s)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    previews = args.steps // args.preview_interval
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        for index, photo in enumerate(image_io.list_images(ROOT / "images/content-images")):
            for number, crop in enumerate(make_demo_data.crops(image_io.load_rgb(photo), 256)):
                (folder / "crops").mkdir(exist_ok=True)
                crop.save(folder / "crops" / f"{index}-{number}.png")
        timed_run(folder, "warm-up", 2, 0, args.device)  # first-run costs (allocator, oneDNN) out of the way
        order = [("without", 0), ("with", args.preview_interval), ("with", args.preview_interval), ("without", 0)]
        times: dict[str, list[float]] = {"with": [], "without": []}
        for index, (kind, interval) in enumerate(order):
            times[kind].append(timed_run(folder, f"{kind}{index}", args.steps, interval, args.device))
            print(f"run {index + 1}/4 {kind:>7} previews: {times[kind][-1]:.2f} s", flush=True)
        direct = direct_preview_times(folder, args.device)
        print(f"a preview on its own: {', '.join(f'{t:.2f}' for t in direct)} s", flush=True)
    without, with_previews = (sum(times[k]) / len(times[k]) for k in ("without", "with"))
    step_s = without / args.steps
    preview_s = (with_previews - without) / previews
    share = preview_s / (DEFAULT_INTERVAL * step_s)
    direct_s = min(direct)
    direct_share = direct_s / (DEFAULT_INTERVAL * step_s)
    print(f"a training step: {step_s:.3f} s; a preview: {preview_s:.3f} s from the runs ({preview_s / step_s:.2f} "
          f"steps), {direct_s:.3f} s on its own; at the default interval ({DEFAULT_INTERVAL} steps): "
          f"{100 * share:.4f}% of the training time from the runs, {100 * direct_share:.4f}% from the direct time")
    if args.json:
        device = utils.choose_device(args.device)
        utils.save_json({"command": model_files.command_line("benchmarks/preview_cost.py", argv),
                         "machine": model_files.machine_description(device), "torch": torch.__version__,
                         "threads": torch.get_num_threads(), "steps": args.steps,
                         "preview_interval": args.preview_interval, "previews_per_run": previews,
                         "order": [k for k, _ in order], "times_s": times, "step_s": step_s, "preview_s": preview_s,
                         "default_interval": DEFAULT_INTERVAL, "share_at_default_interval": share,
                         "direct_preview_s": direct, "direct_share_at_default_interval": direct_share}, args.json)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    utils.run_main(main)
