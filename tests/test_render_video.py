import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
import torch

import evaluate_video
import render_video
from conftest import (
    assert_clean_failure,
    assert_usage_error,
    fail_the_network,
    files_under,
    run_main_in_process,
    run_script,
)
from conftest import (
    video_frames as frames,
)
from style_transfer import optical_flow, rendering, video_io
from transformer_net import TransformerNet
from utils import UserError

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def make_clip(path: Path, size: str = "64x48", rate: str = "12", seconds: float = 2, audio: str | None = "aac") -> Path:
    command = [FFMPEG, "-v", "error", "-f", "lavfi", "-i", f"testsrc=size={size}:rate={rate}"]
    if audio:
        command += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050", "-c:a", audio]
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([*command, "-t", str(seconds), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-y", str(path)],
                   check=True, stdin=subprocess.DEVNULL)
    return path


def streams(path: Path) -> str:
    """What `ffmpeg -i` says about the file (it exits non-zero for want of an output)."""
    return subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr


def duration(path: Path) -> float:
    hours, minutes, seconds = re.search(r"Duration: (\d+):(\d+):([\d.]+)", streams(path)).groups()
    return 3600 * int(hours) + 60 * int(minutes) + float(seconds)


def fps(path: Path) -> float:
    return cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FPS)


def audio_md5(path: Path) -> str:
    """A checksum of the audio packets as they are stored (equal when copied, not re-encoded)."""
    return subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", "0:a", "-c", "copy", "-f", "md5", "-"],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("video")
    torch.manual_seed(0)
    model = TransformerNet()
    with torch.no_grad():  # output around mid-grey, as a trained model's (an untrained one gives black)
        model.deconv3.conv2d.weight.mul_(30)
        model.deconv3.conv2d.bias.fill_(128)
    torch.save(model.state_dict(), folder / "my model.pth")
    make_clip(folder / "my clip.mp4")  # 24 frames, 12 fps, 2 s, with a sine tone
    return folder


def render(workdir: Path, output: Path, *extra: str, clip: Path | None = None) -> None:
    render_video.main(["--input", str(clip or workdir / "my clip.mp4"), "--model", str(workdir / "my model.pth"),
                       "--save-name", str(output), "--device", "cpu", *extra])


def test_the_output_keeps_frame_count_rate_duration_and_sound(workdir, tmp_path):
    source, output = workdir / "my clip.mp4", tmp_path / "out dir" / "styled.mp4"
    render(workdir, output, "--batch-size", "5")
    assert files_under(tmp_path / "out dir") == {Path("styled.mp4")}
    assert len(frames(output)) == len(frames(source)) == 24
    assert fps(output) == fps(source) == 12
    assert duration(output) == pytest.approx(duration(source), abs=0.03)
    description = streams(output)
    assert re.search(r"Video: h264 .*yuv420p.* 64x48", description), description
    assert "Audio: aac" in description
    assert audio_md5(output) == audio_md5(source)  # copied, not re-encoded
    assert np.abs(frames(output)[5] - frames(source)[5]).mean() > 10  # and it is stylised


def test_no_audio_leaves_the_sound_out(workdir, tmp_path):
    render(workdir, tmp_path / "silent.mp4", "--no-audio")
    assert "Audio:" not in streams(tmp_path / "silent.mp4")
    assert len(frames(tmp_path / "silent.mp4")) == 24


def test_resize_half_halves_both_sides(workdir, tmp_path):
    render(workdir, tmp_path / "small.mp4", "--resize", "0.5")
    decoded = frames(tmp_path / "small.mp4")
    assert len(decoded) == 24 and decoded[0].shape == (24, 32, 3)


def test_odd_sizes_are_padded_by_one_pixel_with_a_warning(workdir, tmp_path, capsys):
    render(workdir, tmp_path / "odd.mkv", "--resize", "0.77", "--no-audio")  # 49x37
    decoded = frames(tmp_path / "odd.mkv")
    assert len(decoded) == 24 and decoded[0].shape == (38, 50, 3)
    assert "needs even sides" in capsys.readouterr().err


