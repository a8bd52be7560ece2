"""--stroke-scale (style_transfer/stroke_scale.py): strokes larger by stylising at a lower resolution and bringing
the photo's detail back by guided upsampling."""

import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from test_render_video import FFMPEG

import render_image
import render_video
from conftest import (
    assert_clean_failure,
    assert_usage_error,
    run_main_in_process,
    save_random_conditional_model,
    save_random_model,
    video_frames,
    write_noise_image,
)
from style_transfer import rendering, stroke_scale


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB")).astype(float)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stroke scale")
    return {"photo": write_noise_image(folder / "photo.png", 96, 128, seed=3),
            "model": save_random_model(folder / "m.pth"),
            "conditional": save_random_conditional_model(folder / "c.pth")}


def render(files, output, *flags, photo=None, model="model"):
    render_image.main(["--content-path", str(photo or files["photo"]), "--model-path", str(files[model]),
                       "--output-path", str(output), "--precision", "fp32", *map(str, flags)])
    return pixels(output)


def test_stroke_scale_one_is_the_plain_render(files, tmp_path):
    assert np.array_equal(render(files, tmp_path / "a.png"), render(files, tmp_path / "b.png", "--stroke-scale", 1))


def test_the_photo_behind_a_style_that_keeps_it_comes_back_sharp():
    """With a 'style' that changes nothing, the guided upsampling gives back the full-resolution photo (edges and
    all), far closer than a plain bicubic upscale of the half-resolution picture."""
    photo = torch.zeros(1, 3, 64, 64)
    photo[..., 20:44, 17:41] = 200.0  # a square with edges between the low-resolution pixels
    photo[:, 1] *= 0.5
    small = stroke_scale.downscale(photo, 2)
    guided = stroke_scale.guided_upsample(small, small, photo)
    bicubic = F.interpolate(small, size=(64, 64), mode="bicubic", align_corners=False).clamp(0, 255)
    assert (guided - photo).abs().mean() < 0.35 * (bicubic - photo).abs().mean()


def test_strokes_painted_over_a_flat_photo_are_kept_larger():
    """Where the photo is flat, the style's own pattern is all there is: it comes out upsampled, not erased."""
    photo = torch.full((1, 3, 32, 32), 100.0)
    small = stroke_scale.downscale(photo, 2)
    pattern = torch.zeros(1, 3, 16, 16)
    pattern[..., ::4, :] = 255.0
    guided = stroke_scale.guided_upsample(pattern, small, photo)
    expected = F.interpolate(pattern, size=(32, 32), mode="bicubic", align_corners=False).clamp(0, 255)
    torch.testing.assert_close(guided, expected, atol=1e-3, rtol=0)
    assert guided.std() > 30


def test_strength_and_preserve_color_apply_against_the_full_resolution_photo(files, tmp_path):
    photo = pixels(files["photo"])
    assert np.array_equal(render(files, tmp_path / "zero.png", "--stroke-scale", 2, "--strength", 0), photo)
    kept = render(files, tmp_path / "kept.png", "--stroke-scale", 2, "--preserve-color")
    luma = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)
    chroma = (lambda rgb: rgb - (torch.from_numpy(rgb) @ luma).numpy()[..., None])  # noqa: E731
    assert np.abs(chroma(kept) - chroma(photo)).mean() < 1.5  # the photo's colours (rounding and clipping only)
    half = render(files, tmp_path / "half.png", "--stroke-scale", 2, "--strength", 0.5)
    full = render(files, tmp_path / "full.png", "--stroke-scale", 2)
    assert np.abs(half - (photo + full) / 2).max() <= 1.01


