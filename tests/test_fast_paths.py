"""Every fast path gives the fp32 eager result (within stated bounds), so a speed-up cannot change results."""

import copy
import csv
import json
import math
import shutil

import pytest
import torch

import benchmark
import train
import utils
from conftest import random_model, write_noise_image
from style_transfer import rendering
from transformer_net import TransformerNet
from vgg import gram_matrix


@pytest.fixture(scope="module")
def model() -> TransformerNet:
    return random_model()


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    torch.manual_seed(1)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 7) * 255, size=(45, 61), mode="bicubic")
    return smooth.clamp(0, 255)


def eager(model: TransformerNet, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(batch).clamp(0, 255)


def test_stylize_in_fp32_is_exactly_the_eager_forward(model, photo):
    assert torch.equal(rendering.stylize(model, photo, "fp32"), eager(model, photo))


def test_channels_last_gives_the_nchw_result(model, photo):
    reference = eager(model, photo)
    fast = rendering.stylize(model.to(memory_format=torch.channels_last),
                         photo.contiguous(memory_format=torch.channels_last), "fp32")
    model.to(memory_format=torch.contiguous_format)
    assert benchmark.psnr(fast, reference) > 60


def test_a_batch_gives_each_frame_its_own_result(model, photo):
    other = photo.flip(-1)
    together = rendering.stylize(model, torch.cat([photo, other]), "fp32")
    assert benchmark.psnr(together[:1], eager(model, photo)) > 60
    assert benchmark.psnr(together[1:], eager(model, other)) > 60


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_keeps_40_db(model, photo, precision):
    try:
        utils.choose_precision(precision, torch.device("cpu"))
    except utils.UserError:
        pytest.skip(f"{precision} autocast is not available on the CPU in torch {torch.__version__}")
    assert benchmark.psnr(rendering.stylize(model, photo, precision), eager(model, photo)) >= 40


def test_bf16_weights_for_rendering_keep_40_db(model, photo):
    try:
        utils.choose_precision("bf16", torch.device("cpu"))
    except utils.UserError:
        pytest.skip(f"bf16 is not available on the CPU in torch {torch.__version__}")
    prepared = rendering.prepare_for_rendering(copy.deepcopy(model), "bf16")
    assert next(prepared.parameters()).dtype == torch.bfloat16  # converted once, not autocast per layer
    result = rendering.stylize(prepared, photo, "bf16")
    assert result.dtype == torch.float32 and result.shape == photo.shape
    assert benchmark.psnr(result, eager(model, photo)) >= 40


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("clang++")), reason="torch.compile needs a C++ compiler")
def test_compiled_rendering_gives_the_eager_result(model, photo):
    compiled = rendering.prepare_for_rendering(copy.deepcopy(model), "fp32", compile=True)
    assert benchmark.psnr(rendering.stylize(compiled, photo, "fp32"), eager(model, photo)) > 60