def test_strength_zero_gives_back_the_source(workdir, tmp_path):
    render(workdir, tmp_path / "same.mp4", "--strength", "0", "--crf", "10")
    for ours, theirs in zip(frames(tmp_path / "same.mp4"), frames(workdir / "my clip.mp4"), strict=True):
        assert np.abs(ours - theirs).mean() < 3  # two lossy encodes apart


def test_an_ntsc_frame_rate_is_kept_exactly(tmp_path, workdir):
    clip = make_clip(tmp_path / "ntsc.mp4", size="32x24", rate="30000/1001", seconds=0.5, audio=None)
    render(workdir, tmp_path / "out.mp4", clip=clip)
    assert Fraction(fps(tmp_path / "out.mp4")).limit_denominator(1001) == Fraction(30000, 1001)
    assert len(frames(tmp_path / "out.mp4")) == len(frames(clip)) == 15
    assert "29.97 fps" in streams(tmp_path / "out.mp4")


def test_sound_that_mp4_cannot_hold_is_re_encoded_to_aac(workdir, tmp_path, capsys):
    clip = make_clip(tmp_path / "mulaw.mkv", size="32x24", seconds=1, audio="pcm_mulaw")
    render(workdir, tmp_path / "out.mp4", clip=clip)
    assert "Audio: aac" in streams(tmp_path / "out.mp4")
    assert duration(tmp_path / "out.mp4") == pytest.approx(duration(clip), abs=0.05)
    assert "re-encoding to AAC" in capsys.readouterr().err


