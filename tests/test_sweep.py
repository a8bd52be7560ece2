"""sweep.py (style_transfer/sweep.py): a grid of short train.py runs, sweep.csv and the contact sheet."""

import csv
import shlex
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

import sweep
import train
from conftest import ROOT, assert_clean_failure, assert_usage_error, run_main_in_process, write_noise_image
from style_transfer import sweep as sweeping


def sweep_args(tmp_path, dataset_dir, style_files, grid="style-weight=1e9,1e10 style-size=32"):
    photos = tmp_path / "sheet photos"
    for i in range(2):
        write_noise_image(photos / f"p{i}.png", 32, 40, seed=20 + i)
    return ["--grid", grid, "--max-steps", "2", "--out-dir", str(tmp_path / "out"), "--sheet-images", str(photos),
            "--datapath", str(dataset_dir), "--stylepath", str(style_files[0]), "--vgg-weights", "random",
            "--image-size", "32", "--batch-size", "2", "--device", "cpu", "--preview-interval", "0"]


def test_the_grid_text_is_parsed_in_order():
    grid = sweeping.parse_grid("style-weight=1e9,1e10  --style-size=256,512 tv-weight=0")
    assert grid == [("style-weight", ["1e9", "1e10"]), ("style-size", ["256", "512"]), ("tv-weight", ["0"])]
    assert len(sweeping.combinations(grid)) == 4
    assert sweeping.run_name({"style-weight": "1e9", "style-size": "256"}) == "style-weight=1e9_style-size=256"


def test_a_sweep_trains_each_combination_and_a_rerun_keeps_the_finished_ones(tmp_path, capsys, dataset_dir,
                                                                              style_files):
    args = sweep_args(tmp_path, dataset_dir, style_files)
    result = run_main_in_process(capsys, sweep.main, *args)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    with open(out / "sweep.csv") as file:
        rows = list(csv.DictReader(file))
    assert [r["style-weight"] for r in rows] == ["1e9", "1e10"] and all(r["steps"] == "2" for r in rows)
    assert float(rows[1]["style"]) > 5 * float(rows[0]["style"])  # the style term is weighted 10x
    for row in rows:
        command = shlex.split(row["full_command"])
        assert command[:2] == ["python", "train.py"] and "--max-steps" not in command
        assert command[command.index("--style-weight") + 1] == row["style-weight"]
        train.build_parser().parse_args(command[2:])  # a command train.py takes
        assert (out / "runs" / row["run"] / "model.pth").is_file()
    with Image.open(out / "contact_sheet.jpg") as sheet:
        assert sheet.width == 2 * 40 and sheet.height == 2 * (32 + 3 * sweeping.LINE + 4)  # photos x settings
    models = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/model.pth")}
    (out / "runs" / rows[1]["run"] / "model.pth").unlink()  # as if the second run had not finished
    result = run_main_in_process(capsys, sweep.main, *args)
    assert result.returncode == 0, result.stderr
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/model.pth")}.keys() == models.keys()
    first = out / "runs" / rows[0]["run"] / "model.pth"
    assert first.stat().st_mtime_ns == models[first]  # kept, not trained again


def test_the_labels_name_each_combination():
    settings = {"style-weight": "1e9", "learning-rate": "0.01"}
    assert sweeping.label(settings) == "style-weight=1e9 learning-rate=0.01"
    command = sweeping.full_command(["--datapath", "d", "--max-steps", "5", "--max-steps=6"], settings)
    assert command == "python train.py --datapath d --style-weight 1e9 --learning-rate 0.01"


@pytest.mark.parametrize("grid, expected", [
    ("style-weight", "is not SETTING=V1,V2"),
    ("style-weight=", "is not SETTING=V1,V2"),
    ("", "no settings"),
    ("brush=1,2", "unknown setting 'brush'"),
    ("style-weight=1e9 style-weight=1e10", "style-weight is given twice"),
    ("style-weight=1e9,1e9", "repeats a value"),
    ("style-size=256,big", "'big' is not an integer"),
    ("style-weight=1e9,nan", "must be finite"),
    ("learning-rate=0", "must be finite and > 0"),
])
def test_bad_grid_text_is_one_line_and_writes_nothing(tmp_path, capsys, dataset_dir, style_files, grid, expected):
    result = run_main_in_process(capsys, sweep.main, *sweep_args(tmp_path, dataset_dir, style_files, grid))
    assert_clean_failure(result, "--grid", expected)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, expected", [
    (["--style-weight", "1e9"], "--style-weight: the grid varies it"),
    (["--save-dir", "x"], "--save-dir: the sweep sets it"),
])
def test_flags_the_sweep_sets_or_varies_are_refused(tmp_path, capsys, dataset_dir, style_files, flags, expected):
    result = run_main_in_process(capsys, sweep.main, *sweep_args(tmp_path, dataset_dir, style_files), *flags)
    assert_clean_failure(result, expected)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, expected", [
    (["--batch-size", "zero"], "argument --batch-size"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
])
def test_a_bad_train_flag_is_one_line_before_anything_is_written(tmp_path, capsys, dataset_dir, style_files, flags,
                                                                 expected):
    result = run_main_in_process(capsys, sweep.main, *sweep_args(tmp_path, dataset_dir, style_files), *flags)
    assert_usage_error(result, expected, "train.py --help")
    assert not (tmp_path / "out").exists()  # before: found at the first run, its folder and train.log left behind


@pytest.mark.slow
def test_ctrl_c_stops_the_running_train_at_a_checkpoint_and_a_rerun_resumes_it(tmp_path, dataset_dir, style_files):
    args = [*sweep_args(tmp_path, dataset_dir, style_files, "learning-rate=1e-3,2e-3"), "--checkpoint-interval", "3",
            "--epochs", "100"]
    args[args.index("--max-steps") + 1] = "60"
    command = [sys.executable, str(ROOT / "sweep.py"), *args]
    # Ctrl-C's SIGINT as a terminal delivers it: a suite started in the background by a shell inherits SIGINT
    # ignored, and Python then installs no KeyboardInterrupt for it (the sweep ran on to the end)
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    checkpoints = tmp_path / "out/runs/learning-rate=1e-3/checkpoints"
    deadline = time.monotonic() + 240
    while not list(checkpoints.glob("*.pth")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert list(checkpoints.glob("*.pth")) and not (tmp_path / "out/sweep.csv").exists()
    assert not (tmp_path / "out/runs/learning-rate=1e-3/model.pth").exists()
    assert "interrupted at step" in (tmp_path / "out/runs/learning-rate=1e-3/train.log").read_text()
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "out/sweep.csv") as file:
        assert [(r["learning-rate"], r["steps"]) for r in csv.DictReader(file)] == [("1e-3", "60"), ("2e-3", "60")]
