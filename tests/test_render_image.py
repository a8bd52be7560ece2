import errno
import os
import pickle
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import render_image
from conftest import (
    assert_clean_failure,
    fail_the_network,
    files_under,
    run_main_in_process,
    run_script,
    write_noise_image,
)
from style_transfer import image_io
from utils import UserError


def render(model: Path, content: Path, output: Path, *extra: str) -> None:
    render_image.main(["--content-path", str(content), "--model-path", str(model), "--output-path", str(output),
                       *extra])


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image).astype(np.int16)


def chroma(rgb: np.ndarray) -> np.ndarray:
    """Cb and Cr of JPEG's YCbCr."""
    red, green, blue = (rgb[..., i].astype(np.float64) for i in range(3))
    return np.stack([-0.168736 * red - 0.331264 * green + 0.5 * blue, 0.5 * red - 0.418688 * green - 0.081312 * blue])


def test_folder_render_keeps_names_subfolders_and_odd_sizes(tmp_path, model_file):
    sizes = {"a.png": (21, 33), "b.jpg": (37, 20), "tiny.png": (3, 5), "sub/c.png": (47, 64)}
    for name, (height, width) in sizes.items():
        write_noise_image(tmp_path / "photos in" / name, height, width, seed=len(name))
    render(model_file, tmp_path / "photos in", tmp_path / "out put")
    assert files_under(tmp_path / "out put") == {Path("a.png"), Path("b.jpg"), Path("tiny.png"), Path("sub"),
                                                 Path("sub/c.png")}
    for name, (height, width) in sizes.items():
        with Image.open(tmp_path / "out put" / name) as image:
            assert (image.size, image.mode) == ((width, height), "RGB"), name


def test_folder_render_with_format_changes_only_the_extension(tmp_path, model_file):
    write_noise_image(tmp_path / "in" / "x.png", 20, 30, seed=1)
    Image.new("RGBA", (30, 20), (10, 200, 30, 100)).save(tmp_path / "in" / "y.png")
    render(model_file, tmp_path / "in", tmp_path / "out", "--format", "jpg")
    assert files_under(tmp_path / "out") == {Path("x.jpg"), Path("y.jpg")}
    with Image.open(tmp_path / "out" / "y.jpg") as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (30, 20))  # no alpha in JPEG


def test_strength_zero_returns_the_content(tmp_path, model_file):
    content = write_noise_image(tmp_path / "c.png", 33, 41, seed=3)
    render(model_file, content, tmp_path / "out.png", "--strength", "0")
    np.testing.assert_array_equal(pixels(tmp_path / "out.png"), pixels(content))


def test_strength_one_half_is_halfway(tmp_path, model_file):
    content = write_noise_image(tmp_path / "c.png", 30, 30, seed=3)
    render(model_file, content, tmp_path / "full.png")
    render(model_file, content, tmp_path / "half.png", "--strength", "0.5")
    expected = (pixels(content) + pixels(tmp_path / "full.png")) / 2
    assert np.abs(pixels(tmp_path / "half.png") - expected).max() <= 1
    assert np.abs(pixels(tmp_path / "full.png") - pixels(content)).mean() > 10  # the model does change it


def test_preserve_color_keeps_the_contents_chroma(tmp_path, model_file):
    content = write_noise_image(tmp_path / "c.png", 40, 48, seed=4)
    render(model_file, content, tmp_path / "styled.png")
    render(model_file, content, tmp_path / "kept.png", "--preserve-color")
    original = chroma(pixels(content))
    assert np.abs(chroma(pixels(tmp_path / "styled.png")) - original).mean() > 15
    assert np.abs(chroma(pixels(tmp_path / "kept.png")) - original).mean() < 2
    assert np.abs(pixels(tmp_path / "kept.png") - pixels(content)).mean() > 10  # the brightness did change


def test_exif_rotation_gives_an_upright_output_of_the_displayed_size(tmp_path, model_file):
    stored = Image.fromarray(np.kron(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20, np.ones((10, 10), np.uint8)))
    exif = stored.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    stored.convert("RGB").save(tmp_path / "phone.jpg", exif=exif, quality=95)  # stored 40x30, shown 30x40
    render(model_file, tmp_path / "phone.jpg", tmp_path / "upright.png", "--strength", "0")
    render(model_file, tmp_path / "phone.jpg", tmp_path / "styled.jpg")
    with Image.open(tmp_path / "phone.jpg") as image:
        upright = np.asarray(ImageOps.exif_transpose(image)).astype(np.int16)
    assert upright.shape == (40, 30, 3)
    np.testing.assert_array_equal(pixels(tmp_path / "upright.png"), upright)
    with Image.open(tmp_path / "styled.jpg") as image:
        assert image.size == (30, 40) and image.getexif().get(0x0112) in (None, 1)


