"""What runs the network when rendering (--runtime, issue 25): OpenVINO by default on the CPU where it is installed,
with the same results as PyTorch for every kind of model, mix and size, tiles in PyTorch, the choice per machine,
and one error line for a runtime that cannot run."""

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import render_image
import render_video
import utils
from conftest import (
    assert_clean_failure,
    files_under,
    run_main_in_process,
    video_frames,
    write_noise_image,
)
from style_transfer import openvino_runtime

pytest.importorskip("openvino")
pytest.importorskip("onnx")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def rendered(tmp_path: Path, model: Path, photo: Path, *flags: str) -> np.ndarray:
    output = tmp_path / f"out{len(list(tmp_path.glob('out*')))}.png"
    render_image.main(["--content-path", str(photo), "--model-path", str(model), "--output-path", str(output),
                       "--device", "cpu", *flags])
    with Image.open(output) as image:
        return np.asarray(image)


def counting_openvino_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    calls: list[tuple] = []
    real = openvino_runtime.OpenVinoNetwork.__call__

    def counted(self, batch):
        calls.append(tuple(batch.shape))
        return real(self, batch)

    monkeypatch.setattr(openvino_runtime.OpenVinoNetwork, "__call__", counted)
    return calls


def test_the_default_on_the_cpu_is_openvino_in_the_precision_auto_picks():
    cpu = torch.device("cpu")
    assert utils.choose_runtime("auto", cpu, "bf16") == "openvino"
    assert utils.choose_runtime("auto", cpu, "fp32") == "openvino"
    assert utils.choose_runtime("auto", cpu, "bf16", compile=True) == "torch"  # --compile is PyTorch's
    assert utils.choose_runtime("auto", torch.device("cuda"), "fp16") == "torch"
    assert utils.choose_runtime("torch", cpu, "bf16") == "torch"


def test_auto_leaves_small_work_to_pytorch_whose_set_up_is_shorter(tmp_path):
    """OpenVINO's export and each size's compilation cost time that only enough pixels of work pay back:
    render_image.py counts its images' pixels at the size the network renders them (--max-size, --stroke-scale)
    and their distinct sizes, and puts the images in order of size, so that each size is compiled once."""
    cpu = torch.device("cpu")
    enough = utils.OPENVINO_EXPORT_PIXELS + utils.OPENVINO_COMPILE_PIXELS
    assert utils.choose_runtime("auto", cpu, "bf16", work=lambda: (enough, 1)) == "openvino"
    assert utils.choose_runtime("auto", cpu, "bf16", work=lambda: (enough - 1, 1)) == "torch"
    assert utils.choose_runtime("auto", cpu, "bf16", work=lambda: (enough, 2)) == "torch"  # two compilations
    assert utils.choose_runtime("openvino", cpu, "bf16", work=lambda: (1, 1)) == "openvino"  # asked for: always
    photos = [write_noise_image(tmp_path / f"p{i}.png", 100 + 20 * (i % 2), 200, seed=i) for i in range(3)]
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    pairs = [(p, tmp_path / "out" / p.name) for p in [*photos, tmp_path / "broken.jpg"]]

    def parsed(*flags: str):
        return render_image.build_parser().parse_args(["--content-path", "x", "--model", "m", "--output-path", "o",
                                                       *flags])

    assert render_image.network_sizes(pairs, parsed()) == {photos[0]: (200, 100), photos[1]: (200, 120),
                                                           photos[2]: (200, 100)}
    assert render_image.network_sizes(pairs, parsed("--max-size", "100"))[photos[1]] == (100, 60)
    assert render_image.network_sizes(pairs, parsed("--stroke-scale", "2"))[photos[1]] == (100, 60)
    in_order = list(pairs)
    assert render_image.choose_runtime(in_order, parsed("--runtime", "openvino"), cpu, "bf16") == "openvino"
    assert [p for p, _ in in_order] == [tmp_path / "broken.jpg", photos[0], photos[2], photos[1]]


