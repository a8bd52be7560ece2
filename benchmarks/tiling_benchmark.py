"""Measure tiled rendering (render_image.py --tile) against the whole-image render: faithfulness, memory, cost.

    python benchmarks/tiling_benchmark.py                  # faithful, memory, cost: a table, the numbers in JSON
    python benchmarks/tiling_benchmark.py --parts faithful --photos images/content-images/coffee.jpg,my-photo.jpg
    python benchmarks/tiling_benchmark.py --parts large    # 7680x4320 and 12000x8000: heavy, minutes

Every render is render_image.py's main() in a fresh process, which reports its wall time and its own peak RSS
(VmHWM), so runs do not pollute each other. The test images are photos scaled (bicubic) to each size and saved
as JPEG at quality 95, the model is the shipped models/blend.pth, precision and device are render_image.py's
defaults unless --precision/--device say otherwise.

Parts:
  faithful  at each --faithful-sizes, --tile 256 (and --tile-stats exact) against --tile 0: PSNR, and the largest
            mean absolute difference of any row or column (a seam would show as one), in 8-bit steps
  memory    peak RSS at --memory-sizes (each 4x the pixels of the one before) tiled (--memory-tile) and whole,
            and a tiny render for the process's own start-up memory
  cost      wall time per megapixel at --cost-size: whole, and tiled at each --cost-tiles
  large     --large-sizes with the default settings (which tile them), and whole-image where tiling's estimate
            of it is below --whole-share of the RAM available now
"""

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent  # the repository root
sys.path.insert(0, str(ROOT))  # the suite's modules live at the top level

import utils
from benchmark import run_measured
from style_transfer import model_files, tiling

MODEL = ROOT / "models/blend.pth"
PHOTOS = sorted((ROOT / "images/content-images").glob("*.jpg"))


def size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def share(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1: {text}")
    return value


def write_photo(photo: Path, width: int, height: int, path: Path) -> Path:
    with Image.open(photo) as image:
        image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC).save(path, quality=95)
    return path


def render(source: Path, output: Path, args: argparse.Namespace, *flags: str) -> tuple[float, float]:
    """render_image.py in a fresh process: seconds and peak RSS in MiB."""
    return run_measured("render_image", "--content-path", str(source), "--model-path", str(args.model),
                        "--output-path", str(output), "--device", args.device, "--precision", args.precision, *flags)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(np.float64)


def compare(result: Path, reference: Path) -> dict:
    """PSNR and the worst row and column of the mean absolute difference, in 8-bit steps."""
    a, b = pixels(result), pixels(reference)
    mse = ((a - b) ** 2).mean()
    difference = np.abs(a - b).mean(axis=2)
    return {"psnr_db": math.inf if mse == 0 else 10 * math.log10(255**2 / mse),
            "worst_row": difference.mean(axis=1).max(), "worst_column": difference.mean(axis=0).max()}


def faithful(args: argparse.Namespace, folder: Path) -> list[dict]:
    rows = []
    print("\nfaithfulness: tiled against --tile 0 (PNG outputs, 8-bit steps)")
    for width, height in args.faithful_sizes:
        for photo in args.photos:
            source = write_photo(photo, width, height, folder / f"{photo.stem}-{width}x{height}.jpg")
            reference = folder / "whole.png"
            render(source, reference, args, "--tile", "0")
            for stats in args.faithful_stats:
                tiled = folder / "tiled.png"
                seconds, _ = render(source, tiled, args, "--tile", str(args.faithful_tile), "--tile-stats", stats)
                row = {"photo": photo.name, "size": f"{width}x{height}", "tile": args.faithful_tile, "stats": stats,
                       "seconds": seconds, **compare(tiled, reference)}
                rows.append(row)
                print(f"  {row['photo']:<12} {row['size']:>10} --tile {row['tile']} --tile-stats {stats:<6} | "
                      f"PSNR {row['psnr_db']:5.1f} dB | worst row {row['worst_row']:5.2f}, worst column "
                      f"{row['worst_column']:5.2f} | {seconds:5.1f} s")
    return rows


