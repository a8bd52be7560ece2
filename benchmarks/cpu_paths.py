"""The CPU paths for running the network, measured in one run on one machine, in alternating (ABBA) order.

    nice -n 10 python benchmarks/cpu_paths.py --json benchmarks/cpu-2core-paths.json

First the machine's matmul rates (fp32, bf16), then at 720p, one frame at a time, rounds that run every path
once, in order and then in reverse order (A B C C B A ...), so that a change in the machine's load (shared
cores) falls on all paths alike; each path's time is the median over its rounds. The paths: eager fp32 (the
baseline: the PyTorch example's), eager with bf16 weights (PyTorch's default render on CPUs with native bf16),
channels_last, torch.compile (fp32 and bf16, freezing: utils.compile_network), torch.jit.freeze with
optimize_for_inference (prepacked oneDNN convolutions), ONNX Runtime on the file export.py writes, and, where
the openvino package is installed, OpenVINO on that file (f32 and bf16). Each path's PSNR is against the fp32
baseline's frame. Then, end to end in fresh processes: render_video.py on a 720p clip and render_image.py on
one 12-megapixel photo, against the eager fp32 per-frame time of the same size, with no flags (the default:
OpenVINO where it is installed) and with --runtime torch; and the bundled photo, where the set-up weighs most.
`--parts compile-cache`: --compile's warm-up in two fresh processes sharing a new on-disk cache (cold, then
warm).
"""

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmark.py, beside this file
import benchmark  # noqa: E402  (its helpers: the machine, the matmul rates, the network's GFLOP, PSNR)
import utils  # noqa: E402
from style_transfer import image_io, model_files, onnx_export, rendering  # noqa: E402

WIDTH, HEIGHT = 1280, 720  # --size changes them (a quick try)
PHOTO_SIZE = (4000, 3000)  # 12 megapixels; --photo-size


def torch_path(model: torch.nn.Module, precision: str) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda frame: rendering.stylize(model, frame, precision)


def eager(model: torch.nn.Module, precision: str, channels_last: bool = False) -> Callable:
    prepared = rendering.prepare_for_rendering(copy.deepcopy(model), precision)
    if channels_last:
        prepared = prepared.to(memory_format=torch.channels_last)
    return torch_path(prepared, precision)


def compiled(model: torch.nn.Module, precision: str) -> Callable:
    torch._dynamo.reset()
    return torch_path(rendering.prepare_for_rendering(copy.deepcopy(model), precision, compile=True), precision)