def test_grayscale_stays_grayscale(tmp_path, model_file):
    content = write_noise_image(tmp_path / "gray.png", 25, 35, seed=5, mode="L")
    render(model_file, content, tmp_path / "out.png")
    with Image.open(tmp_path / "out.png") as image:
        assert (image.mode, image.size) == ("L", (35, 25))


def test_rgba_keeps_its_alpha_channel(tmp_path, model_file):
    rgb = Image.open(write_noise_image(tmp_path / "rgb.png", 30, 40, seed=6))
    alpha = Image.fromarray(np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (30, 1)))
    rgb.putalpha(alpha)
    rgb.save(tmp_path / "rgba.png")
    render(model_file, tmp_path / "rgba.png", tmp_path / "out.png")
    with Image.open(tmp_path / "out.png") as image:
        assert (image.mode, image.size) == ("RGBA", (40, 30))
        np.testing.assert_array_equal(np.asarray(image.getchannel("A")), np.asarray(alpha))


def test_palette_images_come_out_as_rgb_or_rgba(tmp_path, model_file):
    palette = Image.open(write_noise_image(tmp_path / "rgb.png", 30, 20, seed=7)).quantize(16)
    palette.save(tmp_path / "p.png")
    palette.save(tmp_path / "pt.png", transparency=0)
    render(model_file, tmp_path / "p.png", tmp_path / "p out.png")
    render(model_file, tmp_path / "pt.png", tmp_path / "pt out.png")
    transparent = np.asarray(palette) == 0
    with Image.open(tmp_path / "p out.png") as plain, Image.open(tmp_path / "pt out.png") as see_through:
        assert (plain.mode, plain.size, see_through.mode) == ("RGB", (20, 30), "RGBA")
        np.testing.assert_array_equal(np.asarray(see_through.getchannel("A")) == 0, transparent)


def test_16_bit_input_is_scaled_to_8_bit_not_clipped(tmp_path, model_file):
    values = np.linspace(0, 65535, 30 * 20).reshape(30, 20).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    render(model_file, tmp_path / "deep.png", tmp_path / "out.png", "--strength", "0")
    with Image.open(tmp_path / "out.png") as image:
        assert (image.mode, image.size) == ("L", (20, 30))
        np.testing.assert_array_equal(np.asarray(image), np.round(values / 257).astype(np.uint8))


@pytest.mark.parametrize("flags", [["--max-size", "30"], ["--scale", "0.5"], ["--content-scale", "2"]])
def test_rendering_smaller(tmp_path, model_file, flags):
    content = write_noise_image(tmp_path / "c.png", 40, 60, seed=8)
    render(model_file, content, tmp_path / "out.png", *flags)
    with Image.open(tmp_path / "out.png") as image:
        assert image.size == (30, 20)


def test_a_folder_with_an_unreadable_image_renders_the_others_then_fails(tmp_path, model_file):
    write_noise_image(tmp_path / "in" / "good.png", 20, 20, seed=9)
    (tmp_path / "in" / "broken.jpg").write_text("not an image")
    with pytest.raises(UserError, match="1 of 2 images could not be read"):
        render(model_file, tmp_path / "in", tmp_path / "out")
    assert files_under(tmp_path / "out") == {Path("good.png")}


