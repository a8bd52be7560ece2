"""Tiled rendering (render_image.py --tile): the result of a whole-image render, without seams, at any
size and kind of image, in bounded memory; the default tiles only when the whole image would not fit."""

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import render_image
import utils
from conftest import (
    assert_clean_failure,
    assert_usage_error,
    random_model,
    run_main_in_process,
    save_random_conditional_model,
    write_noise_image,
)
from style_transfer import tiling
from transformer_net import InstanceNorm, TransformerNet


def render(model: Path, content: Path, output: Path, *extra: str) -> np.ndarray:
    render_image.main(["--content-path", str(content), "--model-path", str(model), "--output-path", str(output),
                       "--precision", "fp32", *extra])
    with Image.open(output) as image:
        return np.asarray(image).astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a - b) ** 2).mean()
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def worst_line(a: np.ndarray, b: np.ndarray) -> float:
    """The largest mean absolute difference of any row or column, in 8-bit steps: a seam would show as one."""
    difference = np.abs(a - b)
    difference = difference.mean(axis=2) if difference.ndim == 3 else difference
    return max(difference.mean(axis=0).max(), difference.mean(axis=1).max())


@pytest.mark.parametrize("height,width", [(203, 301), (130, 517), (6, 300), (301, 9)])
def test_tiles_give_the_whole_image_result_without_seams_at_odd_sizes(tmp_path, model_file, height, width):
    content = write_noise_image(tmp_path / "c.png", height, width, seed=height)
    whole = render(model_file, content, tmp_path / "whole.png", "--tile", "0")
    tiled = render(model_file, content, tmp_path / "tiled.png", "--tile", "128")
    assert tiled.shape == whole.shape == (height, width, 3)
    assert psnr(tiled, whole) > 45
    assert worst_line(tiled, whole) < 1
    assert np.abs(tiled - render(model_file, content, tmp_path / "content.png", "--strength", "0")).mean() > 10


def test_an_image_no_larger_than_the_tile_is_rendered_whole(tmp_path, model_file):
    content = write_noise_image(tmp_path / "c.png", 100, 128, seed=1)
    whole = render(model_file, content, tmp_path / "whole.png", "--tile", "0")
    np.testing.assert_array_equal(render(model_file, content, tmp_path / "tile 128.png", "--tile", "128"), whole)
    np.testing.assert_array_equal(render(model_file, content, tmp_path / "tile 4096.png", "--tile", "4096"), whole)


@pytest.mark.parametrize("output_norm", [False, True], ids=["", "output-norm"])
def test_exact_statistics_are_the_whole_images(tmp_path, output_norm):
    """Every norm's, in the order the network runs them: with an output norm (transformer_net.py) it is the 16th."""
    model = TransformerNet(output_norm).eval()
    model.load_state_dict(random_model().state_dict(), strict=not output_norm)
    renderer = tiling.TiledRenderer(model, "fp32")
    pixels = np.asarray(Image.open(write_noise_image(tmp_path / "c.png", 150, 290, seed=2)).convert("RGB"))
    whole = renderer.sampled_statistics(pixels)  # the image is smaller than the sample: its own statistics
    rows, columns = tiling.Axis.plan(152, 128, False), tiling.Axis.plan(292, 128, False)
    assert len(rows.starts) > 1 and len(columns.starts) > 1
    exact = renderer.exact_statistics(pixels, rows, columns, bar=_NoBar())
    assert len(exact) == len(whole) == 15 + output_norm
    for (mean, variance), (whole_mean, whole_variance) in zip(exact, whole, strict=True):
        # the same to rounding, apart from the tiles' edges, whose reflection padding reaches a little way in
        assert ((mean - whole_mean).abs() / whole_variance.sqrt()).max() < 1e-3
        assert ((variance - whole_variance).abs() / whole_variance).max() < 1e-3


def test_the_exact_pass_runs_each_tile_only_up_to_the_layer_it_measures(tmp_path):
    """Measuring layer k needs the network only up to layer k: the last convolution (after the last norm, in a
    network without an output norm) never runs, and the earlier a layer, the fewer steps run for it (the exact
    pass's cost)."""
    renderer = tiling.TiledRenderer(random_model(), "fp32")
    pixels = np.asarray(Image.open(write_noise_image(tmp_path / "c.png", 150, 150, seed=3)).convert("RGB"))
    calls = {"conv1": 0, "deconv3": 0}
    for name in calls:
        getattr(renderer.model, name).register_forward_hook(lambda *_, name=name: calls.__setitem__(name,
                                                                                                    calls[name] + 1))
    rows = columns = tiling.Axis.plan(152, 128, False)
    renderer.exact_statistics(pixels, rows, columns, bar=_NoBar())
    tiles = len(rows.starts) * len(columns.starts)
    assert calls == {"conv1": 15 * tiles, "deconv3": 0}