def jit_frozen(model: torch.nn.Module, precision: str, frame: torch.Tensor) -> Callable:
    """torch.jit.trace at this size, freeze, optimize_for_inference (oneDNN weights prepacked once)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    network = copy.deepcopy(model).to(dtype).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(network, frame.to(dtype))))

    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return traced(batch.to(dtype)).float().clamp(0, 255)

    return run


def onnx_runtime(model: torch.nn.Module, folder: Path) -> Callable:
    import onnxruntime

    path = folder / "model.onnx"
    onnx_export.write_onnx(onnx_export.export_graph(model, None, False, False), path, 1)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(batch: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"input": batch.numpy()})[0]).clamp(0, 255)

    return run


def openvino_path(model: torch.nn.Module, folder: Path, precision: str) -> Callable:
    """OpenVINO's CPU plugin on the file export.py writes, reshaped to the frame's size (static shapes), with
    its inference precision hint: f32, or bf16 (where the CPU has native bf16)."""
    import openvino

    path = folder / f"openvino-{precision}.onnx"  # its own export, inside its set-up time, as a render pays it
    onnx_export.write_onnx(onnx_export.export_graph(model, None, False, False), path, 1)
    core = openvino.Core()
    hint = {"fp32": "f32", "bf16": "bf16"}[precision]
    compiled_for: dict[tuple[int, ...], object] = {}

    def run(batch: torch.Tensor) -> torch.Tensor:
        shape = tuple(batch.shape)
        if shape not in compiled_for:
            graph = core.read_model(str(path))
            graph.reshape({graph.inputs[0].get_any_name(): list(shape)})
            compiled_for[shape] = core.compile_model(graph, "CPU", {
                "INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_NUM_THREADS": torch.get_num_threads()}).create_infer_request()
        request = compiled_for[shape]
        request.infer({0: batch.numpy()})
        return torch.from_numpy(request.get_output_tensor(0).data.copy()).clamp(0, 255)

    return run


def build_paths(model: torch.nn.Module, frame: torch.Tensor, folder: Path, bf16: bool) -> dict[str, tuple]:
    """name -> (function, set-up seconds); set-up includes the first call (compilation, tracing)."""
    builders: dict[str, Callable[[], Callable]] = {
        "eager fp32 (baseline)": lambda: eager(model, "fp32"),
        "eager fp32 channels_last": lambda: eager(model, "fp32", channels_last=True),
        "torch.compile fp32": lambda: compiled(model, "fp32"),
        "jit.freeze + optimize_for_inference fp32": lambda: jit_frozen(model, "fp32", frame),
        "ONNX Runtime fp32": lambda: onnx_runtime(model, folder),
    }
    if _openvino_version():
        builders["OpenVINO f32"] = lambda: openvino_path(model, folder, "fp32")
    if bf16:
        if _openvino_version():
            builders["OpenVINO bf16"] = lambda: openvino_path(model, folder, "bf16")
        builders.update({
            "eager bf16 weights (PyTorch's default)": lambda: eager(model, "bf16"),
            "eager bf16 channels_last": lambda: eager(model, "bf16", channels_last=True),
            "torch.compile bf16": lambda: compiled(model, "bf16"),
            "jit.freeze + optimize_for_inference bf16": lambda: jit_frozen(model, "bf16", frame),
        })
    paths = {}
    for name, build in builders.items():
        start = time.perf_counter()
        try:
            function = build()
            output = function(frame)
        except Exception as exc:  # a path this torch or machine lacks: recorded, the others go on
            print(f"  {name}: failed ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})")
            continue
        paths[name] = (function, time.perf_counter() - start, output)
        print(f"  {name}: ready in {paths[name][1]:.1f} s", flush=True)
    return paths


def alternate(paths: dict[str, tuple], frame: torch.Tensor, rounds: int) -> dict[str, list[float]]:
    """Seconds per frame of each path in every round; odd rounds go in reverse order (ABBA)."""
    names = list(paths)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            start = time.perf_counter()
            paths[name][0](frame)
            times[name].append(time.perf_counter() - start)
        print(f"  round {round_index + 1}/{rounds} done", flush=True)
    return times


END_TO_END_RUNTIMES = {"no flags": [], "--runtime torch": ["--runtime", "torch"]}  # the default, and PyTorch's
SMALL_PHOTO_RUNTIMES = {"no flags": [], "--runtime torch": ["--runtime", "torch"],
                        "--runtime openvino": ["--runtime", "openvino"]}


def end_to_end(folder: Path, model_path: Path, model: torch.nn.Module, args: argparse.Namespace) -> dict:
    """render_video.py and render_image.py, each in a fresh process, with no flags (the default runtime) and with
    --runtime torch, against eager fp32 per frame: a 720p clip, a 12-megapixel photo (its result also against the
    eager fp32 network's, PSNR) and the small bundled photo (where the set-up weighs most)."""
    clip = folder / "clip.mp4"
    benchmark.make_clip(clip, args.clip_seconds, WIDTH, HEIGHT)
    frames = round(24 * args.clip_seconds)
    photo = folder / "photo.png"
    Image.open(benchmark.PHOTO).convert("RGB").resize(PHOTO_SIZE, Image.Resampling.BICUBIC).save(photo)
    big = benchmark.photo_batch(*PHOTO_SIZE, 1, torch.device("cpu"))
    baseline = model_files.load_transformer(model_path)
    start = time.perf_counter()
    with torch.no_grad():
        reference = baseline(big).clamp(0, 255)
    measured = {"clip": f"{WIDTH}x{HEIGHT}, 24 fps, {frames} frames (testsrc2, with sound)", "frames": frames,
                "photo": f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} (coffee.jpg resized)",
                "photo_eager_fp32_s": time.perf_counter() - start, "small_photo": str(benchmark.PHOTO.name),
                "runs": []}
    for label, flags in END_TO_END_RUNTIMES.items():
        video_s, video_rss = benchmark.run_measured("render_video", "--input", str(clip), "--model", str(model_path),
                                                    "--save-name", str(folder / "out.mp4"), *flags)
        image_s, image_rss = benchmark.run_measured("render_image", "--content-path", str(photo), "--model-path",
                                                    str(model_path), "--output-path", str(folder / "out.png"), *flags)
        result = image_io.image_to_tensor(image_io.load_rgb(folder / "out.png")).unsqueeze(0)
        measured["runs"].append({"flags": label, "render_video_s": video_s, "render_video_peak_rss_mib": video_rss,
                                 "render_image_s": image_s, "render_image_peak_rss_mib": image_rss,
                                 "render_image_psnr_db_vs_fp32": benchmark.psnr(result, reference)})
        print(f"  {label}: done", flush=True)
    # The small photo on each runtime, in ABBA order: OpenVINO's set-up against PyTorch's, where it weighs most.
    small = {label: [] for label in SMALL_PHOTO_RUNTIMES}
    for label in [*SMALL_PHOTO_RUNTIMES, *reversed(SMALL_PHOTO_RUNTIMES)]:
        seconds, _ = benchmark.run_measured("render_image", "--content-path", str(benchmark.PHOTO), "--model-path",
                                            str(model_path), "--output-path", str(folder / "small.png"),
                                            *SMALL_PHOTO_RUNTIMES[label])
        small[label].append(seconds)
    measured["small_photo_s"] = {label: statistics.mean(times) for label, times in small.items()}
    cpu, precision = torch.device("cpu"), utils.choose_precision("auto", torch.device("cpu"))
    with Image.open(benchmark.PHOTO) as image:
        small_pixels = image.width * image.height
    measured["no_flags_runtime"] = {  # what --runtime auto chose for each, by utils.choose_runtime's rule
        "clip": utils.choose_runtime("auto", cpu, precision, work=lambda: (frames * WIDTH * HEIGHT, 2)),
        "photo": utils.choose_runtime("auto", cpu, precision, work=lambda: (PHOTO_SIZE[0] * PHOTO_SIZE[1], 1)),
        "small_photo": utils.choose_runtime("auto", cpu, precision, work=lambda: (small_pixels, 1))}
    return measured


