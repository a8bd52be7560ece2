"""Guards of a training run (issue 22): flags refused at parse time, a loss that turns NaN, resume with other loss
weights, the log growing a column, and SIGTERM to the whole process group with data-loader workers."""

import csv
import math
from pathlib import Path

import pytest
import torch

import distillation
import train
from conftest import (
    assert_clean_failure,
    assert_usage_error,
    files_under,
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
                                            (["--workers", "-1"], "non-negative integer"),
                                            (["--lr-schedule", "linear"], "invalid choice")],
                         ids=["lr 0", "lr negative", "lr nan", "workers negative", "schedule unknown"])
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


# ---------------------------------------------------------------- resume with other loss weights; the log's columns

def two_step_checkpoint(dataset_dir: Path, out: Path, styles: list[Path], *extra: str) -> Path:
    train.main(train_args(dataset_dir, out, styles, "--max-steps", "2", "--checkpoint-interval", "2",
                          "--savename", "m", *extra))
    return out / "checkpoints" / "m_step0000002.pth"


@pytest.mark.parametrize("flag,old,new", [("--tv-weight", "0", "1"), ("--temporal-weight", "0", "2"),
                                          ("--style-weight", "1e+10", "1e+09")])
def test_resuming_with_another_loss_weight_is_refused_then_continues_anyway_with_a_grown_log(
        tmp_path, dataset_dir, style_files, capsys, flag, old, new):
    checkpoint = two_step_checkpoint(dataset_dir, tmp_path, style_files[:1])
    before = files_under(tmp_path)
    args = train_args(dataset_dir, tmp_path, style_files[:1], "--max-steps", "4", "--savename", "m",
                      "--resume", str(checkpoint), flag, new)
    result = run_main_in_process(capsys, train.main, *args)
    assert_clean_failure(result, "--resume", f"{flag} {old} (now {new})", "--resume-anyway")
    assert files_under(tmp_path) == before

    result = run_main_in_process(capsys, train.main, *args, "--resume-anyway")
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "logs" / "m.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [int(row["step"]) for row in rows] == [1, 2, 3, 4]
    column = {"--tv-weight": "tv", "--temporal-weight": "stability"}.get(flag)
    if column:  # the new loss term's column: empty in the rows from before the resume
        assert [row[column] for row in rows[:2]] == ["", ""]
        assert all(math.isfinite(float(row[column])) for row in rows[2:])
    assert (tmp_path / "models" / "m.pth").is_file() and (tmp_path / "logs" / "m_loss.png").is_file()


def test_distillation_refuses_to_resume_with_another_pixel_weight(tmp_path, dataset_dir, capsys):
    teacher = save_random_model(tmp_path / "t.pth")
    distillation.main(distil_args(dataset_dir, tmp_path, teacher, "--max-steps", "2", "--checkpoint-interval", "2"))
    result = run_main_in_process(capsys, distillation.main, *distil_args(
        dataset_dir, tmp_path, teacher, "--max-steps", "4", "--pixel-weight", "0.5",
        "--resume", str(tmp_path / "checkpoints" / "s_step0000002.pth")))
    assert_clean_failure(result, "--pixel-weight 0 (now 0.5)")


def test_a_checkpoint_that_does_not_record_the_loss_weights_still_resumes_with_a_warning(tmp_path, dataset_dir,
                                                                                         style_files, capsys):
    checkpoint = two_step_checkpoint(dataset_dir, tmp_path, style_files[:1])
    saved = torch.load(checkpoint, weights_only=True)
    for name in [n for n in saved["settings"] if n.endswith("-weight")]:
        del saved["settings"][name]  # as written before the weights were recorded
    torch.save(saved, checkpoint)
    result = run_main_in_process(capsys, train.main, *train_args(dataset_dir, tmp_path, style_files[:1],
                                                                 "--max-steps", "3", "--savename", "m",
                                                                 "--resume", str(checkpoint)))
    assert result.returncode == 0, result.stderr
    assert any(line.startswith("warning:") and "--tv-weight" in line for line in result.stderr.splitlines())


def test_the_csv_log_grows_a_column_for_a_new_loss_term_rewriting_the_file_whole(tmp_path):
    from style_transfer.training_log import CsvLog, plot_losses

    path = tmp_path / "m.csv"
    log = CsvLog(path)
    log.write(1, 0.5, {"content": 1.0, "total": 1.0})
    log = CsvLog(path, keep_until=1)  # resumed, now with a tv term
    log.write(2, 1.0, {"content": 2.0, "tv": 3.0, "total": 5.0})
    log.write(3, 1.5, {"content": 2.0, "total": 2.0})  # and one without it
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(r["step"], r["content"], r["tv"], r["total"]) for r in rows] == [
        ("1", "1", "", "1"), ("2", "2", "3", "5"), ("3", "2", "", "2")]
    assert log.last() == {"step": 3.0, "elapsed_s": 1.5, "content": 2.0, "total": 2.0}
    plot_losses(log.rows(), tmp_path / "plot.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.csv", "plot.png"]  # no temporary file left


# ---------------------------------------------------------------- a loss that becomes NaN

@pytest.mark.parametrize("log_interval", ["1", "100"], ids=["seen at a log step", "seen before a checkpoint"])
def test_a_loss_that_becomes_nan_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
        tmp_path, dataset_dir, style_files, capsys, monkeypatch, log_interval):
    """From step 3 on the network's output is NaN (as after a diverging step or a broken image): the run must stop
    with one error naming step 3, never write a NaN checkpoint or model, and leave the step-2 checkpoint as it was.
    Every --log-interval steps the logged loss is checked; before every save, the steps since then and the weights."""
    from transformer_net import TransformerNet

    calls = []
    real_forward = TransformerNet.forward

    def forward(self, x):
        calls.append(1)
        output = real_forward(self, x)
        return output * float("nan") if len(calls) >= 3 else output

    monkeypatch.setattr(TransformerNet, "forward", forward)
    args = train_args(dataset_dir, tmp_path, style_files[:1], "--max-steps", "6", "--checkpoint-interval", "2",
                      "--savename", "m")
    args[args.index("--log-interval") + 1] = log_interval
    result = run_main_in_process(capsys, train.main, *args)
    good = tmp_path / "checkpoints" / "m_step0000002.pth"
    assert_clean_failure(result, "step 3", "nan", "--learning-rate", str(good))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [good.name]
    assert all(torch.isfinite(t).all() for t in torch.load(good, weights_only=True)["model"].values())
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())