def test_without_ffmpeg_it_falls_back_to_opencv_with_one_warning(workdir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(video_io, "find_ffmpeg", lambda: None)
    render(workdir, tmp_path / "fallback.mp4")
    assert len(frames(tmp_path / "fallback.mp4")) == 24 and fps(tmp_path / "fallback.mp4") == 12
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "ffmpeg" in warnings[0]


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_an_interruption_mid_way_leaves_no_file(workdir, tmp_path, monkeypatch, error):
    calls = []

    def stylize_then_fail(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise error("stop")
        return real_stylize(*args, **kwargs)

    real_stylize = rendering.stylize
    monkeypatch.setattr(rendering, "stylize", stylize_then_fail)
    with pytest.raises(error):
        render(workdir, tmp_path / "out" / "never.mp4", "--batch-size", "2")
    assert files_under(tmp_path / "out") == set()


def test_an_encoder_failure_is_one_clear_line_and_leaves_no_file(workdir, tmp_path, monkeypatch):
    monkeypatch.setattr(video_io, "X264_PRESETS", [*video_io.X264_PRESETS, "no-such-preset"])
    with pytest.raises(UserError, match="ffmpeg failed") as error:
        render(workdir, tmp_path / "out" / "never.mp4", "--preset", "no-such-preset")
    assert "\n" not in str(error.value)
    assert files_under(tmp_path / "out") == set()


def bad_input(workdir: Path, tmp_path: Path, case: str) -> tuple[list, str]:
    clip, model, out = workdir / "my clip.mp4", workdir / "my model.pth", tmp_path / "out.mp4"
    if case == "missing video":
        return [tmp_path / "nope.mp4", model, out], "nope.mp4"
    if case == "unreadable video":
        (tmp_path / "fake.mp4").write_text("not a video")
        return [tmp_path / "fake.mp4", model, out], "cannot read video"
    if case == "empty file":
        (tmp_path / "empty.mp4").write_bytes(b"")
        return [tmp_path / "empty.mp4", model, out], "cannot read video"
    if case == "0-frame video":
        subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=12", "-frames:v", "0",
                        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-y", str(tmp_path / "no frames.mp4")], check=True)
        return [tmp_path / "no frames.mp4", model, out], "cannot read video"
    if case == "truncated video":  # a download cut off: ffmpeg writes the index at the end, so it is lost
        (tmp_path / "cut.mp4").write_bytes(clip.read_bytes()[:clip.stat().st_size // 2])
        return [tmp_path / "cut.mp4", model, out], "cannot read video"
    if case == "missing model":
        return [clip, tmp_path / "nope.pth", out], "nope.pth"
    if case == "truncated model":
        (tmp_path / "cut.pth").write_bytes(model.read_bytes()[:100_000])
        return [clip, tmp_path / "cut.pth", out], "truncated or corrupt"
    if case == "unwritable output":
        (tmp_path / "a file").write_text("")
        return [clip, model, tmp_path / "a file" / "out.mp4"], "cannot write"
    assert case == "unknown extension"
    return [clip, model, tmp_path / "out.gif"], "should end in"


@pytest.mark.parametrize("case", ["missing video", "unreadable video", "empty file", "0-frame video",
                                  "truncated video", "missing model", "truncated model", "unwritable output",
                                  "unknown extension"])
def test_bad_input_is_one_clear_line_and_leaves_no_output(workdir, tmp_path, case):
    (clip, model, output), expected = bad_input(workdir, tmp_path, case)
    before = files_under(tmp_path)
    with pytest.raises(UserError) as error:
        render_video.main(["--input", str(clip), "--model", str(model), "--save-name", str(output)])
    assert expected in str(error.value) and "\n" not in str(error.value)
    assert files_under(tmp_path) == before


def test_the_command_line_reports_an_unreadable_video_in_one_line(workdir, tmp_path):
    (clip, model, output), expected = bad_input(workdir, tmp_path, "unreadable video")
    before = files_under(tmp_path)
    result = run_script("render_video.py", "--input", clip, "--model", model, "--save-name", output, cwd=tmp_path)
    assert_clean_failure(result, expected, str(clip))
    assert result.stderr.strip().splitlines() == [line for line in result.stderr.strip().splitlines()
                                                  if line.startswith("error:")]  # nothing from OpenCV either
    assert files_under(tmp_path) == before


def test_a_video_without_sound_renders_without_sound(workdir, tmp_path, capsys):
    clip = make_clip(tmp_path / "silent clip.mp4", size="32x24", seconds=1, audio=None)
    result = run_main_in_process(capsys, render_video.main, "--input", clip, "--model", workdir / "my model.pth",
                                 "--save-name", tmp_path / "out.mp4", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr and "without sound" in result.stdout
    assert "Audio:" not in streams(tmp_path / "out.mp4")
    assert len(frames(tmp_path / "out.mp4")) == len(frames(clip)) == 12


def test_a_video_cut_short_renders_the_frames_it_has_with_a_warning(workdir, tmp_path, capsys):
    whole = tmp_path / "whole.mp4"  # the index at the start (as streamed files have it), so half a file plays
    subprocess.run([FFMPEG, "-v", "error", "-i", str(workdir / "my clip.mp4"), "-c", "copy", "-movflags", "+faststart",
                    "-y", str(whole)], check=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    render(workdir, tmp_path / "out.mp4", clip=cut)
    decoded = len(frames(cut))  # a frame lost inside the file: the one before is held for its time, so the output
    # may have more frames than could be decoded
    assert 0 < decoded <= len(frames(tmp_path / "out.mp4")) < 24
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and f"only {decoded} of the 24 frames" in warnings[0]


def test_a_full_disk_is_one_clear_line_and_leaves_the_earlier_output_untouched(workdir, tmp_path, capsys, monkeypatch):
    if not Path("/dev/full").exists():
        pytest.skip("needs Linux's /dev/full")
    fake = tmp_path / "ffmpeg"  # the real ffmpeg, but an encode writes to /dev/full: every write fails with ENOSPC
    fake.write_text(f"""#!/bin/bash
if [[ " $* " == *" pipe:0 "* ]]; then
    set -- "${{@:1:$#-1}}" -f mp4 /dev/full
fi
exec {FFMPEG} "$@"
""")
    fake.chmod(0o755)
    monkeypatch.setattr(video_io, "find_ffmpeg", lambda: str(fake))
    output = tmp_path / "out" / "styled.mp4"
    output.parent.mkdir()
    output.write_bytes(b"an earlier render")
    result = run_main_in_process(capsys, render_video.main, "--input", workdir / "my clip.mp4", "--model",
                                 workdir / "my model.pth", "--save-name", output, "--device", "cpu")
    assert_clean_failure(result, "ffmpeg failed", "No space left on device")
    assert files_under(tmp_path / "out") == {Path("styled.mp4")}
    assert output.read_bytes() == b"an earlier render"


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
                 "you tried to allocate 21474836480 bytes."),
], ids=["torch.OutOfMemoryError", "CPU allocator"])
@pytest.mark.parametrize("runtime", ["torch", "openvino"])
def test_frames_too_large_for_memory_suggest_smaller_settings(workdir, tmp_path, capsys, monkeypatch, error, runtime):
    fail_the_network(monkeypatch, runtime, error)
    result = run_main_in_process(capsys, render_video.main, "--input", workdir / "my clip.mp4", "--model",
                                 workdir / "my model.pth", "--save-name", tmp_path / "out" / "never.mp4",
                                 "--device", "cpu", "--batch-size", "4", "--runtime", runtime)
    assert_clean_failure(result, "out of memory at 64x48 (4 frames at once) on cpu; try --batch-size 1 or --resize 0.5")
    assert files_under(tmp_path / "out") == set()


@pytest.mark.parametrize("flags", [["--batch-size", "0"], ["--batch-size", "-1"]])
def test_a_batch_size_of_zero_or_less_is_refused_by_the_flag_parser(workdir, tmp_path, capsys, flags):
    result = run_main_in_process(capsys, render_video.main, "--input", workdir / "my clip.mp4", "--model",
                                 workdir / "my model.pth", "--save-name", tmp_path / "out.mp4", *flags)
    assert_usage_error(result, "--batch-size", "invalid positive integer value")
    assert files_under(tmp_path) == set()


def test_frames_reach_the_network_as_contiguous_nchw(workdir, tmp_path, monkeypatch):
    """permute() alone would hand the network channels_last strides, the layout benchmark.py measured as slower."""
    seen = []
    real_stylize = rendering.stylize

    def recording_stylize(model, batch, *args, **kwargs):
        seen.append((tuple(batch.shape), batch.is_contiguous()))
        return real_stylize(model, batch, *args, **kwargs)

    monkeypatch.setattr(rendering, "stylize", recording_stylize)
    render(workdir, tmp_path / "out.mp4", "--batch-size", "5", "--no-audio")
    assert seen and all(shape[1:] == (3, 48, 64) and contiguous for shape, contiguous in seen), seen


def camera_like_frames(count: int, width: int = 64, height: int = 48) -> list[np.ndarray]:
    """A slow pan over a smooth, colourful picture: what a camera films, unlike testsrc's hard-edged bars."""
    rng = np.random.default_rng(7)
    scene = cv2.GaussianBlur(cv2.resize(rng.integers(0, 256, (9, 12, 3), dtype=np.uint8), (2 * width, 2 * height),
                                        interpolation=cv2.INTER_CUBIC), (0, 0), 3)
    return [np.ascontiguousarray(scene[i:i + height, 2 * i:2 * i + width]) for i in range(count)]


def rgb_from_ffmpeg(path: Path, width: int = 64, height: int = 48) -> np.ndarray:
    """The frames as ffmpeg itself decodes them (its colour matrix and range from the stream's tags)."""
    raw = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3).astype(np.float64)


@pytest.mark.parametrize("colours", ["full range", "BT.601", "BT.709"])
def test_colours_survive_full_range_bt601_and_bt709_sources(workdir, tmp_path, colours):
    matrix, value_range, tags, name = {
        "full range": ("bt709", "full", ["-color_range", "pc", "-colorspace", "bt709"], "full.mkv"),
        "BT.601": ("bt601", "tv", ["-color_range", "tv", "-colorspace", "smpte170m", "-color_primaries", "smpte170m",
                                   "-color_trc", "smpte170m"], "bt601.mp4"),
        "BT.709": ("bt709", "tv", ["-color_range", "tv", "-colorspace", "bt709", "-color_primaries", "bt709",
                                   "-color_trc", "bt709"], "bt709.mp4"),
    }[colours]
    clip = tmp_path / name
    encoder = subprocess.Popen([FFMPEG, "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "64x48",
                                "-framerate", "12", "-i", "pipe:0", "-vf",
                                f"scale=out_color_matrix={matrix}:out_range={value_range}", "-c:v", "libx264", "-crf",
                                "12", "-pix_fmt", "yuv420p", *tags, "-y", str(clip)], stdin=subprocess.PIPE)
    encoder.communicate(b"".join(frame.tobytes() for frame in camera_like_frames(12)))
    assert encoder.returncode == 0
    render(workdir, tmp_path / "out.mp4", "--strength", "0", "--crf", "12", clip=clip)
    source, output = rgb_from_ffmpeg(clip), rgb_from_ffmpeg(tmp_path / "out.mp4")
    assert source.shape == output.shape == (12, 48, 64, 3)
    psnr = 10 * np.log10(255 ** 2 / np.mean((output - source) ** 2))
    assert psnr >= 38, f"{psnr:.1f} dB"


def test_a_variable_frame_rate_video_keeps_picture_and_sound_in_sync(workdir, tmp_path):
    """A phone-like clip: 1 s at 30 fps, then 1 s at 15 fps, with sound. The output, at the source's average rate,
    shows at each moment the frame the source shows then (the last one due, within half an output frame), and
    lasts as long as the source."""
    clip = tmp_path / "variable.mp4"
    numbered = "color=c=gray:size=64x48:rate=30,geq=lum='40+N*3':cb=128:cr=128"  # frame n: gray 40+3n
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", numbered, "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=22050", "-t", "2",
                    "-vf", r"select='lt(n\,30)+not(mod(n\,2))'", "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt",
                    "yuv420p", "-c:a", "aac", "-y", str(clip)], check=True, stdin=subprocess.DEVNULL)
    capture, shown_from = cv2.VideoCapture(str(clip)), []
    while (decoded := capture.read())[0]:
        shown_from.append((capture.get(cv2.CAP_PROP_POS_MSEC) / 1000, decoded[1][..., ::-1].astype(np.int16)))
    assert len(shown_from) == 45 and shown_from[31][0] - shown_from[30][0] == pytest.approx(1 / 15, abs=1e-3)
    render(workdir, tmp_path / "out.mp4", "--strength", "0", clip=clip)
    rate = fps(tmp_path / "out.mp4")
    output = frames(tmp_path / "out.mp4")
    assert abs(len(output) / rate - 2) <= 1 / 15  # the picture lasts as long as the source's
    assert duration(tmp_path / "out.mp4") == pytest.approx(duration(clip), abs=1 / 15)
    assert "Audio: aac" in streams(tmp_path / "out.mp4")
    starts = [start for start, _ in shown_from] + [2.0]
    for k, frame in enumerate(output):
        n = min(range(45), key=lambda i: np.abs(shown_from[i][1] - frame).mean())  # the source frame it shows
        now = k / rate
        assert starts[n] - 0.5 / rate <= now < starts[n + 1] + 0.5 / rate, (k, n, now, starts[n])