# One fresh process: the compiled bf16 network's first call (the warm-up) and a later call, at WIDTH x HEIGHT.
_COMPILE_CHILD = """import sys, time
sys.path.insert(0, sys.argv[1])
import torch
import utils
from style_transfer import model_files, rendering
width, height = int(sys.argv[3]), int(sys.argv[4])
precision = utils.choose_precision("auto", torch.device("cpu"))
model = rendering.prepare_for_rendering(model_files.load_transformer(sys.argv[2]), precision, compile=True)
frame = torch.rand(1, 3, height, width) * 255
start = time.perf_counter()
rendering.stylize(model, frame, precision)
first = time.perf_counter() - start
start = time.perf_counter()
rendering.stylize(model, frame, precision)
print("BENCH", precision, first, time.perf_counter() - start)
"""


def compile_cache(folder: Path, model_path: Path) -> dict:
    """--compile's warm-up in two fresh processes sharing a new on-disk cache: cold, then warm (TorchInductor's
    FX graph and kernel caches, on by default in torch 2.x)."""
    import os
    import subprocess

    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(folder / "inductor-cache")}
    runs = []
    for label in ("cold cache", "warm cache"):
        result = subprocess.run([sys.executable, "-c", _COMPILE_CHILD, str(benchmark.ROOT), str(model_path),
                                 str(WIDTH), str(HEIGHT)], capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise utils.UserError(f"the --compile child failed: {result.stderr.strip().splitlines()[-1:]}")
        precision, first, later = result.stdout.split("BENCH")[-1].split()
        runs.append({"cache": label, "precision": precision, "first_call_s": float(first),
                     "later_call_s": float(later)})
        print(f"  --compile {precision} at {WIDTH}x{HEIGHT}, fresh process, {label}: first call {float(first):.1f} s, "
              f"then {float(later):.2f} s a frame", flush=True)
    return {"runs": runs}


def build_parser() -> argparse.ArgumentParser:
    parser = utils.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=utils.positive_int, default=4,
                        help="timed rounds over all paths, alternating in order and reverse order "
                             "(default: %(default)s)")
    parser.add_argument("--clip-seconds", type=utils.positive_float, default=2.0,
                        help="length of the 720p clip for render_video.py end to end (default: %(default)s)")
    parser.add_argument("--parts", default="paths,end-to-end",
                        help="paths (the alternating rounds), end-to-end (the scripts), compile-cache (--compile's "
                             "warm-up in fresh processes, cold and warm on-disk cache; default: %(default)s)")
    parser.add_argument("--size", default=f"{WIDTH}x{HEIGHT}", metavar="WxH",
                        help="frame size of the paths and the clip (default: %(default)s)")
    parser.add_argument("--photo-size", default=f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}", metavar="WxH",
                        help="the photo for render_image.py end to end (default: %(default)s)")
    parser.add_argument("--note", default="", help="a remark stored in the record, e.g. that the cores were shared "
                                                   "(default: none)")
    parser.add_argument("--json", default="cpu-paths.json", help="where the numbers go (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> None:
    global WIDTH, HEIGHT, PHOTO_SIZE
    args = build_parser().parse_args(argv)
    (WIDTH, HEIGHT), PHOTO_SIZE = _size(args.size, "--size"), _size(args.photo_size, "--photo-size")
    device = torch.device("cpu")
    results = {"machine": benchmark.machine(device), "command": model_files.command_line("benchmarks/cpu_paths.py",
                                                                                            argv),
               "note": args.note, "openvino": _openvino_version()}
    print(f"{results['machine']['device']}, {torch.get_num_threads()} threads, CPU capability "
          f"{results['machine']['cpu_capability']}, native bf16: {results['machine']['native_bf16']}")
    bf16 = utils.cpu_has_fast_bf16()
    limits = {p: benchmark.matmul_gflops(p, device) for p in (["fp32", "bf16"] if bf16 else ["fp32"])}
    results["matmul_gflops"] = limits
    gflop = benchmark.network_gflop(WIDTH, HEIGHT)
    results["network_gflop_per_frame"] = gflop
    print("matmul 2048x2048: " + ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in limits.items())
          + f"; network {gflop:.1f} GFLOP per {WIDTH}x{HEIGHT} frame")
    model_path = benchmark.shipped_model()
    if model_path is None:
        raise utils.UserError("no bundled model found (models/blend.pth)")
    model = model_files.load_transformer(model_path)
    results["model"] = str(model_path.relative_to(benchmark.ROOT))
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory() as folder:
        if "paths" in parts:
            results["paths"] = measure_paths(model, Path(folder), bf16, limits, gflop, args.rounds)
        if "end-to-end" in parts:
            results["end_to_end"] = report_end_to_end(end_to_end(Path(folder), model_path, model, args), results)
        if "compile-cache" in parts:
            print(f"\n--compile's warm-up at {WIDTH}x{HEIGHT}")
            results["compile_cache"] = compile_cache(Path(folder), model_path)
    with utils.atomic_path(args.json) as temp:
        temp.write_text(json.dumps(results, indent=1, default=str))
    print(f"\nwrote {args.json}")