@pytest.mark.parametrize("missing", ["openvino", "onnx"])
def test_without_openvino_or_onnx_auto_is_pytorch_and_asking_for_openvino_is_one_line(monkeypatch, models, tmp_path,
                                                                                     capsys, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # `import missing` raises ImportError
    assert utils.choose_runtime("auto", torch.device("cpu"), "bf16") == "torch"
    photo = write_noise_image(tmp_path / "photo.png", 20, 24, seed=1)
    result = run_main_in_process(capsys, render_image.main, "--content-path", photo, "--model-path", models["plain"],
                                 "--output-path", tmp_path / "out" / "x.png", "--device", "cpu", "--runtime",
                                 "openvino")
    assert_clean_failure(result, "--runtime openvino needs the openvino and onnx packages")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags,expected", [
    (["--compile"], "--compile compiles the PyTorch network: it cannot go with --runtime openvino"),
    (["--precision", "fp16"], "--runtime openvino runs fp32 or bf16, not --precision fp16"),
])
def test_a_runtime_that_cannot_run_is_one_line_and_writes_nothing(models, tmp_path, capsys, flags, expected):
    photo = write_noise_image(tmp_path / "photo.png", 20, 24, seed=1)
    before = files_under(tmp_path)
    result = run_main_in_process(capsys, render_image.main, "--content-path", photo, "--model-path", models["plain"],
                                 "--output-path", tmp_path / "x.png", "--device", "cpu", "--runtime", "openvino",
                                 *flags)
    assert_clean_failure(result, expected)
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("kind,flags", [("plain", []), ("conditional", ["--style", "cold"]),
                                        ("conditional", ["--style-mix", "0.3,0.7"])])
@pytest.mark.parametrize("height,width", [(29, 37), (48, 64), (7, 5)])
def test_openvino_gives_pytorchs_image_at_any_size_for_every_model_and_mix(models, tmp_path, monkeypatch, kind,
                                                                          flags, height, width):
    """In fp32 the two runtimes agree to >= 50 dB; in auto precision (bf16 where the CPU has it) OpenVINO is within
    40 dB of fp32, or, at sizes so small that bf16 itself falls short of that (7 x 5: PyTorch's bf16 too), as close
    as PyTorch's."""
    photo = write_noise_image(tmp_path / "photo.png", height, width, seed=3)
    reference = rendered(tmp_path, models[kind], photo, "--runtime", "torch", "--precision", "fp32", *flags)
    calls = counting_openvino_calls(monkeypatch)
    fp32 = rendered(tmp_path, models[kind], photo, "--runtime", "openvino", "--precision", "fp32", *flags)
    default = rendered(tmp_path, models[kind], photo, "--runtime", "openvino", *flags)
    assert calls == [(1, 3, height, width)] * 2  # the whole image, once per render, by OpenVINO
    assert fp32.shape == reference.shape == (height, width, 3)
    assert psnr(fp32, reference) >= 50
    on_torch = rendered(tmp_path, models[kind], photo, "--runtime", "torch", *flags)
    assert psnr(default, reference) >= min(40, psnr(on_torch, reference) - 3)
    if kind == "conditional":
        other = rendered(tmp_path, models[kind], photo, "--runtime", "openvino", "--style", "warm")
        assert psnr(other, default) < 30  # the mix reaches the OpenVINO network


def test_tiles_run_in_pytorch_whatever_the_runtime(models, tmp_path, monkeypatch):
    photo = write_noise_image(tmp_path / "photo.png", 200, 260, seed=4)
    calls = counting_openvino_calls(monkeypatch)
    tiled = rendered(tmp_path, models["plain"], photo, "--tile", "128", "--runtime", "openvino")
    assert calls == []
    assert np.array_equal(tiled, rendered(tmp_path, models["plain"], photo, "--tile", "128", "--runtime", "torch"))


def test_a_style_schedule_in_batches_renders_alike_on_both_runtimes(models, tmp_path, monkeypatch):
    """Each frame of a batch of 4 gets its own mix on OpenVINO too (the mix rows are a graph input); the short last
    batch (10 frames) is compiled at its own size, not padded (a compilation costs less than two frames)."""
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (40, 32))
    for i in range(10):
        writer.write(np.asarray(Image.open(write_noise_image(tmp_path / f"f{i}.png", 32, 40, seed=i)))[:, :, ::-1])
    writer.release()
    common = ["--input", str(clip), "--model", str(models["conditional"]), "--device", "cpu", "--precision", "fp32",
              "--crf", "0", "--no-temporal", "--batch-size", "4", "--style-schedule", "0:warm;0.9:cold"]
    render_video.main([*common, "--save-name", str(tmp_path / "torch.mp4"), "--runtime", "torch"])
    calls = counting_openvino_calls(monkeypatch)
    render_video.main([*common, "--save-name", str(tmp_path / "openvino.mp4"), "--runtime", "openvino"])
    assert calls == [(4, 3, 32, 40)] * 2 + [(2, 3, 32, 40)]
    on_torch, on_openvino = video_frames(tmp_path / "torch.mp4"), video_frames(tmp_path / "openvino.mp4")
    assert len(on_torch) == len(on_openvino) == 10
    assert min(psnr(a, b) for a, b in zip(on_torch, on_openvino, strict=True)) >= 40
    assert psnr(on_openvino[0], on_openvino[-1]) < 30  # the schedule morphs