def test_exact_statistics_match_the_whole_image_where_sampled_ones_only_come_close(tmp_path, model_file,
                                                                                      monkeypatch):
    content = write_noise_image(tmp_path / "c.png", 200, 300, seed=3)
    whole = render(model_file, content, tmp_path / "whole.png", "--tile", "0")
    monkeypatch.setattr(tiling, "SAMPLE_PIXELS", 128 * 128)  # so that the sample is a sample
    sampled = render(model_file, content, tmp_path / "sampled.png", "--tile", "128")
    exact = render(model_file, content, tmp_path / "exact.png", "--tile", "128", "--tile-stats", "exact")
    assert psnr(exact, whole) > 45 and worst_line(exact, whole) < 1
    assert 20 < psnr(sampled, whole) < psnr(exact, whole)


class _NoBar:
    def update(self, count: int = 1) -> None:
        pass


@pytest.mark.parametrize("size", [128, 200, 300, 1001, 4099, 7000])
@pytest.mark.parametrize("tile", [128, 256, 1024])
@pytest.mark.parametrize("same_shape", [False, True])
def test_the_blend_weights_cover_the_image_once_and_skip_the_tile_edges(size, tile, same_shape):
    size = tiling._network_side(size)
    axis = tiling.Axis.plan(size, tile, same_shape)
    assert axis.starts[0] == 0 and axis.starts[-1] + axis.length == size
    assert all(start % 4 == 0 for start in axis.starts) and axis.length % 4 == 0 and axis.length <= max(tile, size)
    if same_shape and size > tile:
        assert axis.length == tile  # one compiled tile shape
    total = np.zeros(size)
    for start, weight in zip(axis.starts, axis.weights(), strict=True):
        total[start:start + axis.length] += weight
        if start > 0:
            assert not weight[:tiling.GUARD].any()
        if start + axis.length < size:
            assert not weight[-tiling.GUARD:].any()
    np.testing.assert_allclose(total, 1, atol=1e-6)


def test_preserve_color_and_strength_work_in_tiles(tmp_path, model_file):
    content = write_noise_image(tmp_path / "c.png", 180, 260, seed=4)
    for flags in (["--preserve-color"], ["--strength", "0.5"], ["--preserve-color", "--strength", "0.7"]):
        whole = render(model_file, content, tmp_path / "whole.png", "--tile", "0", *flags)
        tiled = render(model_file, content, tmp_path / "tiled.png", "--tile", "128", *flags)
        assert psnr(tiled, whole) > 45 and worst_line(tiled, whole) < 1, flags


def test_16_bit_and_rgba_images_keep_their_kind_in_tiles(tmp_path, model_file):
    deep = np.linspace(0, 65535, 150 * 260).reshape(150, 260).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    rgba = Image.open(write_noise_image(tmp_path / "rgb.png", 150, 260, seed=5))
    alpha = Image.fromarray(np.tile(np.linspace(0, 255, 260, dtype=np.uint8), (150, 1)))
    rgba.putalpha(alpha)
    rgba.save(tmp_path / "rgba.png")
    for name, mode in (("deep.png", "L"), ("rgba.png", "RGBA")):
        whole = render(model_file, tmp_path / name, tmp_path / f"whole {name}", "--tile", "0")
        tiled = render(model_file, tmp_path / name, tmp_path / f"tiled {name}", "--tile", "128")
        with Image.open(tmp_path / f"tiled {name}") as image:
            assert (image.mode, image.size) == (mode, (260, 150))
        assert psnr(tiled, whole) > 45 and worst_line(tiled, whole) < 1, name
    np.testing.assert_array_equal(tiled[..., 3], np.asarray(alpha))