def measure_paths(model: torch.nn.Module, folder: Path, bf16: bool, limits: dict[str, float], gflop: float,
                  rounds: int) -> list[dict]:
    frame = benchmark.photo_batch(WIDTH, HEIGHT, 1, torch.device("cpu"))
    print(f"\nsetting up the paths at {WIDTH}x{HEIGHT}")
    paths = build_paths(model, frame, folder, bf16)
    times = alternate(paths, frame, rounds)
    reference = paths["eager fp32 (baseline)"][2]
    baseline = statistics.median(times["eager fp32 (baseline)"])
    rows = []
    print(f"\n{WIDTH}x{HEIGHT}, batch 1, median of {rounds} alternating rounds")
    for name, (_, setup_s, output) in paths.items():
        seconds = statistics.median(times[name])
        precision = "bf16" if "bf16" in name else "fp32"
        row = {"path": name, "s_per_frame": seconds, "all_s": times[name], "setup_s": setup_s,
               "speedup": baseline / seconds, "gflops": gflop / seconds,
               "share_of_bf16_matmul": gflop / seconds / limits["bf16"] if "bf16" in limits else None,
               "share_of_own_matmul": gflop / seconds / limits[precision],
               "psnr_db_vs_fp32": benchmark.psnr(output, reference)}
        rows.append(row)
        quality = "exact" if row["psnr_db_vs_fp32"] == float("inf") else f"{row['psnr_db_vs_fp32']:.1f} dB"
        share = f"{100 * row['share_of_bf16_matmul']:3.0f}% of bf16 matmul, " if bf16 else ""
        print(f"  {name:<42} | {seconds:6.2f} s/frame | x{row['speedup']:.2f} | {row['gflops']:6.1f} GFLOP/s = "
              f"{share}{100 * row['share_of_own_matmul']:3.0f}% of {precision} matmul | PSNR {quality} | "
              f"set-up {setup_s:.1f} s")
    return rows