def bad_input(tmp_path: Path, case: str, model: Path) -> tuple[list, str]:
    photo = write_noise_image(tmp_path / "photo.png", 20, 24, seed=0)
    out = tmp_path / "out.png"
    if case == "missing model":
        return [photo, tmp_path / "nope.pth", out], "nope.pth"
    if case == "model that runs code":
        evil = tmp_path / "evil model.pth"
        evil.write_bytes(pickle.dumps(_CreatesAFile(tmp_path / "created")))
        return [photo, evil, out], "pickled objects"
    if case == "missing content":
        return [tmp_path / "nope.jpg", model, out], "nope.jpg"
    if case == "unreadable image":
        (tmp_path / "fake.jpg").write_text("not an image")
        return [tmp_path / "fake.jpg", model, out], "cannot read image"
    if case == "empty image file":
        (tmp_path / "empty.png").write_bytes(b"")
        return [tmp_path / "empty.png", model, out], "cannot read image"
    if case in ("truncated jpeg", "truncated png"):
        whole = write_noise_image(tmp_path / ("whole.jpg" if case == "truncated jpeg" else "whole.png"), 120, 160, 1)
        cut = whole.with_stem("cut")
        cut.write_bytes(whole.read_bytes()[:len(whole.read_bytes()) * 9 // 10])
        whole.unlink()
        return [cut, model, out], "cannot read image"
    if case == "empty folder":
        (tmp_path / "empty").mkdir()
        return [tmp_path / "empty", model, tmp_path / "out"], "no images"
    if case == "unwritable output":
        (tmp_path / "a file").write_text("")
        return [photo, model, tmp_path / "a file" / "out.png"], "cannot write"
    assert case == "unknown extension"
    return [photo, model, tmp_path / "out.xyz"], ".xyz"


class _CreatesAFile:
    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


@pytest.mark.parametrize("case", ["missing model", "model that runs code", "missing content", "unreadable image",
                                  "empty image file", "truncated jpeg", "truncated png", "empty folder",
                                  "unwritable output", "unknown extension"])
def test_bad_input_is_one_clear_line_and_leaves_no_output(tmp_path, model_file, case):
    (content, model_path, output), expected = bad_input(tmp_path, case, model_file)
    before = files_under(tmp_path)
    with pytest.raises(UserError) as error:
        render(model_path, content, output)
    assert expected in str(error.value) and "\n" not in str(error.value)
    assert files_under(tmp_path) == before


def test_the_command_line_reports_bad_input_in_one_line(tmp_path, model_file):
    (content, model_path, output), expected = bad_input(tmp_path, "model that runs code", model_file)
    before = files_under(tmp_path)
    result = run_script("render_image.py", "--content-path", content, "--model-path", model_path,
                        "--output-path", output, cwd=tmp_path)
    assert_clean_failure(result, expected, str(model_path))
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_stays_close_to_fp32(tmp_path, model_file, precision):
    content = write_noise_image(tmp_path / "c.png", 32, 40, seed=10)
    render(model_file, content, tmp_path / "fp32.png", "--precision", "fp32")
    render(model_file, content, tmp_path / "low.png", "--precision", precision)
    difference = np.abs(pixels(tmp_path / "low.png") - pixels(tmp_path / "fp32.png"))
    assert 0 < difference.mean() < 2  # autocast did run, and the picture is the same to the eye


def test_a_full_disk_is_one_clear_line_and_leaves_earlier_outputs_untouched(tmp_path, model_file, capsys,
                                                                            monkeypatch):
    for name in ("a.png", "b.png"):
        write_noise_image(tmp_path / "in" / name, 20, 24, seed=len(name))
    old = write_noise_image(tmp_path / "out" / "b.png", 10, 10, seed=99)  # from an earlier run
    old_bytes = old.read_bytes()
    real_save = Image.Image.save

    def save_on_a_full_disk(image, fp, *args, **kwargs):
        if not Path(fp).name.startswith(".b."):  # the temporary file of b.png
            return real_save(image, fp, *args, **kwargs)
        Path(fp).write_bytes(b"\x89PNG\r\n\x1a\n half an image")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", save_on_a_full_disk)
    result = run_main_in_process(capsys, render_image.main, "--content-path", tmp_path / "in", "--model-path",
                                 model_file, "--output-path", tmp_path / "out")
    assert_clean_failure(result, f"cannot write {tmp_path / 'out' / 'b.png'}: No space left on device")
    assert files_under(tmp_path / "out") == {Path("a.png"), Path("b.png")}  # no partial temporary file
    assert old.read_bytes() == old_bytes
    with Image.open(tmp_path / "out" / "a.png") as image:
        assert image.size == (24, 20)


@pytest.mark.parametrize("runtime", ["torch", "openvino"])
@pytest.mark.parametrize("error,problem", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"), "out of memory"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
                  "you tried to allocate 21474836480 bytes."), "out of memory"),
    (MemoryError("std::bad_alloc"), "out of memory"),  # a C++ allocation failure, as pybind11 raises it
    (RuntimeError("Exception from src/plugins/intel_cpu/src/memory_desc/cpu_memory_desc.cpp: Failed to allocate "
                  "21474836480 bytes of memory"), "out of memory"),  # OpenVINO's CPU plugin
    # CUDA's reflection padding refuses planes past 2^31 values: 35 megapixels and up (seen on an H100)
    (RuntimeError("input tensor must fit into 32-bit index math"), "too large for the device's 32-bit indexing"),
], ids=["torch.OutOfMemoryError", "CPU allocator", "MemoryError", "OpenVINO", "CUDA 32-bit indexing"])
def test_an_image_too_large_for_the_device_suggests_max_size(tmp_path, model_file, capsys, monkeypatch, error,
                                                             problem, runtime):
    content = write_noise_image(tmp_path / "big.jpg", 30, 50, seed=2)
    fail_the_network(monkeypatch, runtime, error)
    before = files_under(tmp_path)
    result = run_main_in_process(capsys, render_image.main, "--content-path", content, "--model-path", model_file,
                                 "--output-path", tmp_path / "out.jpg", "--device", "cpu", "--runtime", runtime)
    assert_clean_failure(result, f"{content}: {problem} at 50x30 on cpu; try --max-size 25")
    assert files_under(tmp_path) == before


