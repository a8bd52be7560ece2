"""Guards of a training run (issue 22): flags refused at parse time, a loss that turns NaN, resume with other loss
weights, the log growing a column, and SIGTERM to the whole process group with data-loader workers."""

from pathlib import Path

import pytest

import distillation
import train
from conftest import (
    assert_clean_failure,
    assert_usage_error,
    run_main_in_process,
    save_random_model,
    train_args,
)

TRAIN_WEIGHTS = ["--style-weight", "--content-weight", "--tv-weight", "--temporal-weight"]
DISTILLATION_WEIGHTS = ["--pixel-weight", "--temporal-weight"]


def distil_args(data: Path, out: Path, teacher: Path, *extra: str) -> list[str]:
    return ["--datapath", str(data), "--teachers", str(teacher), "--vgg-weights", "random", "--image-size", "32",
            "--batch-size", "2", "--device", "cpu", "--save-dir", str(out / "models"), "--log-dir",
            str(out / "logs"), "--checkpoint-dir", str(out / "checkpoints"), "--log-interval", "1",
            "--savename", "s", *extra]


def script_args(script: str, tmp_path: Path, dataset_dir: Path, style_files: list[Path], *extra: str) -> list[str]:
    if script == "train.py":
        return train_args(dataset_dir, tmp_path / "out", style_files[:1], *extra)
    return distil_args(dataset_dir, tmp_path / "out", save_random_model(tmp_path / "t.pth"), *extra)


MAINS = {"train.py": train.main, "distillation.py": distillation.main}


@pytest.mark.parametrize("value", ["nan", "-1", "inf", "-inf"])
@pytest.mark.parametrize("script,flag", [*(("train.py", f) for f in TRAIN_WEIGHTS),
                                         *(("distillation.py", f) for f in DISTILLATION_WEIGHTS)])
def test_a_weight_that_is_not_finite_or_is_negative_is_refused_by_the_flag_parser(tmp_path, dataset_dir,
                                                                                   style_files, capsys, script,
                                                                                   flag, value):
    args = script_args(script, tmp_path, dataset_dir, style_files, "--max-steps", "1", f"{flag}={value}")
    result = run_main_in_process(capsys, MAINS[script], *args)
    assert_usage_error(result, flag, "non-negative number", value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags,expected", [(["--learning-rate", "0"], "positive number"),
                                            (["--lr=-1e-3"], "positive number"),
                                            (["--learning-rate", "nan"], "positive number"),
                                            (["--workers", "-1"], "non-negative integer")],
                         ids=["lr 0", "lr negative", "lr nan", "workers negative"])
@pytest.mark.parametrize("script", ["train.py", "distillation.py"])
def test_a_learning_rate_or_worker_count_out_of_range_is_refused_by_the_flag_parser(tmp_path, dataset_dir,
                                                                                    style_files, capsys, script,
                                                                                    flags, expected):
    args = script_args(script, tmp_path, dataset_dir, style_files, "--max-steps", "1", *flags)
    result = run_main_in_process(capsys, MAINS[script], *args)
    assert_usage_error(result, flags[0].split("=")[0], expected)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags", [["--style-weights", "0.7,0.3"], ["--alpha", "0.7"]], ids=["style-weights", "alpha"])
def test_alt_with_style_weights_or_alpha_is_refused_in_one_line(tmp_path, dataset_dir, style_files, capsys, flags):
    args = train_args(dataset_dir, tmp_path / "out", style_files[:2], "--max-steps", "1", "--alt", "2", *flags)
    result = run_main_in_process(capsys, train.main, *args)
    assert_clean_failure(result, "--alt", flags[0])
    assert "--vgg-weights random" not in result.stderr  # refused before any training work
    assert not (tmp_path / "out").exists()
