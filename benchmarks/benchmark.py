"""Measure this suite's fast paths against the plain eager baseline, in one run on one machine.

    python benchmarks/benchmark.py                      # everything: a table on stdout, the numbers in benchmark.json
    python benchmarks/benchmark.py --parts render --sizes 256
    python benchmarks/benchmark.py --quick              # small sizes and few steps, a minute or two

Baseline = what the original scripts and the PyTorch example do: eager fp32, NCHW, batch 1, under
no_grad for rendering; for training the plain loop (content through all four VGG layers, a host sync
for the loss every step, fp32). The machine's own limit is measured too (matmul GFLOP/s per
precision), so each rendering row shows the share of the compute-bound limit it reaches.
Precisions the hardware only emulates (bf16 on CPUs without AVX512-BF16/AMX, fp16 on the CPU) are
skipped unless named with --precisions: they run at a fraction of fp32's speed.
"""

import argparse
import copy
import csv
import json
import math
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent  # the repository root
sys.path.insert(0, str(ROOT))  # the suite's modules live at the top level
sys.path.insert(0, str(ROOT / "tools"))  # make_demo_data

import make_demo_data

import train
import utils
from style_transfer import image_io, model_files, rendering, training_data, video_io
from transformer_net import TransformerNet
from vgg import content_loss, gram_matrix, load_vgg16, style_loss

PHOTO = ROOT / "images/content-images/coffee.jpg"
STYLE = ROOT / "images/style-images/stained-glass.png"
MODELS = [ROOT / "models/blend.pth", ROOT / "models/stained-glass.pth"]  # the first one present is used
SIZES = {"256": (256, 256), "720p": (1280, 720), "1080p": (1920, 1080)}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def timed(function: Callable[[], object], device: torch.device, min_repeats: int = 2,
          min_seconds: float = 2.0) -> float:
    """Seconds per call: one warm-up call, then at least `min_repeats` calls and `min_seconds`."""
    function()
    synchronize(device)
    repeats, start = 0, time.perf_counter()
    while repeats < min_repeats or time.perf_counter() - start < min_seconds:
        function()
        synchronize(device)
        repeats += 1
    return (time.perf_counter() - start) / repeats


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def native_precisions(device: torch.device) -> list[str]:
    if device.type == "cuda":
        return ["fp32", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])
    return ["fp32"] + (["bf16"] if utils.cpu_has_fast_bf16() else [])


# ---------------------------------------------------------------- the machine's limit

def matmul_gflops(precision: str, device: torch.device, n: int = 2048) -> float:
    a = torch.randn(n, n, device=device).to(DTYPES[precision])
    b = torch.randn(n, n, device=device).to(DTYPES[precision])
    seconds = timed(lambda: a @ b, device, min_repeats=3, min_seconds=1.0)
    return 2 * n**3 / seconds / 1e9


