"""The GPU path: training in fp16 and bf16, resuming on CUDA, distillation, torchrun with 2 processes on one GPU,
and rendering images and videos with and without --compile. Every test here is marked `cuda`: skipped, with the
reason shown, where no CUDA device is present (conftest.py); `bash run_tests.sh` runs them where one is.

Tolerances: runs that must take the same steps are compared in float64 (see conftest.train_float64), to 1e-5 on
the weights and the log's 6 digits on the losses; renders on the GPU (fp16 autocast, or compiled) against the CPU's
fp32 render of the same model, to 40 dB PSNR (the rendering tests' bound for reduced precision)."""

import csv
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_render_video import make_clip

import distillation
import render_image
import render_video
import train
import utils
from conftest import (
    largest_difference,
    logged_losses,
    save_random_conditional_model,
    save_random_model,
    train_args,
    train_float64,
    video_frames,
    write_noise_image,
)

pytestmark = pytest.mark.cuda


def on_cuda(args: list[str]) -> list[str]:
    """Flags of a CPU test run (conftest.train_args), moved to the GPU."""
    args = list(args)
    args[args.index("--device") + 1] = "cuda"
    return args


def losses(log: Path) -> list[float]:
    with open(log) as file:
        return [float(row["total"]) for row in csv.DictReader(file)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def test_auto_precision_for_training_is_bf16_only_on_gpus_with_native_bf16():
    native = torch.cuda.get_device_capability() >= (8, 0)
    assert utils.training_precision("auto", torch.device("cuda")) == ("bf16" if native else "fp16")


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_training_in_reduced_precision_writes_a_model_with_finite_losses(tmp_path, dataset_dir, style_files,
                                                                         precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    train.main(on_cuda(train_args(dataset_dir, tmp_path, style_files[:2], "--precision", precision, "--max-steps", "4",
                                  "--checkpoint-interval", "2", "--savename", "m")))
    provenance = json.loads((tmp_path / "models/m.json").read_text())
    assert provenance["precision"] == precision and provenance["machine"].startswith("cuda:")
    assert all(math.isfinite(x) for x in losses(tmp_path / "logs/m.csv"))
    checkpoint = torch.load(tmp_path / "checkpoints/m_step0000002.pth", weights_only=True)
    assert bool(checkpoint["scaler"]) == (precision == "fp16")  # only fp16 scales its loss


def test_a_run_resumed_on_cuda_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    """The optimiser's state must land on the GPU: loaded before the model moved, Adam's first step failed."""
    for i in range(6):
        write_noise_image(tmp_path / "photos" / f"{i}.jpg", 40, 40 + i, seed=i)
    style = write_noise_image(tmp_path / "style.png", 48, 48, seed=100)
    common = ("--batch-size", "2", "--epochs", "3", "--checkpoint-interval", "4")
    full = train_float64(tmp_path, tmp_path / "full", tmp_path / "photos", style, *common, "--max-steps", "6",
                         device="cuda")
    part = train_float64(tmp_path, tmp_path / "part", tmp_path / "photos", style, *common, "--max-steps", "4",
                         device="cuda")
    train_float64(tmp_path, part, tmp_path / "photos", style, *common, "--max-steps", "6", "--resume",
                  part / "checkpoints/m_step0000004.pth", device="cuda")
    assert logged_losses(part) == logged_losses(full)
    assert largest_difference(part, full) < 1e-5


def test_a_run_with_temporal_weight_resumed_on_cuda_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    """The stability loss draws its random views and noise on the GPU: a resumed run must draw what the
    uninterrupted one drew (its generator is seeded per step), and the checkpoint keeps the GPU's RNG state."""
    for i in range(6):
        write_noise_image(tmp_path / "photos" / f"{i}.jpg", 40, 40 + i, seed=i)
    style = write_noise_image(tmp_path / "style.png", 48, 48, seed=100)
    common = ("--batch-size", "2", "--epochs", "3", "--checkpoint-interval", "4", "--temporal-weight", "1")
    full = train_float64(tmp_path, tmp_path / "full", tmp_path / "photos", style, *common, "--max-steps", "6",
                         device="cuda")
    part = train_float64(tmp_path, tmp_path / "part", tmp_path / "photos", style, *common, "--max-steps", "4",
                         device="cuda")
    checkpoint = part / "checkpoints/m_step0000004.pth"
    assert len(torch.load(checkpoint, weights_only=True)["cuda_rng"]) == torch.cuda.device_count()
    train_float64(tmp_path, part, tmp_path / "photos", style, *common, "--max-steps", "6", "--resume", checkpoint,
                  device="cuda")
    assert logged_losses(part) == logged_losses(full)
    assert all(float(row["stability"]) > 0 for row in logged_losses(full))
    assert largest_difference(part, full) < 1e-5


def synchronising_calls(run) -> int:
    """How many times `run()` made the host wait for the GPU (torch.cuda.set_sync_debug_mode's warnings)."""
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.parametrize("script", ["train.py", "distillation.py"])
def test_conditional_and_temporal_training_steps_do_not_wait_for_the_gpu(tmp_path, dataset_dir, style_files, script):
    """--conditional and --temporal-weight made tensors on the host and copied them over every step (the styles,
    their one-hot rows, the random views; distillation's per-teacher selection), each copy a wait for the GPU. Runs
    of 3 and 6 steps (log and checkpoint only at the end) must wait equally often: no wait per step."""
    def run(steps: int, out: Path) -> None:
        flags = ["--conditional", "--temporal-weight", "1", "--workers", "0", "--max-steps", str(steps), "--epochs",
                 "10", "--log-interval", "1000", "--checkpoint-interval", "1000"]
        if script == "train.py":
            train.main(on_cuda(train_args(dataset_dir, out, style_files[:2], "--savename", "m", *flags)))
        else:
            teachers = [save_random_model(tmp_path / "teachers" / f"t{i}.pth", seed=i) for i in range(2)]
            distillation.main(["--datapath", str(dataset_dir), "--teachers", ",".join(map(str, teachers)),
                               "--vgg-weights", "random", "--image-size", "32", "--batch-size", "2", "--device",
                               "cuda", "--save-dir", str(out / "models"), "--log-dir", str(out / "logs"),
                               "--checkpoint-dir", str(out / "checkpoints"), "--savename", "m", *flags])

    run(2, tmp_path / "warm-up")  # cuDNN's choices, the caching allocator's first blocks
    short = synchronising_calls(lambda: run(3, tmp_path / "three"))
    long = synchronising_calls(lambda: run(6, tmp_path / "six"))
    print(f"synchronising calls: 3 steps {short}, 6 steps {long}")
    assert long == short


@pytest.mark.parametrize("kind", ["arbitrary", "add-style"])
def test_arbitrary_and_add_style_steps_do_not_wait_for_the_gpu(tmp_path, dataset_dir, style_files, kind):
    """--arbitrary copies each step's style crops to the GPU without a wait (a plain copy from pageable memory waited
    every step); --add-style makes its style row once. Runs of 3 and 6 steps must wait equally often: no wait per
    step."""
    base = save_random_conditional_model(tmp_path / "base.pth", ("warm", "cold"))
    styles = style_files[0].parent  # a folder of three style pictures

    def run(steps: int, out: Path) -> None:
        flags = ["--arbitrary", "--style-dir", str(styles)] if kind == "arbitrary" else [
            "--add-style", str(style_files[0]), "--init-from", str(base)]
        train.main(["--datapath", str(dataset_dir), "--vgg-weights", "random", "--image-size", "32", "--batch-size",
                    "2", "--device", "cuda", "--save-dir", str(out / "models"), "--log-dir", str(out / "logs"),
                    "--checkpoint-dir", str(out / "checkpoints"), "--savename", "m", "--workers", "0",
                    "--max-steps", str(steps), "--epochs", "10", "--log-interval", "1000",
                    "--checkpoint-interval", "1000", *flags])

    run(2, tmp_path / "warm-up")
    short = synchronising_calls(lambda: run(3, tmp_path / "three"))
    long = synchronising_calls(lambda: run(6, tmp_path / "six"))
    print(f"synchronising calls ({kind}): 3 steps {short}, 6 steps {long}")
    assert long == short


@pytest.mark.parametrize("before,after", [("bf16", "fp16"), ("fp16", "bf16")])
def test_a_run_resumes_on_cuda_in_another_precision(tmp_path, dataset_dir, style_files, before, after):
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    args = on_cuda(train_args(dataset_dir, tmp_path, style_files[:1], "--savename", "m", "--checkpoint-interval", "2"))
    train.main([*args, "--precision", before, "--max-steps", "2"])
    train.main([*args, "--precision", after, "--max-steps", "4", "--resume",
                str(tmp_path / "checkpoints/m_step0000002.pth")])
    assert json.loads((tmp_path / "models/m.json").read_text())["precision"] == after
    assert all(math.isfinite(x) for x in losses(tmp_path / "logs/m.csv"))


def test_distillation_on_cuda(tmp_path, dataset_dir):
    teachers = [save_random_model(tmp_path / "teachers" / f"t{i}.pth", seed=i) for i in range(2)]
    distillation.main(["--datapath", str(dataset_dir), "--teachers", ",".join(map(str, teachers)), "--vgg-weights",
                       "random", "--image-size", "32", "--batch-size", "2", "--device", "cuda", "--max-steps", "3",
                       "--save-dir", str(tmp_path / "models"), "--log-dir", str(tmp_path / "logs"),
                       "--checkpoint-dir", str(tmp_path / "checkpoints"), "--log-interval", "1", "--savename", "s"])
    provenance = json.loads((tmp_path / "models/s.json").read_text())
    assert provenance["steps"] == 3 and provenance["machine"].startswith("cuda:")
    assert all(math.isfinite(x) for x in losses(tmp_path / "logs/s.csv"))


@pytest.mark.slow
@pytest.mark.parametrize("images", [8, 5])
def test_two_processes_on_one_gpu_equal_one_process_with_twice_the_batch(tmp_path, images):
    """torchrun with 2 processes on one GPU (gloo: NCCL refuses two processes on one GPU), against 1 process at batch
    4, in float64; 5 photos make the last global batch of each epoch ragged (1 image for 2 processes)."""
    for i in range(images):
        write_noise_image(tmp_path / "photos" / f"{i}.jpg", 40, 40 + i, seed=i)
    style = write_noise_image(tmp_path / "style.png", 48, 48, seed=100)
    flags = ("--max-steps", "5", "--epochs", "5")
    two = train_float64(tmp_path, tmp_path / "two", tmp_path / "photos", style, *flags, "--batch-size", "2",
                        processes=2, device="cuda")
    one = train_float64(tmp_path, tmp_path / "one", tmp_path / "photos", style, *flags, "--batch-size", "4",
                        device="cuda")
    assert logged_losses(two) == logged_losses(one)
    assert largest_difference(two, one) < 1e-5
    assert json.loads((two / "models/m.json").read_text())["processes"] == 2


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compile"])
def test_render_image_on_cuda_matches_the_cpu(tmp_path, model_file, compiled):
    content = write_noise_image(tmp_path / "photo.png", 72, 96, seed=3)
    base = ["--content-path", str(content), "--model-path", str(model_file)]
    render_image.main([*base, "--output-path", str(tmp_path / "cpu.png"), "--device", "cpu", "--precision", "fp32"])
    render_image.main([*base, "--output-path", str(tmp_path / "gpu.png"), "--device", "cuda",
                       *(["--compile"] if compiled else [])])
    assert psnr(pixels(tmp_path / "gpu.png"), pixels(tmp_path / "cpu.png")) >= 40


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compile"])
def test_render_video_on_cuda_matches_the_cpu(tmp_path, model_file, compiled):
    clip = make_clip(tmp_path / "clip.mp4")  # 24 frames, 12 fps, with sound
    base = ["--input", str(clip), "--model", str(model_file)]
    render_video.main([*base, "--save-name", str(tmp_path / "cpu.mp4"), "--device", "cpu", "--precision", "fp32"])
    render_video.main([*base, "--save-name", str(tmp_path / "gpu.mp4"), "--device", "cuda",
                       *(["--compile"] if compiled else [])])
    on_gpu, on_cpu = video_frames(tmp_path / "gpu.mp4"), video_frames(tmp_path / "cpu.mp4")
    assert len(on_gpu) == len(on_cpu) == 24
    for gpu_frame, cpu_frame in zip(on_gpu, on_cpu, strict=True):
        assert np.abs(gpu_frame - cpu_frame).mean() < 3  # the same frames through two lossy encodes


def test_a_conditional_model_with_a_mix_renders_on_cuda_as_on_the_cpu(tmp_path):
    model = save_random_conditional_model(tmp_path / "two.pth")
    content = write_noise_image(tmp_path / "photo.png", 72, 96, seed=4)
    base = ["--content-path", str(content), "--model-path", str(model), "--style-mix", "0.3,0.7"]
    render_image.main([*base, "--output-path", str(tmp_path / "cpu.png"), "--device", "cpu", "--precision", "fp32"])
    render_image.main([*base, "--output-path", str(tmp_path / "gpu.png"), "--device", "cuda"])
    render_image.main([*base[:-2], "--style", "0", "--output-path", str(tmp_path / "one.png"), "--device", "cuda"])
    assert psnr(pixels(tmp_path / "gpu.png"), pixels(tmp_path / "cpu.png")) >= 40
    assert psnr(pixels(tmp_path / "one.png"), pixels(tmp_path / "gpu.png")) < 30  # the mix took effect


def test_conditional_training_on_cuda(tmp_path, dataset_dir, style_files):
    train.main(on_cuda(train_args(dataset_dir, tmp_path, style_files[:2], "--conditional", "--max-steps", "3",
                                  "--savename", "m")))
    assert all(math.isfinite(x) for x in losses(tmp_path / "logs/m.csv"))
    assert json.loads((tmp_path / "models/m.json").read_text())["machine"].startswith("cuda:")


def test_an_image_too_large_for_the_gpus_memory_falls_back_to_tiles(tmp_path, model_file, capfd):
    """Real CUDA memory, capped for this process: the whole-image render runs out of it, and the fallback renders
    the image in tiles close to an uncapped whole-image render."""
    content = write_noise_image(tmp_path / "big.png", 2048, 2048, seed=5)
    base = ["--content-path", str(content), "--model-path", str(model_file), "--device", "cuda", "--precision", "fp16"]
    render_image.main([*base, "--output-path", str(tmp_path / "whole.png"), "--tile", "0"])
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(768 * 2**20 / total)
    try:
        render_image.main([*base, "--output-path", str(tmp_path / "capped.png")])
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()
    assert "rendering it in tiles" in capfd.readouterr().err
    capped, whole = pixels(tmp_path / "capped.png"), pixels(tmp_path / "whole.png")
    assert capped.shape == whole.shape and psnr(capped, whole) >= 30


def test_temporal_rendering_on_cuda_matches_the_cpu(tmp_path, model_file):
    """--temporal (the default) on the GPU: the network there, the flow and the blend as on the CPU."""
    clip = make_clip(tmp_path / "clip.mp4")
    base = ["--input", str(clip), "--model", str(model_file), "--temporal"]
    render_video.main([*base, "--save-name", str(tmp_path / "cpu.mp4"), "--device", "cpu", "--precision", "fp32"])
    render_video.main([*base, "--save-name", str(tmp_path / "gpu.mp4"), "--device", "cuda"])
    on_gpu, on_cpu = video_frames(tmp_path / "gpu.mp4"), video_frames(tmp_path / "cpu.mp4")
    assert len(on_gpu) == len(on_cpu) == 24
    for gpu_frame, cpu_frame in zip(on_gpu, on_cpu, strict=True):
        assert np.abs(gpu_frame - cpu_frame).mean() < 3


def test_training_with_the_stability_loss_on_cuda(tmp_path, dataset_dir, style_files):
    train.main(on_cuda(train_args(dataset_dir, tmp_path, style_files[:1], "--temporal-weight", "1", "--max-steps", "3",
                                  "--savename", "m")))
    assert all(math.isfinite(x) for x in losses(tmp_path / "logs/m.csv"))


def test_a_model_trained_on_cuda_exports_to_onnx_and_runs_as_render_image_does(tmp_path, dataset_dir, style_files):
    onnxruntime = pytest.importorskip("onnxruntime")
    import export

    train.main(on_cuda(train_args(dataset_dir, tmp_path, style_files[:2], "--conditional", "--max-steps", "2",
                                  "--savename", "m.pth")))
    model = tmp_path / "models/m.pth"
    export.main(["--model-path", str(model), "--output-path", str(tmp_path / "m.onnx"), "--style-mix", "0.5,0.5"])
    content = write_noise_image(tmp_path / "photo.png", 37, 29, seed=6)
    render_image.main(["--content-path", str(content), "--model-path", str(model), "--style-mix", "0.5,0.5",
                       "--output-path", str(tmp_path / "cpu.png"), "--device", "cpu", "--precision", "fp32"])
    batch = pixels(content).astype(np.float32).transpose(2, 0, 1)[None]
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {"input": batch})
    onnx_render = np.clip(output[0], 0, 255).round().transpose(1, 2, 0)
    assert psnr(onnx_render, pixels(tmp_path / "cpu.png")) >= 50