def test_the_warping_error_of_a_variable_frame_rate_video_compares_the_frames_render_video_placed(workdir,
                                                                                                  tmp_path):
    """A moving clip at 30 fps, then 15 fps: render_video.py places its frames at the average rate, so
    evaluate_video.py must read the source the same way, or each stylised frame meets another frame's motion.
    At --strength 0 the output is the source itself, so its warping error is the source's own (small)."""
    clip = tmp_path / "variable.mp4"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=30", "-t", "2",
                    "-vf", r"select='lt(n\,30)+not(mod(n\,2))'", "-fps_mode", "vfr", "-c:v", "libx264", "-crf", "12",
                    "-pix_fmt", "yuv420p", "-y", str(clip)], check=True, stdin=subprocess.DEVNULL)
    render(workdir, tmp_path / "out.mp4", "--strength", "0", "--no-temporal", "--crf", "12", clip=clip)
    constant = tmp_path / "constant.mp4"  # the same moving picture at a constant 30 fps, rendered alike
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=30", "-t", "2",
                    "-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv420p", "-y", str(constant)], check=True,
                   stdin=subprocess.DEVNULL)
    render(workdir, tmp_path / "constant-out.mp4", "--strength", "0", "--no-temporal", "--crf", "12", clip=constant)
    flow = optical_flow.FlowEstimator("dis")
    variable = evaluate_video.evaluate(clip, tmp_path / "out.mp4", flow)["warping_error"]
    steady = evaluate_video.evaluate(constant, tmp_path / "constant-out.mp4", flow)["warping_error"]
    assert variable < 2 * steady + 0.5, (variable, steady)