def test_a_folder_of_mixed_sizes_tiles_the_large_ones(tmp_path, model_file):
    sizes = {"small.png": (40, 60), "wide.png": (90, 400), "large.jpg": (260, 300), "sub/tall.png": (300, 70)}
    for name, (height, width) in sizes.items():
        write_noise_image(tmp_path / "in" / name, height, width, seed=len(name))
    render_image.main(["--content-path", str(tmp_path / "in"), "--model-path", str(model_file), "--output-path",
                       str(tmp_path / "tiled"), "--tile", "128", "--format", "png"])
    render_image.main(["--content-path", str(tmp_path / "in"), "--model-path", str(model_file), "--output-path",
                       str(tmp_path / "whole"), "--tile", "0", "--format", "png"])
    for name, (height, width) in sizes.items():
        name = str(Path(name).with_suffix(".png"))
        with Image.open(tmp_path / "tiled" / name) as tiled, Image.open(tmp_path / "whole" / name) as whole:
            assert tiled.size == whole.size == (width, height)
            a, b = np.asarray(tiled).astype(np.float64), np.asarray(whole).astype(np.float64)
        assert psnr(a, b) > 40 and worst_line(a, b) < 1.5, name  # bf16 here where the CPU has it


@pytest.mark.parametrize("precision", ["bf16"])
def test_reduced_precision_tiles_stay_close_to_the_whole_image(tmp_path, model_file, precision):
    try:
        utils.choose_precision(precision, torch.device("cpu"))
    except utils.UserError:
        pytest.skip(f"{precision} is not available on the CPU in torch {torch.__version__}")
    content = write_noise_image(tmp_path / "c.png", 200, 290, seed=6)
    whole = render(model_file, content, tmp_path / "whole.png", "--tile", "0", "--precision", precision)
    tiled = render(model_file, content, tmp_path / "tiled.png", "--tile", "128", "--precision", precision)
    assert psnr(tiled, whole) > 40 and worst_line(tiled, whole) < 1.5


def test_the_default_tiles_only_what_does_not_fit_in_memory(tmp_path, model_file, monkeypatch):
    content = write_noise_image(tmp_path / "c.png", 200, 300, seed=7)
    whole = render(model_file, content, tmp_path / "whole.png", "--tile", "0")
    np.testing.assert_array_equal(render(model_file, content, tmp_path / "default.png"), whole)
    fits_128 = tiling.activation_bytes(130 * 130, "fp32", torch.device("cpu"))  # room for a tile of 128, not 192
    monkeypatch.setattr(tiling, "memory_budget", lambda device: fits_128)
    assert tiling.choose_tile((300, 200), None, "fp32", torch.device("cpu")) == 128
    in_tiles = render(model_file, content, tmp_path / "tiles.png", "--tile", "128")
    np.testing.assert_array_equal(render(model_file, content, tmp_path / "low memory.png"), in_tiles)
    assert psnr(in_tiles, whole) > 30


def test_running_out_of_memory_falls_back_to_tiles(tmp_path, model_file, capsys, monkeypatch):
    content = write_noise_image(tmp_path / "c.png", 200, 300, seed=8)
    forward = TransformerNet.forward

    def forward_with_little_memory(self, x):
        if x.shape[0] * x.shape[2] * x.shape[3] > 40_000:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(self, x)

    monkeypatch.setattr(TransformerNet, "forward", forward_with_little_memory)
    result = run_main_in_process(capsys, render_image.main, "--content-path", content, "--model-path", model_file,
                                 "--output-path", tmp_path / "out.png")
    assert result.returncode == 0, result.stderr
    assert "warning: out of memory at 300x200 on cpu: rendering it in tiles of 152 pixels instead" in result.stderr
    with Image.open(tmp_path / "out.png") as image:
        assert image.size == (300, 200)
    result = run_main_in_process(capsys, render_image.main, "--content-path", content, "--model-path", model_file,
                                 "--output-path", tmp_path / "never.png", "--tile", "0")
    assert_clean_failure(result, f"{content}: out of memory at 300x200 on cpu; try --max-size 150")
    assert not (tmp_path / "never.png").exists()


def test_tiles_that_run_out_of_memory_suggest_smaller_tiles(tmp_path, model_file, capsys, monkeypatch):
    content = write_noise_image(tmp_path / "c.png", 200, 300, seed=9)
    forward = TransformerNet.forward

    def forward_with_little_memory(self, x):
        if x.shape[2] * x.shape[3] > 128 * 128:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(self, x)

    monkeypatch.setattr(TransformerNet, "forward", forward_with_little_memory)
    monkeypatch.setattr(tiling, "SAMPLE_PIXELS", 128 * 128)
    result = run_main_in_process(capsys, render_image.main, "--content-path", content, "--model-path", model_file,
                                 "--output-path", tmp_path / "out.png", "--tile", "256")
    assert_clean_failure(result, f"{content}: out of memory at 184x200 on cpu (in tiles of 256); try --tile 128")
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("value,expected", [("50", "must be 0 (never tile) or at least 128: 50"),
                                            ("-1", "must be 0 (never tile) or at least 128: -1"),
                                            ("big", "not an integer: 'big'")])