def network_gflop(width: int, height: int) -> float:
    """Multiply-adds of every convolution (x2) for one frame: the network's arithmetic, in GFLOP."""
    model, total = TransformerNet(), 0

    def count(module: torch.nn.Conv2d, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        total += 2 * output[0].numel() * kernel

    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(count)
    with torch.no_grad():  # shapes only: the meta device does no arithmetic
        model.to("meta")(torch.zeros(1, 3, height, width, device="meta"))
    return total / 1e9


# ---------------------------------------------------------------- rendering

def shipped_model() -> Path | None:
    return next((path for path in MODELS if path.exists()), None)


def demo_model(device: torch.device) -> tuple[TransformerNet, str]:
    if path := shipped_model():
        return model_files.load_transformer(path, device), str(path.relative_to(ROOT))
    torch.manual_seed(0)
    return TransformerNet().to(device).eval(), "untrained TransformerNet (no shipped model found)"


def photo_batch(width: int, height: int, batch: int, device: torch.device) -> torch.Tensor:
    image = Image.open(PHOTO).convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    return image_io.image_to_tensor(image).unsqueeze(0).repeat(batch, 1, 1, 1).to(device)


def psnr(result: torch.Tensor, reference: torch.Tensor) -> float:
    mse = (result.round() - reference.round()).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def benchmark_rendering(args: argparse.Namespace, device: torch.device, limits: dict[str, float]) -> list[dict]:
    model, model_name = demo_model(device)
    print(f"\nrendering with {model_name}")
    rows = []
    for size_name in args.sizes:
        size_rows = rendering_rows(model, size_name, args, device, limits)
        for row in size_rows:
            row["speedup"] = row["fps"] / size_rows[0]["fps"]
            print(format_render_row(row))
        rows += size_rows
    return rows


def rendering_rows(model: TransformerNet, size_name: str, args: argparse.Namespace, device: torch.device,
                   limits: dict[str, float]) -> list[dict]:
    """The baseline first, then every fast path at one size."""
    width, height = SIZES[size_name]
    gflop = network_gflop(width, height)
    frame = photo_batch(width, height, 1, device)

    def baseline() -> torch.Tensor:
        with torch.no_grad():
            return model(frame).clamp(0, 255)

    torch.backends.cudnn.benchmark = False  # the example leaves cuDNN's autotuner off
    reference = baseline()
    rows = [render_row(size_name, "baseline: eager fp32 NCHW, batch 1", "fp32", 1,
                       timed(baseline, device, args.repeats, args.seconds), gflop, limits, math.inf)]
    torch.backends.cudnn.benchmark = True  # as render_video.py: one size, tuned once

    def measure(network: torch.nn.Module, precision: str, batch: int, name: str, layout=torch.contiguous_format):
        frames = photo_batch(width, height, batch, device).contiguous(memory_format=layout)
        seconds = timed(lambda: rendering.stylize(network, frames, precision), device, args.repeats, args.seconds)
        quality = psnr(rendering.stylize(network, frames[:1], precision), reference)
        rows.append(render_row(size_name, name, precision, batch, seconds / batch, gflop, limits, quality))

    for precision in args.precisions:
        prepared = rendering.prepare_for_rendering(copy.deepcopy(model), precision)  # as render_*.py do
        converted = weight_dtype(prepared) != torch.float32
        kind = "fp32" if precision == "fp32" else f"{precision} weights" if converted else f"{precision} autocast"
        for batch in [1] + args.batches:
            measure(prepared, precision, batch, f"stylize {kind} NCHW, batch {batch}")
        measure(prepared.to(memory_format=torch.channels_last), precision, 1,
                f"stylize {kind} channels_last, batch 1", torch.channels_last)
        if converted:  # the alternative it replaces: autocast over fp32 weights
            measure(model, precision, 1, f"stylize {precision} autocast NCHW, batch 1")
    if args.compile:
        rows += compiled_rows(model, args, device, size_name, gflop, limits, reference)
    return rows


def compiled_rows(model: TransformerNet, args: argparse.Namespace, device: torch.device, size_name: str,
                  gflop: float, limits: dict[str, float], reference: torch.Tensor) -> list[dict]:
    """rendering.stylize with --compile, batch 1 and the largest batch; the first call (compilation) is timed apart."""
    rows = []
    width, height = SIZES[size_name]
    for precision in args.precisions:
        torch._dynamo.reset()
        compiled = rendering.prepare_for_rendering(copy.deepcopy(model), precision, compile=True)
        for batch in [1, max(args.batches, default=1)]:
            frames = photo_batch(width, height, batch, device)
            start = time.perf_counter()
            quality = psnr(rendering.stylize(compiled, frames, precision)[:1], reference)
            synchronize(device)
            warm_up = time.perf_counter() - start
            seconds = timed(lambda m=compiled, f=frames, p=precision: rendering.stylize(m, f, p), device,
                            args.repeats, args.seconds)
            rows.append(render_row(size_name, f"stylize {precision} --compile, batch {batch}", precision, batch,
                                   seconds / batch, gflop, limits, quality))
            rows[-1]["compile_s"] = warm_up
    return rows


def weight_dtype(network: torch.nn.Module) -> torch.dtype:
    return next(network.parameters()).dtype


def render_row(size: str, name: str, precision: str, batch: int, seconds_per_frame: float, gflop: float,
               limits: dict[str, float], quality: float) -> dict:
    achieved = gflop / seconds_per_frame
    return {"size": size, "path": name, "precision": precision, "batch": batch, "fps": 1 / seconds_per_frame,
            "gflop_per_frame": gflop, "gflops": achieved, "limit_share": achieved / limits[precision],
            "psnr_db": quality}


def format_render_row(row: dict) -> str:
    quality = "exact" if math.isinf(row["psnr_db"]) else f"{row['psnr_db']:.1f} dB"
    warm_up = f" | first call {row['compile_s']:.0f} s" if "compile_s" in row else ""
    return (f"  {row['size']:>6} | {row['path']:<42} | {row['fps']:8.3f} fps | x{row['speedup']:.2f} | "
            f"{row['gflops']:6.1f} GFLOP/s = {100 * row['limit_share']:3.0f}% of {row['precision']} matmul | "
            f"PSNR {quality}{warm_up}")


# ---------------------------------------------------------------- video

def make_clip(path: Path, seconds: float, width: int = 256, height: int = 144) -> None:
    ffmpeg = video_io.find_ffmpeg()
    if ffmpeg is None:
        raise utils.UserError("the video benchmark needs an ffmpeg binary (pip install imageio-ffmpeg)")
    subprocess.run([ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=24",
                    "-f", "lavfi", "-i", "sine=frequency=440", "-t", str(seconds), "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)], check=True)


# Peak RSS from /proc's VmHWM: getrusage's ru_maxrss survives exec on Linux, so a child started by a big
# benchmark process would report the parent's peak.
_CHILD = """import importlib, resource, sys, time
script = importlib.import_module(sys.argv[1])
start = time.perf_counter()
script.main(sys.argv[2:])
seconds = time.perf_counter() - start
try:
    peak_kib = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
except OSError:
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
print("BENCH", seconds, peak_kib)
"""


def run_measured(script: str, *args: str) -> tuple[float, float]:
    """Run `script`.main(args) (e.g. "render_video") in a fresh process: the seconds main() took and the
    process's peak RSS in MiB."""
    result = subprocess.run([sys.executable, "-c", _CHILD, script, *args], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise utils.UserError(f"{script}.py {' '.join(args)} failed: {result.stderr.strip().splitlines()[-1:]}")
    seconds, rss_kib = result.stdout.split("BENCH")[-1].split()
    return float(seconds), int(rss_kib) / 1024


def render_clip(clip: Path, output: Path, model: Path, batch: int, device: torch.device) -> tuple[float, float]:
    """Wall seconds of render_video.main and the process's peak RSS in MiB (a fresh process each time)."""
    return run_measured("render_video", "--input", str(clip), "--model", str(model), "--save-name", str(output),
                        "--batch-size", str(batch), "--device", device.type,
                        "--no-temporal")  # the pipeline of decoder, network and encoder alone (flicker.py: --temporal)


def benchmark_video(args: argparse.Namespace, device: torch.device) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        model_path = shipped_model() or folder / "model.pth"
        if not model_path.exists():
            torch.manual_seed(0)
            torch.save(TransformerNet().state_dict(), model_path)
        short, long = folder / "short.mp4", folder / "long.mp4"
        make_clip(short, args.clip_seconds)
        make_clip(long, 10 * args.clip_seconds)
        frames = round(24 * args.clip_seconds)
        short_s, short_rss = render_clip(short, folder / "a.mp4", model_path, args.video_batch, device)
        long_s, long_rss = render_clip(long, folder / "b.mp4", model_path, args.video_batch, device)
        precision = utils.choose_precision("auto", device)
        model = model_files.load_transformer(model_path, device)
        model = rendering.prepare_for_rendering(model, precision)  # as render_video
    batch = photo_batch(256, 144, args.video_batch, device)
    network_fps = args.video_batch / timed(lambda: rendering.stylize(model, batch, precision), device, args.repeats,
                                                args.seconds)
    result = {"clip": "256x144, 24 fps, with sound", "frames_short": frames, "frames_long": 10 * frames,
              "batch": args.video_batch, "precision": precision, "network_fps": network_fps,
              "end_to_end_fps_long": 10 * frames / long_s, "end_to_end_fps_short": frames / short_s,
              "peak_rss_mib_short": short_rss, "peak_rss_mib_long": long_rss}
    result["end_to_end_share"] = result["end_to_end_fps_long"] / network_fps
    result["rss_growth"] = long_rss / short_rss - 1
    print(f"\nvideo ({result['clip']}, batch {args.video_batch}, {precision}): network alone "
          f"{network_fps:.2f} fps; render_video.py end to end {result['end_to_end_fps_long']:.2f} fps on "
          f"{10 * frames} frames = {100 * result['end_to_end_share']:.0f}% of it "
          f"({result['end_to_end_fps_short']:.2f} fps on {frames} frames, start-up included)")
    print(f"  peak RSS: {short_rss:.0f} MiB for {frames} frames, {long_rss:.0f} MiB for {10 * frames} frames "
          f"({100 * result['rss_growth']:+.1f}%)")
    return result


# ---------------------------------------------------------------- training

def write_training_crops(folder: Path, size: int, count: int = 16) -> None:
    """`count` of make_demo_data.py's crops of the bundled photos, taken in turn from each photo."""
    photos = image_io.list_images(ROOT / "images/content-images")
    per_photo = [make_demo_data.crops(image_io.load_rgb(photo), size) for photo in photos]
    for i in range(count):
        per_photo[i % len(per_photo)][i // len(per_photo)].save(folder / f"{i:02d}.png")


def baseline_training(data: Path, args: argparse.Namespace, device: torch.device) -> tuple[float, float]:
    """The plain loop of the original scripts: fp32, content through all of VGG, .item() every step."""
    torch.manual_seed(42)  # train.py's default seed: the same initial weights and data order
    torch.backends.cudnn.benchmark = False
    model = TransformerNet().to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    vgg = load_vgg16("random").to(device)
    with torch.no_grad():
        style = image_io.image_to_tensor(image_io.load_rgb(STYLE, args.train_size)).unsqueeze(0).to(device)
        style_grams = [[gram_matrix(f) for f in vgg(style)]]
    dataset = training_data.ImageFolderDataset(data, args.train_size)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=training_data.EpochBatchSampler(len(dataset), 4, 42, 0))
    losses, step, start = [], 0, 0.0
    while step < args.train_steps:
        for batch in loader:
            batch = batch.to(device)
            stylised = model(batch)
            content_features, stylised_features = vgg(batch), vgg(stylised)
            loss = 1e5 * content_loss(stylised_features, content_features.relu2_2) + \
                1e10 * style_loss(stylised_features, style_grams, [1.0])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if step == 1:  # timed from the end of the first step, as train.py's log is
                start = time.perf_counter()
            if step == args.train_steps:
                break
        loader.batch_sampler.epoch += 1
    synchronize(device)
    return 4 * (args.train_steps - 1) / (time.perf_counter() - start), sum(losses[-10:]) / len(losses[-10:])


def ours_training(data: Path, args: argparse.Namespace, device: torch.device, precision: str,
                  compile: bool = False) -> tuple[float, float]:
    """train.py itself, timed from the end of its first step to the last (from its CSV log's wall clock)."""
    interval = 10 if args.train_steps % 10 == 0 and args.train_steps >= 20 else 1  # its host syncs, as in real runs
    with tempfile.TemporaryDirectory() as out:
        train.main([*(["--compile"] if compile else []),
                    "--datapath", str(data), "--stylepath", str(STYLE), "--style-size", str(args.train_size),
                    "--image-size", str(args.train_size), "--batch-size", "4", "--max-steps", str(args.train_steps),
                    "--epochs", "100000", "--log-interval", str(interval), "--vgg-weights", "random",
                    "--device", device.type, "--precision", precision, "--savename", "benchmark.pth",
                    "--save-dir", out, "--log-dir", out, "--checkpoint-dir", out])
        with open(Path(out) / "benchmark.csv", newline="") as log:
            rows = list(csv.DictReader(log))
    elapsed = float(rows[-1]["elapsed_s"]) - float(rows[0]["elapsed_s"])
    last = [float(r["total"]) for r in rows[-10 // interval:]]  # each row: the mean over `interval` steps
    return 4 * (int(rows[-1]["step"]) - int(rows[0]["step"])) / elapsed, sum(last) / len(last)


def benchmark_training(args: argparse.Namespace, device: torch.device) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        write_training_crops(Path(folder), args.train_size)
        images_per_s, loss = baseline_training(Path(folder), args, device)
        rows.append({"path": "baseline: plain fp32 loop", "images_per_s": images_per_s, "loss": loss})
        for precision in args.precisions:
            images_per_s, loss = ours_training(Path(folder), args, device, precision)
            rows.append({"path": f"train.py --precision {precision}", "images_per_s": images_per_s, "loss": loss})
        for precision in args.precisions if args.compile else []:
            images_per_s, loss = ours_training(Path(folder), args, device, precision, compile=True)
            rows.append({"path": f"train.py --precision {precision} --compile", "images_per_s": images_per_s,
                         "loss": loss})
    print(f"\ntraining: batch 4, {args.train_size}x{args.train_size}, {args.train_steps} steps, random VGG16 "
          "(loss = mean total loss of the last 10 steps)")
    for row in rows:
        row["speedup"] = row["images_per_s"] / rows[0]["images_per_s"]
        row["loss_change"] = row["loss"] / rows[0]["loss"] - 1
        print(f"  {row['path']:<36} | {row['images_per_s']:6.2f} images/s | x{row['speedup']:.2f} | "
              f"loss {row['loss']:.4g} ({100 * row['loss_change']:+.2f}% against the baseline)")
    return rows


# ---------------------------------------------------------------- main

def machine(device: torch.device) -> dict:
    return {"device": model_files.machine_description(device), "torch": torch.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": utils.cpu_has_fast_bf16() if device.type == "cpu" else torch.cuda.is_bf16_supported()}


def build_parser() -> argparse.ArgumentParser:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="device to measure (default: %(default)s)")
    parser.add_argument("--parts", default="render,video,train", help="what to measure (default: %(default)s)")
    parser.add_argument("--sizes", default="256,720p,1080p", help="rendering sizes (default: %(default)s)")
    parser.add_argument("--precisions", default=None,
                        help="fast-path precisions to measure (default: those the device runs natively)")
    parser.add_argument("--batches", default="2,4", help="batch sizes tried besides 1 (default: %(default)s)")
    parser.add_argument("--repeats", type=utils.positive_int, default=2,
                        help="timed calls per measurement, at least (default: %(default)s)")
    parser.add_argument("--seconds", type=utils.positive_float, default=2.0,
                        help="timed seconds per measurement, at least (default: %(default)s)")
    parser.add_argument("--clip-seconds", type=utils.positive_float, default=2.0,
                        help="length of the short clip; the long one is 10x (default: %(default)s)")
    parser.add_argument("--video-batch", type=utils.positive_int, default=None,
                        help="render_video.py --batch-size (default: its own, 4 on CUDA and 1 elsewhere)")
    parser.add_argument("--train-size", type=utils.positive_int, default=256,
                        help="training crop size (default: %(default)s)")
    parser.add_argument("--train-steps", type=utils.positive_int, default=50,
                        help="training steps per loop (default: %(default)s)")
    parser.add_argument("--compile", action="store_true",
                        help="also measure --compile (rendering: batch 1 and the largest batch; training)")
    parser.add_argument("--quick", action="store_true",
                        help="256 only, batch 2, 1 s clips, 96-pixel crops, 12 training steps")
    parser.add_argument("--json", default="benchmark.json", help="where the numbers go (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.sizes, args.batches, args.clip_seconds, args.train_size, args.train_steps = "256", "2", 1.0, 96, 12
    device = utils.choose_device(args.device)
    args.video_batch = args.video_batch or rendering.default_batch_size(device)  # render_video.py's default
    parts = set(args.parts.split(","))
    args.sizes = [s for s in args.sizes.split(",") if s]
    if unknown := [s for s in args.sizes if s not in SIZES]:
        raise utils.UserError(f"--sizes: unknown {unknown[0]} (choose from {', '.join(SIZES)})")
    args.batches = [int(b) for b in args.batches.split(",") if b]
    args.precisions = args.precisions.split(",") if args.precisions else native_precisions(device)
    for precision in args.precisions:
        if precision not in DTYPES:
            raise utils.UserError(f"--precisions: unknown {precision} (choose from fp32, bf16, fp16)")
        utils.choose_precision(precision, device)
    results = {"machine": machine(device), "command": model_files.command_line("benchmark.py", argv)}
    print(f"{results['machine']['device']}, {torch.get_num_threads()} threads, "
          f"CPU capability {results['machine']['cpu_capability']}, native bf16: {results['machine']['native_bf16']}")

    limits = {p: matmul_gflops(p, device) for p in sorted({"fp32", *args.precisions, "bf16"} & set(DTYPES))
              if p != "fp16" or device.type == "cuda"}
    limits.setdefault("fp16", math.nan)
    results["matmul_gflops"] = limits
    print("matmul 2048x2048: " + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in limits.items() if not math.isnan(v)))
    results["network_gflop_per_frame"] = {s: network_gflop(*SIZES[s]) for s in SIZES}
    print("network: " + ", ".join(f"{s} {v:.1f} GFLOP/frame" for s, v in results["network_gflop_per_frame"].items()))
    if "render" in parts:
        results["render"] = benchmark_rendering(args, device, limits)
    if "video" in parts:
        results["video"] = benchmark_video(args, device)
    if "train" in parts:
        results["train"] = benchmark_training(args, device)
    with utils.atomic_path(args.json) as temp:
        temp.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    utils.run_main(main)
