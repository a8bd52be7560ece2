"""Flicker: the warping error (evaluate_video.py), render_video.py --temporal, and --temporal-weight."""

import csv
import itertools
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import distillation
import evaluate_video
import render_video
import train
from conftest import (
    ROOT,
    assert_clean_failure,
    assert_usage_error,
    run_main_in_process,
    save_random_model,
    train_args,
)
from style_transfer import optical_flow, temporal_blend, temporal_loss, video_io
from style_transfer.warping_error import WarpingError

FPS = 12


def scene(seed: int, height: int = 96, width: int = 128) -> np.ndarray:
    """A smooth random RGB uint8 picture (blurred noise), larger than the frames cut from it."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 6, width // 6, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def pan(picture: np.ndarray, frames: int, step: int = 2, size: tuple[int, int] = (64, 48)) -> list[np.ndarray]:
    """`frames` views of `picture` moving right by `step` pixels a frame (even steps: H.264's half-resolution
    colour then samples the same points of the picture in every frame)."""
    return [np.ascontiguousarray(picture[10:10 + size[1], 10 + i * step:10 + i * step + size[0]])
            for i in range(frames)]


def write_clip(path: Path, frames: list[np.ndarray]) -> Path:
    """Frames as a near-lossless H.264 clip at 12 fps."""
    height, width = frames[0].shape[:2]
    writer = video_io.VideoWriter(path, (width, height), Fraction(FPS), video_io.find_ffmpeg(), crf=0)
    writer.write(np.stack(frames))
    writer.close()
    return path


def warping_error(capsys, source: Path, stylised: Path, *extra: str) -> float:
    result = run_main_in_process(capsys, evaluate_video.main, source, stylised, *extra)
    assert result.returncode == 0, result.stderr
    return float(re.search(r"^warping error: ([\d.]+)$", result.stdout, re.M).group(1))


def render(source: Path, model: Path, output: Path, *extra: str) -> Path:
    render_video.main(["--input", str(source), "--model", str(model), "--save-name", str(output), "--device", "cpu",
                       *extra])
    return output


@pytest.fixture(scope="module")
def flickery_model(tmp_path_factory) -> Path:
    """A random network: its output follows every small change of its input, as a sharp style's does."""
    return save_random_model(tmp_path_factory.mktemp("model") / "random.pth")


@pytest.fixture(scope="module")
def panning_clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "pan.mp4", pan(scene(0), 10))


# ---------------------------------------------------------------- the metric

def test_a_static_clip_stylised_frame_by_frame_has_no_warping_error(tmp_path, capsys, flickery_model):
    source = write_clip(tmp_path / "static.mp4", [scene(1)[:48, :64]] * 8)
    stylised = render(source, flickery_model, tmp_path / "styled.mp4", "--no-temporal")
    assert warping_error(capsys, source, stylised) < 0.05


def test_a_stylisation_that_is_random_noise_per_frame_has_a_large_warping_error(tmp_path, capsys, panning_clip):
    rng = np.random.default_rng(0)
    noise = write_clip(tmp_path / "noise.mp4", [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(10)])
    assert warping_error(capsys, panning_clip, noise) > 30  # uniform noise: 1000 * 2/12 = 167 before compression
    assert warping_error(capsys, panning_clip, panning_clip) < 1  # the source itself follows its own motion


def moving_square() -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]]:
    """Two frames of a textured square moving 6 pixels right over a still background, and the strip of
    background it uncovers in the second frame."""
    background, square = scene(2, 48, 64), scene(3, 48, 64)[8:28, 8:28]
    first, second = background.copy(), background.copy()
    first[14:34, 20:40] = square
    second[14:34, 26:46] = square
    return first, second, (slice(16, 32), slice(21, 25))


def test_uncovered_pixels_are_masked_as_occluded_and_left_out_of_the_error():
    first, second, uncovered = moving_square()
    motion = optical_flow.estimate_motion(first, second, optical_flow.FlowEstimator("dis", "medium"))
    assert motion.occluded[uncovered].mean() > 0.7
    assert motion.occluded[:, 50:].mean() < 0.1  # the still background far from the square
    # A perfectly consistent "stylisation" (the frames themselves): only the uncovered strip, where frame t-1
    # warped to t shows the square, differs; the mask leaves it out, counting everything does not.
    masked, unmasked = WarpingError(), WarpingError()
    masked.add(first, second, motion)
    unmasked.add(first, second, optical_flow.Motion(motion.backward, np.zeros_like(motion.occluded),
                                                motion.reliability, motion.cut))
    assert masked.value < 0.3 * unmasked.value