def memory(args: argparse.Namespace, folder: Path) -> dict:
    photo = args.photos[0]
    tiny = write_photo(photo, 64, 48, folder / "tiny.jpg")
    _, start_up = render(tiny, folder / "tiny-out.jpg", args, "--tile", "0")
    print(f"\nmemory: peak RSS (a 64x48 render, the process's start-up: {start_up:.0f} MiB)")
    rows = []
    for width, height in args.memory_sizes:
        source = write_photo(photo, width, height, folder / f"memory-{width}x{height}.jpg")
        row = {"size": f"{width}x{height}", "megapixels": width * height / 1e6}
        for name, tile in (("tiled", args.memory_tile), ("whole", 0)):
            seconds, peak = render(source, folder / "out.jpg", args, "--tile", str(tile))
            row[f"{name}_peak_mib"], row[f"{name}_seconds"] = peak, seconds
        row["whole_bytes_per_pixel"] = (row["whole_peak_mib"] - start_up) * 2**20 / (width * height)
        rows.append(row)
        growth = f" ({row['tiled_peak_mib'] / rows[0]['tiled_peak_mib']:.2f}x the first)" if len(rows) > 1 else ""
        print(f"  {row['size']:>10} | tiled (--tile {args.memory_tile}) {row['tiled_peak_mib']:6.0f} MiB{growth} | "
              f"whole {row['whole_peak_mib']:6.0f} MiB = start-up + {row['whole_bytes_per_pixel']:.0f} bytes/pixel")
    precision = args.precision if args.precision != "auto" else "bf16" if utils.cpu_has_fast_bf16() else "fp32"
    estimate = tiling.activation_bytes(1, precision, utils.choose_device(args.device))
    print(f"  tiling's estimate of a whole-image render ({precision}): {estimate} bytes/pixel")
    return {"start_up_mib": start_up, "tile": args.memory_tile, "sizes": rows, "estimate_bytes_per_pixel": estimate}


def cost(args: argparse.Namespace, folder: Path) -> list[dict]:
    width, height = args.cost_size
    source = write_photo(args.photos[0], width, height, folder / "cost.jpg")
    megapixels = width * height / 1e6
    tiles = [0, *args.cost_tiles]
    print(f"\ncost at {width}x{height}: whole-image render and tiled, {args.cost_repeats} rounds taking turns, "
          "the fastest of each")
    runs: dict[int, list[tuple[float, float]]] = {tile: [] for tile in tiles}
    for _ in range(args.cost_repeats):  # in turns, so that a change in the machine's load hits all alike
        for tile in tiles:
            runs[tile].append(render(source, folder / "out.jpg", args, "--tile", str(tile)))
    rows = []
    for tile in tiles:
        seconds, peak = min(runs[tile])
        rows.append({"tile": tile, "seconds": seconds, "seconds_per_megapixel": seconds / megapixels,
                     "peak_mib": peak, "all_seconds": [s for s, _ in runs[tile]]})
        ratio = f" = {seconds / rows[0]['seconds']:.2f}x the whole-image time" if tile else ""
        print(f"  --tile {tile:<5} | {seconds:6.1f} s | {seconds / megapixels:5.2f} s per megapixel{ratio} | "
              f"peak RSS {peak:.0f} MiB | all runs: {', '.join(f'{s:.1f}' for s, _ in runs[tile])} s")
    return rows