def test_it_composes_with_tiles_and_conditional_styles(files, tmp_path):
    photo = write_noise_image(tmp_path / "large.png", 300, 320, seed=5)
    whole = render(files, tmp_path / "whole.png", "--stroke-scale", 1.5, "--tile", 0, photo=photo)
    tiled = render(files, tmp_path / "tiled.png", "--stroke-scale", 1.5, "--tile", 128, "--tile-stats", "exact",
                   photo=photo)
    assert whole.shape == tiled.shape == (300, 320, 3)
    assert np.abs(whole - tiled).mean() < 1.0
    styles = [render(files, tmp_path / f"s{i}.png", "--stroke-scale", 2, "--style", i, model="conditional")
              for i in (0, 1)]
    assert np.abs(styles[0] - styles[1]).mean() > 5


def test_larger_stroke_scales_paint_coarser_textures(files, tmp_path):
    """The stylised picture's high-frequency energy (minus the photo's) falls as S grows: larger strokes."""
    photo = write_noise_image(tmp_path / "smooth.png", 128, 128, seed=8)

    def fine_energy(image):
        gray = image.mean(-1)
        return np.abs(np.diff(gray, axis=0)).mean() + np.abs(np.diff(gray, axis=1)).mean()

    energies = [fine_energy(render(files, tmp_path / f"{s}.png", "--stroke-scale", s, photo=photo)) for s in (1, 2, 4)]
    assert energies[0] > energies[1] > energies[2], energies


def test_a_video_renders_with_larger_strokes_and_temporal_blending(files, tmp_path):
    clip = tmp_path / "clip.mp4"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=8", "-t", "1",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-y", str(clip)], check=True, stdin=subprocess.DEVNULL)
    outputs = {}
    for scale in (1, 2):
        output = tmp_path / f"s{scale}.mp4"
        render_video.main(["--input", str(clip), "--model", str(files["model"]), "--save-name", str(output),
                           "--precision", "fp32", "--stroke-scale", str(scale), "--temporal"])
        outputs[scale] = video_frames(output)
    assert len(outputs[1]) == len(outputs[2]) == 8 and outputs[2][0].shape == (48, 64, 3)
    assert np.abs(outputs[1][4] - outputs[2][4]).mean() > 2


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "16.5", "many"])
def test_a_bad_stroke_scale_is_refused_by_the_flag_parser(files, tmp_path, capsys, value):
    for main, flags in ((render_image.main, ["--content-path", files["photo"], "--model-path", files["model"],
                                             "--output-path", tmp_path / "out.png"]),
                        (render_video.main, ["--input", files["photo"], "--model", files["model"],
                                             "--save-name", tmp_path / "out.mp4"])):
        result = run_main_in_process(capsys, main, *flags, "--stroke-scale", value)
        assert_usage_error(result, "--stroke-scale")
    assert not list(tmp_path.iterdir())


def test_finish_is_what_stylize_applies():
    batch, stylised = torch.rand(1, 3, 8, 8) * 255, torch.rand(1, 3, 8, 8) * 255
    model = torch.nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        model.bias.zero_()
    torch.testing.assert_close(rendering.stylize(model, stylised, "fp32"), stylised)
    torch.testing.assert_close(rendering.finish(batch, stylised, True, 0.5),
                               torch.lerp(batch, (batch + rendering.luminance(stylised)
                                                  - rendering.luminance(batch)).clamp(0, 255), 0.5))


def test_a_stroke_scale_below_one_paints_finer_strokes_at_the_photo_s_size(files, tmp_path):
    plain = render(files, tmp_path / "plain.png")
    finer = render(files, tmp_path / "finer.png", "--stroke-scale", 0.5)
    assert finer.shape == plain.shape and np.abs(finer - plain).mean() > 2


def test_running_out_of_memory_bringing_back_the_detail_is_one_line_with_a_hint(files, tmp_path, capsys,
                                                                                monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 96000000000 bytes.")

    monkeypatch.setattr(stroke_scale, "guided_upsample", out_of_memory)
    result = run_main_in_process(capsys, render_image.main, "--content-path", files["photo"], "--model-path",
                                 files["model"], "--output-path", tmp_path / "out.png", "--stroke-scale", "2")
    assert_clean_failure(result, "out of memory bringing back the photo's detail at 128x96", "try --max-size 64")
    assert not (tmp_path / "out.png").exists()
