"""Choosing and mixing the styles of a conditional model when rendering: render_image.py and
render_video.py --style, --style-mix, --list-styles, render_video.py --style-schedule, the shell scripts' STYLE,
STYLE_MIX and STYLE_SCHEDULE, and the interpolation strip of tools/make_figures.py drawn from one model."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import make_figures
import numpy as np
import pytest
from PIL import Image

import render_image
import render_video
from conftest import (
    ROOT,
    assert_clean_failure,
    files_under,
    run_main_in_process,
    run_script,
    write_noise_image,
)
from conftest import (
    video_frames as frames,
)
from style_transfer import style_choice


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_noise_image(tmp_path_factory.mktemp("photo") / "photo.png", 28, 36, seed=5)


def rendered(tmp_path: Path, model: Path, photo: Path, *flags: str) -> np.ndarray:
    output = tmp_path / f"out{len(list(tmp_path.glob('out*')))}.png"
    render_image.main(["--content-path", str(photo), "--model-path", str(model), "--output-path", str(output),
                       "--device", "cpu", "--precision", "fp32", *flags])
    with Image.open(output) as image:
        return np.asarray(image, np.float64)


def test_a_style_is_chosen_by_name_number_or_mix_and_the_first_is_the_default(tmp_path, models, photo):
    model = models["conditional"]
    default = rendered(tmp_path, model, photo)
    assert np.array_equal(rendered(tmp_path, model, photo, "--style", "warm"), default)
    assert np.array_equal(rendered(tmp_path, model, photo, "--style", "0"), default)
    cold = rendered(tmp_path, model, photo, "--style", "cold")
    assert np.array_equal(rendered(tmp_path, model, photo, "--style", "1"), cold)
    assert np.array_equal(rendered(tmp_path, model, photo, "--style-mix", "0,3"), cold)  # normalised
    assert np.abs(cold - default).mean() > 5


def test_a_mix_lies_between_its_styles(tmp_path, models, photo):
    model = models["conditional"]
    warm = rendered(tmp_path, model, photo, "--style", "warm")
    cold = rendered(tmp_path, model, photo, "--style", "cold")
    distances = []
    for mix in ("0.75,0.25", "0.5,0.5", "0.25,0.75"):
        mixed = rendered(tmp_path, model, photo, "--style-mix", mix)
        distances.append((np.abs(mixed - warm).mean(), np.abs(mixed - cold).mean()))
    assert all(0 < to_warm and 0 < to_cold for to_warm, to_cold in distances)
    assert [d[0] for d in distances] == sorted(d[0] for d in distances)  # away from warm
    assert [d[1] for d in distances] == sorted((d[1] for d in distances), reverse=True)  # towards cold


def test_a_plain_model_takes_its_one_style(tmp_path, models, photo):
    plain = rendered(tmp_path, models["plain"], photo)
    assert np.array_equal(rendered(tmp_path, models["plain"], photo, "--style-mix", "1"), plain)
    assert np.array_equal(rendered(tmp_path, models["plain"], photo, "--style", "0"), plain)


@pytest.mark.parametrize("main", [render_image.main, render_video.main], ids=["render_image", "render_video"])
def test_list_styles_needs_only_the_model(capsys, models, main):
    result = run_main_in_process(capsys, main, "--model", models["conditional"], "--list-styles")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == ["  0  warm", "  1  cold"]
    assert "2 styles" in result.stdout.splitlines()[0]
    result = run_main_in_process(capsys, main, "--list-styles", "--model-path", models["plain"])
    assert result.returncode == 0 and "a plain model with one style" in result.stdout


@pytest.mark.parametrize("case,flags,expected", [
    ("weight count", ["--style-mix", "0.2,0.3,0.5"], ("--style-mix", "3 weights given", "2 styles (0 warm, 1 cold)")),
    ("negative weight", ["--style-mix", "1,-0.5"], ("--style-mix", "non-negative")),
    ("zero weights", ["--style-mix", "0,0"], ("--style-mix", "all zero")),
    ("not numbers", ["--style-mix", "warm,cold"], ("--style-mix", "not a comma-separated list of numbers")),
    ("unknown name", ["--style", "hot"], ("--style", "no style 'hot'", "0 warm, 1 cold")),
    ("unknown number", ["--style", "2"], ("--style", "no style '2'")),
    ("style and mix", ["--style", "warm", "--style-mix", "1,0"], ("either --style or --style-mix",)),
    ("plain model mixed", ["--style-mix", "0.5,0.5"], ("--style-mix", "plain model with one style",
                                                       "train.py --conditional")),
    ("plain model second style", ["--style", "1"], ("--style", "plain model with one style")),
    ("list without model", ["--list-styles"], ("--list-styles", "--model-path")),
])
def test_a_bad_style_choice_is_one_clear_line_and_writes_nothing(tmp_path, models, photo, case, flags, expected):
    model = models["plain" if case.startswith("plain") else "conditional"]
    output = tmp_path / "out" / "result.png"
    arguments = ["--content-path", photo, "--output-path", output, *flags]
    if case != "list without model":
        arguments += ["--model-path", model]
    result = run_script("render_image.py", *arguments, cwd=tmp_path)
    assert_clean_failure(result, *expected)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- video

def make_clip(path: Path) -> Path:
    """24 frames of 64x48 at 12 fps: 2 seconds."""
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=12",
                    "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-y", str(path)], check=True,
                   stdin=subprocess.DEVNULL)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


def video(tmp_path: Path, clip: Path, model: Path, name: str, *flags: str) -> list[np.ndarray]:
    """The frames, encoded losslessly (--crf 0), so that equal frames decode equal; each frame stylised on its own
    (--no-temporal), so that a frame shows its own mix and nothing of the frames before it."""
    render_video.main(["--input", str(clip), "--model", str(model), "--save-name", str(tmp_path / name), "--device",
                       "cpu", "--precision", "fp32", "--crf", "0", "--no-temporal", *flags])
    return frames(tmp_path / name)


def test_a_style_schedule_holds_then_morphs_frame_by_frame(tmp_path, clip, models):
    model = models["conditional"]
    warm = video(tmp_path, clip, model, "warm.mp4", "--style", "warm")
    cold = video(tmp_path, clip, model, "cold.mp4", "--style-mix", "0,1")
    # warm alone until 0.5 s (frame 6), cold alone from 1.5 s (frame 18), a linear morph in between
    morph = video(tmp_path, clip, model, "morph.mp4", "--style-schedule", "0.5:warm;1.5:0,1")
    assert len(morph) == len(warm) == 24
    to_warm = [np.abs(m - w).mean() for m, w in zip(morph, warm, strict=True)]
    to_cold = [np.abs(m - c).mean() for m, c in zip(morph, cold, strict=True)]
    apart = np.mean([np.abs(w - c).mean() for w, c in zip(warm, cold, strict=True)])
    assert apart > 5
    assert max(to_warm[:7]) < 0.1 and max(to_cold[18:]) < 0.1  # held
    assert all(to_warm[k] > 1 and to_cold[k] > 1 for k in range(8, 17))  # in between
    assert to_warm[8] < to_warm[12] < to_warm[16] and to_cold[8] > to_cold[12] > to_cold[16]
    # Each frame of a batch gets its own mix: batches of 4 give the frames of batches of 1.
    batched = video(tmp_path, clip, model, "batched.mp4", "--style-schedule", "0.5:warm;1.5:0,1", "--batch-size", "4")
    assert max(np.abs(b - m).mean() for b, m in zip(batched, morph, strict=True)) < 0.5


def test_a_schedule_gives_the_mix_of_each_moment():
    schedule = style_choice.StyleSchedule([1.0, 3.0, 4.0], [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    mixes = schedule.mixes([0.0, 1.0, 1.5, 3.0, 3.5, 4.0, 9.0]).tolist()
    assert mixes == [[1, 0], [1, 0], [0.75, 0.25], [0, 1], [0.25, 0.75], [0.5, 0.5], [0.5, 0.5]]


@pytest.mark.parametrize("case,flags,expected", [
    ("times not increasing", ["--style-schedule", "2:1,0;1:0,1"], ("--style-schedule", "must increase")),
    ("no time", ["--style-schedule", "1,0"], ("--style-schedule", "TIME:MIX")),
    ("negative time", ["--style-schedule=-1:1,0"], ("--style-schedule", "TIME:MIX")),
    ("weight count", ["--style-schedule", "0:1,0;1:0,0,1"], ("--style-schedule at 1 s", "3 weights given")),
    ("unknown style", ["--style-schedule", "0:warm;1:hot"], ("--style-schedule at 1 s", "no style 'hot'")),
    ("zero weights", ["--style-schedule", "0:0,0"], ("--style-schedule at 0 s", "all zero")),
    ("with a style", ["--style-schedule", "0:1,0", "--style", "warm"], ("--style-schedule", "not both")),
    ("plain model", ["--style-schedule", "0:0;2:0"], ("--style-schedule", "plain model", "--conditional")),
])
def test_a_bad_style_schedule_is_one_clear_line_and_writes_nothing(tmp_path, clip, models, capsys, case, flags,
                                                                   expected):
    model = models["plain" if case == "plain model" else "conditional"]
    result = run_main_in_process(capsys, render_video.main, "--input", clip, "--model", model, "--save-name",
                                 tmp_path / "out" / "morph.mp4", "--device", "cpu", *flags)
    assert_clean_failure(result, *expected)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- shell scripts and figures

@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_render_image_sh_passes_style_mix_from_the_environment(tmp_path, models, photo):
    if not (Path(sys.prefix) / ".requirements.sha256").exists():
        pytest.skip("not running inside a venv made by setup_env.sh")
    outputs = {}
    for name, variables in (("mix", {"STYLE_MIX": "0,1"}), ("style", {"STYLE": "cold"})):
        environment = {**os.environ, "VENV_DIR": sys.prefix, "MODEL": str(models["conditional"]),
                       "CONTENT": str(photo), "OUTPUT": str(tmp_path / f"{name}.png"), "DEVICE": "cpu",
                       "PRECISION": "fp32", **variables}
        result = subprocess.run(["bash", str(ROOT / "render_image.sh")], env=environment, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        with Image.open(tmp_path / f"{name}.png") as image:
            outputs[name] = np.asarray(image, np.float64)
    assert np.array_equal(outputs["mix"], outputs["style"])
    assert np.array_equal(outputs["mix"], rendered(tmp_path, models["conditional"], photo, "--style", "cold"))


def test_the_interpolation_strip_can_be_drawn_from_one_conditional_model(tmp_path, models, photo):
    strip = make_figures.interpolation_strip(photo, models["conditional"])
    tiles = np.asarray(strip, np.float64)
    assert strip.height == make_figures.TILE + make_figures.LABEL
    width = (strip.width - 4 * 6) // 5  # five tiles, four gaps
    pictures = [tiles[:make_figures.TILE, i * (width + 6):i * (width + 6) + width] for i in range(5)]
    steps = [np.abs(a - b).mean() for a, b in zip(pictures, pictures[1:], strict=False)]
    assert all(step > 1 for step in steps)  # every weight looks different from the next
    before = files_under(tmp_path)
    with pytest.raises(make_figures.utils.UserError, match="--interpolation-model: .* has 1 style"):
        make_figures.main(["--output-dir", str(tmp_path / "figures"), "--interpolation-model", str(models["plain"])])
    assert files_under(tmp_path) == before


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_render_image_sh_mixes_the_bundled_model_only_when_nothing_else_is_chosen(tmp_path, models, photo):
    if not (Path(sys.prefix) / ".requirements.sha256").exists():
        pytest.skip("not running inside a venv made by setup_env.sh")

    def run_script(name: str, *arguments: str, model: str | None = None) -> np.ndarray:
        environment = {**os.environ, "VENV_DIR": sys.prefix, "CONTENT": str(photo),
                       "OUTPUT": str(tmp_path / f"{name}.png"), "DEVICE": "cpu", "PRECISION": "fp32"}
        environment.pop("MODEL", None)
        if model is not None:
            environment["MODEL"] = model
        result = subprocess.run(["bash", str(ROOT / "render_image.sh"), *arguments], env=environment,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        with Image.open(tmp_path / f"{name}.png") as image:
            return np.asarray(image, np.float64)

    bundled = ROOT / "models/all-styles.pth"
    even = rendered(tmp_path, bundled, photo, "--style-mix", "0.5,0.5")
    assert np.array_equal(run_script("default"), even)
    # the bundled model named otherwise is still the bundled model (the guard compared the text)
    assert np.array_equal(run_script("named", model="./models/all-styles.pth"), even)
    # a style among the extra arguments, or another model, is not mixed with the default's even mix
    assert np.array_equal(run_script("style", "--style", "1"), rendered(tmp_path, bundled, photo, "--style", "1"))
    plain = run_script("plain", "--model-path", str(models["plain"]))
    assert np.array_equal(plain, rendered(tmp_path, models["plain"], photo))


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("flag", ["--model-path", "--model"])
def test_render_video_sh_does_not_mix_another_model_given_as_an_extra_argument(tmp_path, clip, models, flag):
    """render_video.sh's guard once listed --model but not --model-path: a plain model given so got the bundled
    model's even mix, which a plain model refuses. Both scripts now share one list (tools/even_mix.sh)."""
    if not (Path(sys.prefix) / ".requirements.sha256").exists():
        pytest.skip("not running inside a venv made by setup_env.sh")
    environment = {**os.environ, "VENV_DIR": sys.prefix, "INPUT": str(clip), "SAVE_NAME": str(tmp_path / "out.mp4"),
                   "DEVICE": "cpu", "PRECISION": "fp32"}
    environment.pop("MODEL", None)
    result = subprocess.run(["bash", str(ROOT / "render_video.sh"), flag, str(models["plain"]), "--no-temporal",
                             "--crf", "0"], env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert np.array_equal(frames(tmp_path / "out.mp4"), video(tmp_path, clip, models["plain"], "direct.mp4"))