def test_a_constant_rate_keeps_every_frame_and_a_variable_one_is_placed_by_its_timestamps():
    def out(timestamps, fps):
        rate, shown = video_io.ConstantRate(fps), []
        for n, t in enumerate(timestamps):
            repeats, due = rate.place(t)
            shown += [shown[-1]] * repeats if repeats else []
            shown += [n] if due else []
        return shown

    assert out([i / 25 + 0.04 for i in range(50)], Fraction(25)) == list(range(50))  # the start offset is ignored
    assert out([0, 0.1, 0.3, 0.35, 0.4], Fraction(10)) == [0, 1, 1, 2, 3]  # 1 held for its time; 4's slot is taken
    assert out([0, 0, 0], Fraction(10)) == [0, 1, 2]  # no usable timestamps: every frame, in order
    assert out([0, 0.5], None) == [0, 1]


def aspect(path: Path) -> tuple[str, str]:
    """The video stream's sample and display aspect ratios as `ffmpeg -i` gives them, e.g. ("16:11", "64:33")."""
    return re.search(r"Video: .*\[SAR (\d+:\d+) DAR (\d+:\d+)\]", streams(path)).groups()


@pytest.mark.parametrize("resize", ["1", "0.5"])
def test_anamorphic_video_keeps_its_sample_aspect_ratio(workdir, tmp_path, resize):
    """DV and HDV store non-square pixels: without the source's SAR the output was shown squeezed."""
    source = tmp_path / "anamorphic.mp4"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=12", "-t", "0.5",
                    "-vf", "setsar=16/11", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-y", str(source)],
                   check=True, stdin=subprocess.DEVNULL)
    assert aspect(source) == ("16:11", "64:33")
    render(workdir, tmp_path / "styled.mp4", "--no-temporal", "--resize", resize, clip=source)
    assert aspect(tmp_path / "styled.mp4") == ("16:11", "64:33")