def test_outputs_get_the_permissions_of_any_new_file(tmp_path, model_file):
    content = write_noise_image(tmp_path / "c.png", 20, 24, seed=4)
    render(model_file, content, tmp_path / "out.jpg")
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "out.jpg").stat().st_mode) == 0o666 & ~umask  # not the temp file's 0600


@pytest.mark.parametrize("case", ["the same file", "the input's own folder", "the same file by a link",
                                  "the input folder", "the input folder by another path", "the input folder, png"])
def test_an_output_that_would_overwrite_the_input_is_refused(tmp_path, model_file, capsys, case):
    photos = tmp_path / "photos"
    photo = write_noise_image(photos / "photo.png", 20, 24, seed=0)
    write_noise_image(photos / "sub" / "other.jpg", 20, 24, seed=1)
    (tmp_path / "link.png").symlink_to(photo)
    content, output, extra = {
        "the same file": (photo, photo, []),
        "the input's own folder": (photo, photos, []),
        "the same file by a link": (photo, tmp_path / "link.png", []),
        "the input folder": (photos, photos, []),
        "the input folder by another path": (photos, photos / "sub" / "..", []),
        "the input folder, png": (photos, photos, ["--format", "png"]),
    }[case]
    before = {path: path.read_bytes() for path in photos.rglob("*") if path.is_file()}
    result = run_main_in_process(capsys, render_image.main, "--content-path", content, "--model-path", model_file,
                                 "--output-path", output, *extra)
    assert_clean_failure(result, "--output-path", "input")
    assert {path: path.read_bytes() for path in photos.rglob("*") if path.is_file()} == before


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims `width` x `height` pixels (its IHDR patched, the CRC made to match)."""
    import struct
    import zlib

    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)  # IHDR's data starts after the signature, length and type
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_an_image_claiming_absurd_dimensions_is_one_error_line(tmp_path, model_file):
    content = png_claiming(tmp_path / "forged.png", 100_000, 100_000)  # 10 gigapixels in 70 bytes
    result = run_script("render_image.py", "--content-path", content, "--model-path", model_file,
                        "--output-path", tmp_path / "out.png", "--max-size", "256", cwd=tmp_path)
    assert_clean_failure(result, str(content), "100000x100000", "megapixels")
    assert "Warning" not in result.stderr and not (tmp_path / "out.png").exists()


@pytest.mark.slow
def test_an_image_over_pillows_own_limits_loads_without_its_warning(tmp_path, recwarn):
    """Pillow warns (DecompressionBombWarning) above 89 megapixels and refuses above 179: images of any size
    must load, without Python's warning."""
    path = tmp_path / "large.png"
    Image.new("1", (15_000, 12_000), 1).save(path)  # 180 megapixels, a 1-bit PNG of a few hundred kB
    picture = image_io.open_picture(path)
    assert picture.rgb.size == (15_000, 12_000) and picture.rgb.getpixel((14_999, 11_999)) == (255, 255, 255)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_a_very_large_image_gets_one_warning_line_of_ours(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(image_io, "LARGE_PIXELS", 100)  # the module's own setting, instead of a huge file
    path = write_noise_image(tmp_path / "big.png", 12, 10, seed=1)
    capsys.readouterr()
    image_io.open_picture(path)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "megapixels" in lines[0], lines


def ramp(low: float, high: float) -> np.ndarray:
    return np.linspace(low, high, 16 * 20).reshape(16, 20)


@pytest.mark.parametrize("mode,values,expected", [
    ("F", ramp(0, 1), ramp(0, 255)),  # float in 0-1, the common convention (rendered black before)
    ("F", ramp(0, 255), ramp(0, 255)),  # float in 0-255
    ("F", ramp(0, 4), ramp(0, 255)),  # HDR: scaled by its maximum
    ("I", ramp(0, 65535), ramp(0, 255)),  # 32-bit integer holding 16-bit values
    ("I", ramp(0, 255), ramp(0, 255)),  # 32-bit integer holding 8-bit values (divided by 257 before: black)
    ("I", ramp(0, 1_000_000), ramp(0, 255)),  # 32-bit integer by its own range (was divided by 257: white)
    ("I;16", ramp(0, 65535), ramp(0, 255)),
], ids=["float 0-1", "float 0-255", "float HDR", "int32 16-bit range", "int32 8-bit range", "int32 wide range",
     "uint16"])
def test_float_and_32_bit_tiffs_are_read_by_their_range(tmp_path, mode, values, expected):
    path = tmp_path / "gray.tif"
    dtype = {"F": np.float32, "I": np.int32, "I;16": np.uint16}[mode]
    Image.fromarray(values.astype(dtype)).save(path)
    with Image.open(path) as written:
        assert written.mode == mode
    picture = image_io.open_picture(path)
    assert picture.grayscale
    assert np.abs(np.asarray(picture.rgb)[..., 0] - expected).max() <= 1