def test_a_tile_too_small_is_refused_by_the_flag_parser(tmp_path, model_file, capsys, value, expected):
    content = write_noise_image(tmp_path / "c.png", 20, 30, seed=10)
    result = run_main_in_process(capsys, render_image.main, "--content-path", content, "--model-path", model_file,
                                 "--output-path", tmp_path / "out.png", "--tile", value)
    assert_usage_error(result, f"argument --tile: {expected}")
    assert not (tmp_path / "out.png").exists()


class _StyleNorm(nn.Module):
    """A conditional network's normalisation: the plain network's InstanceNorm without its own scale and shift,
    then a per-style scale and shift."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = InstanceNorm(channels, affine=False)
        self.scale = nn.Parameter(torch.rand(channels).view(1, -1, 1, 1) + 0.5)
        self.shift = nn.Parameter(torch.randn(channels).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x) * self.scale + self.shift


def test_a_conditional_networks_plain_instance_norms_get_the_whole_image_statistics(tmp_path):
    model = random_model()
    torch.manual_seed(11)
    model.in2, model.res3.in1 = _StyleNorm(64), _StyleNorm(128)
    renderer = tiling.TiledRenderer(model, "fp32")
    assert len(renderer.norms.norms) == 15
    image = Image.open(write_noise_image(tmp_path / "c.png", 200, 300, seed=11)).convert("RGB")
    with torch.inference_mode():
        batch = torch.from_numpy(np.asarray(image).astype(np.float32)).permute(2, 0, 1)[None]
        whole = model(batch).clamp(0, 255).round()[0].permute(1, 2, 0).numpy().astype(np.float64)
    tiled = np.asarray(renderer.render(image, 128)).astype(np.float64)
    assert psnr(tiled, whole) > 45 and worst_line(tiled, whole) < 1


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("clang++")), reason="torch.compile needs a C++ compiler")
def test_compiled_tiles_give_the_eager_result_with_one_tile_shape(tmp_path, model_file):
    write_noise_image(tmp_path / "in" / "a.png", 200, 300, seed=12)
    write_noise_image(tmp_path / "in" / "b.png", 260, 170, seed=13)
    torch._dynamo.reset()
    graphs_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    render_image.main(["--content-path", str(tmp_path / "in"), "--model-path", str(model_file), "--output-path",
                       str(tmp_path / "compiled"), "--tile", "128", "--compile", "--precision", "fp32"])
    compilations = torch._dynamo.utils.counters["stats"]["unique_graphs"] - graphs_before
    render_image.main(["--content-path", str(tmp_path / "in"), "--model-path", str(model_file), "--output-path",
                       str(tmp_path / "eager"), "--tile", "128", "--precision", "fp32"])
    for name in ("a.png", "b.png"):
        with Image.open(tmp_path / "compiled" / name) as compiled, Image.open(tmp_path / "eager" / name) as eager:
            a, b = np.asarray(compiled).astype(np.float64), np.asarray(eager).astype(np.float64)
        assert psnr(a, b) > 45 and worst_line(a, b) < 1, name
    assert compilations == 1  # every tile of both images: 128x128


def test_a_conditional_model_with_a_mix_renders_the_same_in_tiles(tmp_path):
    """The two branches meet here: tiles of a conditional model get the mix and the whole image's statistics."""
    model = save_random_conditional_model(tmp_path / "styles.pth")
    content = write_noise_image(tmp_path / "c.png", 203, 301, seed=5)
    whole = render(model, content, tmp_path / "whole.png", "--tile", "0", "--style-mix", "0.3,0.7")
    tiled = render(model, content, tmp_path / "tiled.png", "--tile", "128", "--style-mix", "0.3,0.7")
    first_style = render(model, content, tmp_path / "first.png", "--tile", "128", "--style", "0")
    assert psnr(tiled, whole) > 45
    assert worst_line(tiled, whole) < 1
    assert np.abs(tiled - first_style).mean() > 1  # the mix reached the tiles