def test_an_mkv_whose_sound_outlasts_its_picture_is_counted_by_its_video(workdir, tmp_path, capsys):
    """OpenCV counts a Matroska file's frames from the container's duration, which its sound may set: 10 frames of
    picture with 2 s of sound were announced as 20, with a false "damaged or cut short?" warning."""
    source = tmp_path / "long sound.mkv"
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=1",
                    "-f", "lavfi", "-i", "sine=duration=2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    "-y", str(source)], check=True, stdin=subprocess.DEVNULL)
    assert video_io.probe_video(source, FFMPEG).frames == 10  # the progress bar's total
    result = run_main_in_process(capsys, render_video.main, "--input", source, "--model", workdir / "my model.pth",
                                 "--save-name", tmp_path / "styled.mkv", "--device", "cpu", "--no-temporal")
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    assert len(frames(tmp_path / "styled.mkv")) == 10


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("clang++")), reason="torch.compile needs a C++ compiler")
def test_compile_compiles_once_for_a_clip_whose_last_batch_is_short(workdir, tmp_path):
    """10 frames in batches of 4: the last batch of 2 used to be compiled anew (10-15 s per clip on a GPU)."""
    from torch._dynamo.utils import counters

    source = make_clip(tmp_path / "ten frames.mp4", size="32x24", rate="10", seconds=1, audio=None)
    torch._dynamo.reset()
    counters.clear()
    render(workdir, tmp_path / "styled.mp4", "--compile", "--batch-size", "4", "--no-temporal", "--precision", "fp32",
           clip=source)
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    assert len(frames(tmp_path / "styled.mp4")) == 10
