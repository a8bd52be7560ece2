"""Previews while training (style_transfer/previews.py), the matplotlib loss plot and --tensorboard."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import distillation
import train
from conftest import (
    ROOT,
    assert_clean_failure,
    assert_usage_error,
    files_under,
    load_state,
    run_main_in_process,
    save_random_model,
    train_args,
    write_noise_image,
)
from style_transfer import previews


@pytest.fixture
def preview_dir(tmp_path):
    folder = tmp_path / "preview photos"
    write_noise_image(folder / "a.jpg", 40, 56, seed=1)
    write_noise_image(folder / "b.png", 48, 32, seed=2)
    return folder


def preview_steps(path):
    with Image.open(path) as picture:
        return json.loads(picture.info["comment"])[previews._COMMENT_KEY]["steps"], picture.size


def test_a_run_with_previews_ends_with_the_weights_of_one_without(tmp_path, dataset_dir, style_files, preview_dir):
    for name, interval in (("with", "1"), ("without", "0")):
        train.main(train_args(dataset_dir, tmp_path / name, style_files[:1], "--max-steps", "3", "--savename", "m",
                              "--preview-interval", interval, "--preview-images", str(preview_dir)))
    with_previews, without = (load_state(tmp_path / n / "models/m.pth") for n in ("with", "without"))
    assert all(np.array_equal(with_previews[k], without[k]) for k in without)
    assert preview_steps(tmp_path / "with/logs/m_preview.jpg")[0] == [1, 2, 3]
    assert not (tmp_path / "without/logs/m_preview.jpg").exists()


def test_the_preview_picture_grows_a_row_per_step_and_continues_on_resume(tmp_path, dataset_dir, style_files,
                                                                          preview_dir):
    flags = ["--savename", "m", "--preview-interval", "2", "--preview-images", str(preview_dir),
             "--checkpoint-interval", "2"]
    train.main(train_args(dataset_dir, tmp_path, style_files[:1], "--max-steps", "4", *flags))
    steps, (width, height) = preview_steps(tmp_path / "logs/m_preview.jpg")
    row = (height - previews.HEADER) // 2
    assert steps == [2, 4] and height == previews.HEADER + 2 * row
    assert width == previews.LABEL_WIDTH + 56 + 32  # two photos, smaller than the cap: at their own size
    first_rows = np.asarray(Image.open(tmp_path / "logs/m_preview.jpg"))[:previews.HEADER + row].astype(float)
    train.main(train_args(dataset_dir, tmp_path, style_files[:1], "--max-steps", "6", *flags,
                          "--resume", str(tmp_path / "checkpoints/m_step0000002.pth")))
    steps, (_, height) = preview_steps(tmp_path / "logs/m_preview.jpg")
    assert steps == [2, 4, 6] and height == previews.HEADER + 3 * row  # step 4's row redone, not repeated
    again = np.asarray(Image.open(tmp_path / "logs/m_preview.jpg"))[:previews.HEADER + row].astype(float)
    assert np.abs(again - first_rows).mean() < 3  # step 2's row kept (JPEG re-encoding only)


def test_the_preview_picture_stays_within_jpegs_size_limit_and_a_failed_write_never_ends_a_run(
        tmp_path, dataset_dir, style_files, preview_dir, monkeypatch, capsys):
    monkeypatch.setattr(previews, "JPEG_MAX_SIDE", previews.HEADER + 3 * 56)  # room for three rows of 56 pixels
    train.main(train_args(dataset_dir, tmp_path, style_files[:1], "--max-steps", "5", "--savename", "m",
                          "--preview-interval", "1", "--preview-images", str(preview_dir)))
    steps, (_, height) = preview_steps(tmp_path / "logs/m_preview.jpg")
    assert steps == [1, 4, 5] and height <= previews.JPEG_MAX_SIDE  # the first row kept, the oldest others dropped
    (tmp_path / "again/logs/m_preview.jpg").mkdir(parents=True)  # in the way: every write fails, training does not
    train.main(train_args(dataset_dir, tmp_path / "again", style_files[:1], "--max-steps", "2", "--savename", "m",
                          "--preview-interval", "1", "--preview-images", str(preview_dir)))
    assert (tmp_path / "again/models/m.pth").exists()
    assert "warning: --preview-interval: could not write" in capsys.readouterr().err


def test_a_conditional_model_previews_a_column_per_photo_and_style(tmp_path, dataset_dir, style_files, preview_dir):
    train.main(train_args(dataset_dir, tmp_path, style_files[:2], "--conditional", "--max-steps", "1",
                          "--savename", "m", "--preview-interval", "1", "--preview-images", str(preview_dir)))
    with Image.open(tmp_path / "logs/m_preview.jpg") as picture:
        facts = json.loads(picture.info["comment"])[previews._COMMENT_KEY]
        assert picture.width == previews.LABEL_WIDTH + 2 * (56 + 32)
    assert facts["labels"] == ["a, style 0", "a, style 1", "b, style 0", "b, style 1"]


def test_distillation_previews_too(tmp_path, dataset_dir, preview_dir):
    teacher = save_random_model(tmp_path / "teacher.pth")
    distillation.main(["--datapath", str(dataset_dir), "--teachers", str(teacher), "--vgg-weights", "random",
                       "--image-size", "32", "--batch-size", "2", "--device", "cpu", "--max-steps", "2",
                       "--save-dir", str(tmp_path / "models"), "--log-dir", str(tmp_path / "logs"),
                       "--checkpoint-dir", str(tmp_path / "checkpoints"), "--savename", "s",
                       "--preview-interval", "2", "--preview-images", str(preview_dir)])
    assert preview_steps(tmp_path / "logs/s_preview.jpg")[0] == [2]


def test_the_loss_plot_is_a_matplotlib_figure_with_a_log_scale(tmp_path):
    from style_transfer.training_log import plot_losses

    rows = [{"step": str(s), "elapsed_s": "1", "content": str(10.0 / s), "style": str(1000.0 / s)}
            for s in range(1, 20)]
    plot_losses(rows, tmp_path / "loss.png")
    plot = np.asarray(Image.open(tmp_path / "loss.png").convert("RGB")).astype(int)
    assert plot.shape == (500, 900, 3)
    blue, orange = [31, 119, 180], [255, 127, 14]  # matplotlib's first two line colours: one line per term
    assert all((np.abs(plot - colour).sum(-1) < 30).sum() > 200 for colour in (blue, orange))


def test_tensorboard_holds_the_losses_and_the_preview(tmp_path, dataset_dir, style_files, preview_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train.main(train_args(dataset_dir, tmp_path, style_files[:1], "--max-steps", "2", "--savename", "m",
                          "--preview-interval", "2", "--preview-images", str(preview_dir), "--tensorboard"))
    events = EventAccumulator(str(tmp_path / "logs/tensorboard/m")).Reload()
    assert {"loss/total", "loss/content", "loss/style"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("loss/total")] == [1, 2]
    assert [e.step for e in events.Images("preview")] == [2]


def test_tensorboard_missing_is_one_line_before_training(tmp_path, dataset_dir, style_files):
    code = ("import sys; sys.modules['tensorboard'] = None; sys.path.insert(0, sys.argv[1]); import train, utils; "
            "utils.run_main(train.main, sys.argv[2:])")
    result = subprocess.run([sys.executable, "-c", code, str(ROOT),
                             *train_args(dataset_dir, tmp_path / "out", style_files[:1], "--max-steps", "1",
                                         "--tensorboard")], capture_output=True, text=True, timeout=120)
    assert_clean_failure(result, "--tensorboard needs the tensorboard package")
    assert not (tmp_path / "out").exists()


def test_a_negative_preview_interval_is_refused_by_the_flag_parser(tmp_path, capsys, dataset_dir, style_files):
    result = run_main_in_process(capsys, train.main, *train_args(dataset_dir, tmp_path / "out", style_files[:1],
                                                                 "--preview-interval", "-1"))
    assert_usage_error(result, "argument --preview-interval: invalid non-negative integer value: '-1'")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, expected", [
    (["--preview-images", "EMPTY"], "--preview-images: no images in"),
    (["--preview-images", "MISSING"], "--preview-images: no such folder"),
])
def test_bad_preview_flags_are_one_line_and_write_nothing(tmp_path, capsys, dataset_dir, style_files, flags,
                                                          expected):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no pictures here")
    flags = [{"EMPTY": str(tmp_path / "empty"), "MISSING": str(tmp_path / "missing")}.get(f, f) for f in flags]
    result = run_main_in_process(capsys, train.main, *train_args(dataset_dir, tmp_path / "out", style_files[:1],
                                                                 "--max-steps", "1", *flags))
    assert_clean_failure(result, expected)
    assert not (tmp_path / "out").exists() or not files_under(tmp_path / "out")