def test_the_two_warps_agree():
    rng = np.random.default_rng(0)
    image = rng.random((20, 30, 3), dtype=np.float32)
    flow = rng.normal(0, 2, (20, 30, 2)).astype(np.float32)
    on_tensor = optical_flow.warp_tensor(torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(flow))
    assert np.abs(on_tensor.permute(1, 2, 0).numpy() - optical_flow.warp(image, flow)).max() < 1e-4


def test_raft_gives_a_flow_of_the_frames_size():
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    raft = optical_flow.RaftFlow(torch.device("cpu"), raft_small())  # untrained: only the plumbing is tested
    first, second, _ = moving_square()
    flow = raft(first[:46, :60], second[:46, :60])  # sides not multiples of 8
    assert flow.shape == (46, 60, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()


# ---------------------------------------------------------------- render-time blending

def test_temporal_rendering_flickers_less_and_stays_close_to_the_stylisation(tmp_path, capsys, panning_clip,
                                                                            flickery_model):
    per_frame = render(panning_clip, flickery_model, tmp_path / "per-frame.mp4", "--no-temporal")
    steady = render(panning_clip, flickery_model, tmp_path / "temporal.mp4", "--temporal")
    assert warping_error(capsys, panning_clip, steady) < 0.6 * warping_error(capsys, panning_clip, per_frame)
    psnr = []
    for a, b in zip(*(video_io.FrameReader(p, (64, 48)) for p in (per_frame, steady)), strict=True):
        psnr.append(10 * np.log10(255**2 / max(1e-9, np.mean((a.astype(float) - b) ** 2))))
    assert np.mean(psnr[1:]) > 22 and psnr[0] > 30  # the first frame has nothing to blend with (H.264 aside)


def stylise(frames: list[np.ndarray]) -> torch.Tensor:
    """A stand-in stylisation that flickers: the frames plus fresh noise (Nx3xHxW, 0-255)."""
    batch = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()
    return (batch + 20 * torch.randn(batch.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 255)


def motions_of(frames: list[np.ndarray]) -> list[optical_flow.Motion | None]:
    flow = optical_flow.FlowEstimator(*temporal_blend.RENDER_FLOW)
    return [None] + [optical_flow.estimate_motion(a, b, flow) for a, b in itertools.pairwise(frames)]


def test_a_scene_cut_is_not_blended_but_a_small_move_is():
    frames = pan(scene(4), 3) + pan(scene(5), 2)  # a cut between the third and the fourth frame
    motions = motions_of(frames)
    assert [m.cut for m in motions[1:]] == [False, False, True, False]
    stylised = stylise(frames)
    blended = temporal_blend.TemporalBlender()(stylised, motions)
    assert torch.equal(blended[0], stylised[0]) and torch.equal(blended[3], stylised[3])  # fresh after the cut
    for i in (1, 2, 4):  # blended where the scene goes on: steadier than the noisy stylisation
        assert (blended[i] - stylised[i]).abs().mean() > 5


def test_blending_follows_the_frames_batch_by_batch():
    frames = pan(scene(6), 6)
    motions = motions_of(frames)
    stylised = stylise(frames)
    whole = temporal_blend.TemporalBlender()(stylised, motions)
    blender = temporal_blend.TemporalBlender()
    in_batches = torch.cat([blender(stylised[i:i + 4], motions[i:i + 4]) for i in (0, 4)])
    assert torch.allclose(whole, in_batches)


def test_motion_is_estimated_a_bounded_number_of_frames_ahead():
    pulled = []

    def frames() -> Iterator[np.ndarray]:
        for frame in pan(scene(7), 12):
            pulled.append(frame)
            yield frame

    flow = optical_flow.FlowEstimator(*temporal_blend.RENDER_FLOW)
    for consumed, (_, motion) in enumerate(optical_flow.with_motion(frames(), flow, workers=2, ahead=3), 1):
        assert len(pulled) - consumed <= 3  # only `ahead` frames are held beyond the one handed out
        assert (motion is None) == (consumed == 1)
    assert consumed == 12


# ---------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    (folder / "not a video.mp4").write_bytes(b"this is not a video")
    return {"pan": write_clip(folder / "pan.mp4", pan(scene(8), 6)),
            "shorter": write_clip(folder / "shorter.mp4", pan(scene(8), 4)),
            "square": write_clip(folder / "square.mp4", [f[:, :48] for f in pan(scene(8), 6)]),
            "one frame": write_clip(folder / "one.mp4", pan(scene(8), 1)),
            "not a video": folder / "not a video.mp4"}


@pytest.mark.parametrize("case", ["missing source", "missing stylised", "not a video", "fewer frames",
                                  "other aspect ratio", "one frame", "raft without weights"])
def test_evaluate_video_bad_input_is_one_clear_line(clips, tmp_path, capsys, monkeypatch, case):
    pan_clip = clips["pan"]
    args, expected = {
        "missing source": ([tmp_path / "nope.mp4", pan_clip], ["SOURCE: no such file"]),
        "missing stylised": ([pan_clip, tmp_path / "nope.mp4"], ["STYLISED: no such file"]),
        "not a video": ([pan_clip, clips["not a video"]], ["cannot read video"]),
        "fewer frames": ([pan_clip, clips["shorter"]], ["has 6 frames", "has 4"]),
        "other aspect ratio": ([pan_clip, clips["square"]], ["aspect ratios differ"]),
        "one frame": ([clips["one frame"], clips["one frame"]], ["at least two"]),
        "raft without weights": ([pan_clip, pan_clip, "--flow", "raft"], ["RAFT weights are not on this machine"]),
    }[case]
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty hub"))
    json_path = tmp_path / "result.json"
    assert_clean_failure(run_main_in_process(capsys, evaluate_video.main, *args, "--json", json_path), *expected)
    assert not json_path.exists()


def test_evaluate_video_writes_json(clips, tmp_path, capsys):
    warping_error(capsys, clips["pan"], clips["pan"], "--json", tmp_path / "out" / "result.json")
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["pairs"] == 5 and result["flow"] == "dis (medium)" and result["warping_error"] >= 0


def test_an_unwritable_json_path_is_one_clear_line(clips, tmp_path, capsys):
    (tmp_path / "a file").write_text("")
    result = run_main_in_process(capsys, evaluate_video.main, clips["pan"], clips["pan"], "--json",
                                 tmp_path / "a file" / "result.json")
    assert_clean_failure(result, "cannot write")


# ---------------------------------------------------------------- training-time stability loss

class Shift(torch.nn.Module):
    """A toy 'network': adds a fixed pattern (flickery: the pattern does not move with the picture) or not."""

    def __init__(self, pattern: bool):
        super().__init__()
        self.pattern = torch.nn.Parameter(torch.zeros(1, 3, 32, 32))
        if pattern:
            self.pattern.data = 50 * torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images + self.pattern


def test_the_stability_loss_is_zero_for_a_steady_network_and_large_for_a_flickery_one(monkeypatch):
    monkeypatch.setattr(temporal_loss, "NOISE", 0.0)
    images = torch.from_numpy(np.stack([scene(9, 32, 32), scene(10, 32, 32)])).permute(0, 3, 1, 2).float()
    plain = lambda network, batch, step: {"total": network(batch).mean() * 0}  # noqa: E731
    losses = temporal_loss.with_stability_loss(plain, 1.0)
    torch.manual_seed(0)
    steady = losses(Shift(pattern=False), images, 0)["stability"].item()
    torch.manual_seed(0)
    flickery = losses(Shift(pattern=True), images, 0)["stability"].item()
    assert steady < 1e-3 and flickery > 100
    assert temporal_loss.with_stability_loss(plain, 0.0) is plain


def test_the_perturbed_copy_of_each_image_is_stylised_in_that_images_style():
    images = torch.from_numpy(np.stack([scene(9, 32, 32), scene(10, 32, 32)])).permute(0, 3, 1, 2).float()
    mix = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # a conditional training step: one style row per image
    seen = []

    def network(batch: torch.Tensor, style_mix: torch.Tensor) -> torch.Tensor:
        seen.append(style_mix)
        return batch * style_mix[:, :1, None, None]

    losses = temporal_loss.with_stability_loss(lambda net, batch, step: {"total": net(batch, mix).mean()}, 1.0)
    losses(network, images, 0)
    assert len(seen) == 1 and torch.equal(seen[0], torch.cat([mix, mix]))


@pytest.mark.parametrize("conditional", [False, True], ids=["plain", "conditional"])
@pytest.mark.parametrize("script", ["train.py", "distillation.py"])
def test_temporal_weight_trains_with_the_stability_loss_in_both_trainers(tmp_path, dataset_dir, style_files, script,
                                                                         conditional):
    out = tmp_path / "out"
    styles = 2 if conditional else 1
    extra = ["--conditional"] if conditional else []
    if script == "train.py":
        train.main(train_args(dataset_dir, out, style_files[:styles], "--max-steps", "2", "--savename", "m.pth",
                              "--temporal-weight", "5", *extra))
    else:
        teachers = [save_random_model(tmp_path / f"teacher{i}.pth", seed=i) for i in range(styles)]
        distillation.main(["--datapath", str(dataset_dir), "--teachers", ",".join(map(str, teachers)),
                           "--vgg-weights", "random", "--image-size", "32", "--batch-size", "2", "--device", "cpu",
                           "--max-steps", "2", "--save-dir", str(out / "models"), "--log-dir", str(out / "logs"),
                           "--checkpoint-dir", str(out / "checkpoints"), "--log-interval", "1", "--savename", "m.pth",
                           "--temporal-weight", "5", *extra])
    with open(out / "logs" / "m.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 2 and all(float(row["stability"]) > 0 for row in rows)
    assert json.loads((out / "models" / "m.json").read_text())["temporal_weight"] == 5


def test_a_negative_temporal_weight_is_refused_by_the_flag_parser(tmp_path, dataset_dir, style_files, capsys):
    result = run_main_in_process(capsys, train.main, *train_args(dataset_dir, tmp_path, style_files[:1],
                                                                 "--temporal-weight", "-1"))
    assert_usage_error(result, "--temporal-weight", "-1")


def test_flicker_split_shows_less_flicker_with_blending_and_refuses_bad_input(tmp_path, capsys, panning_clip,
                                                                              flickery_model):
    import flicker_split

    result = run_main_in_process(capsys, flicker_split.main, panning_clip, "--model", flickery_model,
                                 "--frames", "8", "--width", "64")
    assert result.returncode == 0, result.stderr
    errors = dict(re.findall(r"^\s*(per-frame|--temporal): warping error ([\d.]+)", result.stdout, re.M))
    assert float(errors["--temporal"]) < float(errors["per-frame"])
    assert_clean_failure(run_main_in_process(capsys, flicker_split.main, panning_clip, "--tolerance", "5"),
                         "--tolerance: two numbers")
    not_a_video = tmp_path / "notes.mp4"
    not_a_video.write_text("not a video")
    assert_clean_failure(run_main_in_process(capsys, flicker_split.main, not_a_video), "cannot read video")


def test_frames_too_small_or_thin_for_opencvs_dis_still_render_with_temporal(tmp_path, flickery_model, panning_clip):
    """DIS refuses frames with both sides under 12 (a cv2 traceback for --resize 0.15 of a small clip) and
    crashed the process on some thin ones (12x64, 16x100): the flow is computed on an enlarged copy instead."""
    output = render(panning_clip, flickery_model, tmp_path / "tiny.mp4", "--resize", "0.15")  # 10x7 frames
    assert output.is_file() and video_io.probe_video(output, video_io.find_ffmpeg()).frames == 10
    script = ("import numpy as np\nfrom style_transfer import optical_flow\n"
              "rng = np.random.default_rng(0)\n"
              "for shape in [(7, 10), (12, 64), (16, 100), (100, 16), (24, 384)]:\n"
              "    for preset in optical_flow.DIS_PRESETS:\n"
              "        first = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)\n"
              "        flow = optical_flow.FlowEstimator('dis', preset)(first, np.roll(first, 1, axis=1))\n"
              "        assert flow.shape == (*shape, 2) and np.isfinite(flow).all()\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]  # in another process: a crash would end this one