@pytest.mark.parametrize("native,expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_on_the_cpu_is_bf16_only_where_it_is_native(monkeypatch, native, expected):
    monkeypatch.setattr(utils, "cpu_has_fast_bf16", lambda: native)
    assert utils.choose_precision("auto", torch.device("cpu")) == expected
    assert utils.training_precision("auto", torch.device("cpu")) == expected
    assert utils.choose_precision("auto", torch.device("cuda")) == "fp16"
    assert utils.choose_precision("auto", torch.device("mps")) == "fp32"


def test_fp16_training_is_refused_off_cuda():
    with pytest.raises(utils.UserError, match="needs CUDA"):
        utils.training_precision("fp16", torch.device("cpu"))


def test_gram_matrices_stay_fp32_under_autocast():
    features = torch.rand(2, 8, 5, 6) * 10
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gram = gram_matrix(features.bfloat16())
    assert gram.dtype == torch.float32
    torch.testing.assert_close(gram, gram_matrix(features.bfloat16().float()))


def test_bf16_training_follows_the_fp32_losses(tmp_path, dataset_dir, style_files):
    def run(precision):
        out = tmp_path / precision
        train.main(["--datapath", str(dataset_dir), "--stylepath", str(style_files[0]), "--vgg-weights", "random",
                    "--image-size", "32", "--batch-size", "2", "--max-steps", "6", "--log-interval", "1",
                    "--device", "cpu", "--precision", precision, "--savename", "m.pth", "--save-dir", str(out),
                    "--log-dir", str(out), "--checkpoint-dir", str(out)])
        with open(out / "m.csv", newline="") as log:
            losses = [float(row["total"]) for row in csv.DictReader(log)]
        return losses, json.loads((out / "m.json").read_text())

    fp32, fp32_provenance = run("fp32")
    bf16, bf16_provenance = run("bf16")
    assert (fp32_provenance["precision"], bf16_provenance["precision"]) == ("fp32", "bf16")
    assert fp32 != bf16  # autocast did change the arithmetic
    for a, b in zip(fp32, bf16, strict=True):
        assert abs(b / a - 1) < 0.05


def test_network_flops_match_a_count_by_hand():
    # per output pixel of each conv: 2 * C_in * C_out * k * k; stride-2 layers at 1/4 and 1/16 of the pixels
    full = 2 * (3 * 32 * 81 + 64 * 32 * 9 + 32 * 3 * 81)
    half = 2 * (32 * 64 * 9 + 128 * 64 * 9)
    quarter = 2 * (64 * 128 * 9 + 10 * 128 * 128 * 9)
    pixels = 1280 * 720
    expected = (pixels * full + pixels / 4 * half + pixels / 16 * quarter) / 1e9
    assert math.isclose(benchmark.network_gflop(1280, 720), expected, rel_tol=1e-9)


def test_benchmark_quick_render_run_writes_its_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(benchmark, "SIZES", {"256": (48, 40)})
    monkeypatch.setattr(benchmark, "MODELS", [tmp_path / "no model here.pth"])
    write_noise_image(tmp_path / "photo.jpg", 60, 80, seed=3)
    monkeypatch.setattr(benchmark, "PHOTO", tmp_path / "photo.jpg")
    benchmark.main(["--parts", "render", "--sizes", "256", "--batches", "2", "--repeats", "1", "--seconds", "0.05",
                    "--device", "cpu", "--precisions", "fp32", "--json", str(tmp_path / "b.json")])
    results = json.loads((tmp_path / "b.json").read_text())
    paths = [row["path"] for row in results["render"]]
    assert paths == ["baseline: eager fp32 NCHW, batch 1", "stylize fp32 NCHW, batch 1", "stylize fp32 NCHW, batch 2",
                     "stylize fp32 channels_last, batch 1"]
    assert all(row["fps"] > 0 and row["psnr_db"] >= 40 for row in results["render"])
    assert results["matmul_gflops"]["fp32"] > 0
    assert "stylize fp32 channels_last" in capsys.readouterr().out


def test_benchmark_training_run_compares_train_py_with_the_plain_loop(tmp_path):
    """benchmarks/gpu_check.sh runs this part on the GPU: it must run through (it called a module as a function)."""
    benchmark.main(["--parts", "train", "--train-size", "32", "--train-steps", "2", "--device", "cpu",
                    "--precisions", "fp32", "--json", str(tmp_path / "t.json")])
    rows = json.loads((tmp_path / "t.json").read_text())["train"]
    assert [row["path"] for row in rows] == ["baseline: plain fp32 loop", "train.py --precision fp32"]
    assert all(row["images_per_s"] > 0 and math.isfinite(row["loss"]) for row in rows)


@pytest.mark.parametrize("capability,expected", [((6, 1), "fp16"), ((7, 0), "fp16"), ((7, 5), "fp16"),
                                                 ((8, 0), "bf16"), ((9, 0), "bf16")],
                         ids=["P40", "V100", "T4", "A100", "H100"])
def test_auto_training_precision_on_cuda_is_bf16_only_where_the_gpu_has_it_natively(monkeypatch, capsys, capability,
                                                                                   expected):
    """torch.cuda.is_bf16_supported() also counts bf16 that pre-Ampere GPUs (compute capability < 8.0) only
    emulate, slowly: there auto means fp16 with a gradient scaler."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert utils.training_precision("auto", torch.device("cuda")) == expected
    monkeypatch.setattr(torch, "autocast", lambda *args, **kwargs: None)  # no CUDA here to try it on
    assert utils.training_precision("bf16", torch.device("cuda")) == "bf16"  # asked for: given, with a warning
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == (expected == "fp16") and all("emulates bfloat16" in line for line in warnings)