def report_end_to_end(measured: dict, results: dict) -> dict:
    paths = {row["path"]: row for row in results.get("paths", [])}
    frame_baseline = paths["eager fp32 (baseline)"]["s_per_frame"] if paths else None
    print(f"\nend to end, fresh processes: render_video.py {measured['frames']} frames of {WIDTH}x{HEIGHT}; "
          f"render_image.py {measured['photo']} (eager fp32 network alone {measured['photo_eager_fp32_s']:.1f} s) "
          f"and {measured['small_photo']}")
    for run in measured["runs"]:
        run["render_image_vs_eager_fp32"] = measured["photo_eager_fp32_s"] / run["render_image_s"]
        video = f"{run['render_video_s']:.1f} s"
        if frame_baseline:
            run["render_video_vs_eager_fp32"] = frame_baseline * measured["frames"] / run["render_video_s"]
            video += f" = x{run['render_video_vs_eager_fp32']:.2f} the eager fp32 per-frame baseline"
        print(f"  {run['flags']:<16} | render_video.py {video} | render_image.py {run['render_image_s']:.1f} s = "
              f"x{run['render_image_vs_eager_fp32']:.2f}, PSNR {run['render_image_psnr_db_vs_fp32']:.1f} dB vs fp32")
    print(f"  no flags chose: {measured['no_flags_runtime']}")
    print("  the small photo, mean of 2 in ABBA order: "
          + ", ".join(f"{label} {seconds:.2f} s" for label, seconds in measured["small_photo_s"].items()))
    return measured


def _size(text: str, flag: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise utils.UserError(f"{flag}: not WxH: {text!r}") from None
    return width, height


def _openvino_version() -> str | None:
    try:
        import openvino
    except ImportError:
        return None  # not installed: not measured
    return getattr(openvino, "__version__", "installed")


if __name__ == "__main__":
    utils.run_main(main)