def large(args: argparse.Namespace, folder: Path) -> list[dict]:
    print("\nlarge images: render_image.py with its default settings, and --tile 0 where it fits")
    rows = []
    device = utils.choose_device(args.device)
    precision = utils.choose_precision(args.precision, device)
    for width, height in args.large_sizes:
        source = write_photo(args.photos[0], width, height, folder / f"large-{width}x{height}.jpg")
        chosen = tiling.choose_tile((width, height), None, precision, device)
        seconds, peak = render(source, folder / "out.jpg", args)
        row = {"size": f"{width}x{height}", "megapixels": width * height / 1e6, "default_tile": chosen,
               "seconds": seconds, "peak_mib": peak}
        needed = tiling.activation_bytes(width * height, precision, device)
        available = tiling.available_ram() if device.type != "cuda" else tiling.memory_budget(device)
        if needed < args.whole_share * available:  # never risk the machine (it may be shared)
            row["whole_seconds"], row["whole_peak_mib"] = render(source, folder / "out.jpg", args, "--tile", "0")
            whole = f"whole {row['whole_seconds']:6.1f} s, {row['whole_peak_mib']:6.0f} MiB"
        else:
            whole = f"whole not run: estimated {needed / 2**30:.1f} GiB, {available / 2**30:.1f} GiB available"
        rows.append(row)
        print(f"  {row['size']:>11} ({row['megapixels']:.0f} MP) | default (tiles of {chosen}) {seconds:6.1f} s, "
              f"peak RSS {peak:6.0f} MiB | {whole}")
        source.unlink()
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--parts", default="faithful,memory,cost", help="what to measure, of faithful, memory, cost, "
                        "large (default: %(default)s)")
    parser.add_argument("--photos", default=",".join(str(p.relative_to(ROOT)) for p in PHOTOS),
                        help="photos to scale to each size; memory, cost and large use the first (default: the "
                             "bundled ones, %(default)s)")
    parser.add_argument("--model", default=str(MODEL.relative_to(ROOT)), help="the model (default: %(default)s)")
    parser.add_argument("--device", default="auto", help="render_image.py --device (default: %(default)s)")
    parser.add_argument("--precision", default="auto", help="render_image.py --precision (default: %(default)s)")
    parser.add_argument("--faithful-sizes", default="1024x768", help="(default: %(default)s)")
    parser.add_argument("--faithful-tile", type=int, default=256, help="(default: %(default)s)")
    parser.add_argument("--faithful-stats", default="sample", help="--tile-stats values to compare, e.g. "
                        "sample,exact (default: %(default)s)")
    parser.add_argument("--memory-sizes", default="2048x1536,4096x3072", help="(default: %(default)s)")
    parser.add_argument("--memory-tile", type=int, default=1024, help="(default: %(default)s)")
    parser.add_argument("--cost-size", default="4096x3072", help="(default: %(default)s)")
    parser.add_argument("--cost-tiles", default="1024", help="(default: %(default)s)")
    parser.add_argument("--cost-repeats", type=utils.positive_int, default=1, help="(default: %(default)s)")
    parser.add_argument("--large-sizes", default="7680x4320,12000x8000", help="(default: %(default)s)")
    parser.add_argument("--whole-share", type=share, default=tiling.CPU_MEMORY_SHARE,
                        help="large: run the whole-image render too where tiling's estimate of it is below this "
                             "share of the memory available (default: %(default)s, as render_image.py's default)")
    parser.add_argument("--json", default="tiling.json", help="where the numbers go (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.photos = [Path(p) for p in args.photos.split(",") if p]
    for photo in [*args.photos, Path(args.model)]:
        utils.require_file(ROOT / photo if not photo.is_absolute() else photo, "--photos/--model")
    args.photos = [photo if photo.is_absolute() else ROOT / photo for photo in args.photos]
    args.model = Path(args.model) if Path(args.model).is_absolute() else ROOT / args.model
    args.faithful_sizes = [size(s) for s in args.faithful_sizes.split(",")]
    args.faithful_stats = args.faithful_stats.split(",")
    args.memory_sizes = [size(s) for s in args.memory_sizes.split(",")]
    args.cost_size = size(args.cost_size)
    args.cost_tiles = [int(t) for t in args.cost_tiles.split(",")]
    args.large_sizes = [size(s) for s in args.large_sizes.split(",")]
    device = utils.choose_device(args.device)
    results = {"machine": model_files.machine_description(device), "command": model_files.command_line(
        "benchmarks/tiling_benchmark.py", argv), "precision": utils.choose_precision(args.precision, device),
        "threads": torch.get_num_threads(), "load_average": os.getloadavg()}
    print(f"{results['machine']}; {results['threads']} threads (load average {results['load_average'][0]:.1f}); "
          f"precision {results['precision']}; model {args.model.relative_to(ROOT)}")
    parts = {"faithful": faithful, "memory": memory, "cost": cost, "large": large}
    if unknown := set(args.parts.split(",")) - set(parts):
        raise utils.UserError(f"--parts: unknown {unknown.pop()} (choose from {', '.join(parts)})")
    with tempfile.TemporaryDirectory() as folder:
        for part in args.parts.split(","):
            results[part] = parts[part](args, Path(folder))
            with utils.atomic_file(args.json) as temp:  # after every part: the parts done so far
                temp.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    utils.run_main(main)
