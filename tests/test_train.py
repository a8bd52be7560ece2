import contextlib
import csv
import errno
import io
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import train
import utils
from conftest import (
    assert_clean_failure,
    assert_usage_error,
    files_under,
    load_state,
    run_main_in_process,
    run_script,
    train_args,
    write_noise_image,
)
from style_transfer import image_io, model_files, training_data
from transformer_net import TransformerNet


def assert_same_weights(a: dict, b: dict, atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=key)


def test_three_step_run_writes_model_log_plot_and_checkpoint(tmp_path, dataset_dir, style_files):
    train.main(train_args(dataset_dir, tmp_path, style_files[:2], "--max-steps", "3",
                          "--checkpoint-interval", "2", "--savename", "blend"))
    model_path = tmp_path / "models" / "blend.pth"
    TransformerNet().load_state_dict(load_state(model_path), strict=True)
    provenance = json.loads((tmp_path / "models" / "blend.json").read_text())
    assert provenance["steps"] == 3
    assert [s["weight"] for s in provenance["styles"]] == [0.5, 0.5]
    assert provenance["vgg_weights"] == "random"
    assert "--max-steps 3" in provenance["command"]
    with open(tmp_path / "logs" / "blend.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert {"content", "style", "total"} <= rows[0].keys()
    assert (tmp_path / "logs" / "blend_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "logs" / "blend_params.json").read_text())["args"]["max_steps"] == 3
    checkpoint = torch.load(tmp_path / "checkpoints" / "blend_step0000002.pth", weights_only=True)
    assert checkpoint["step"] == 2 and {"model", "optimizer", "torch_rng", "args"} <= checkpoint.keys()


def test_the_loss_falls_on_the_training_data(tmp_path, dataset_dir, style_files):
    train.main(train_args(dataset_dir, tmp_path, style_files[:1], "--max-steps", "30", "--learning-rate", "1e-2",
                          "--savename", "m", "--epochs", "100"))
    with open(tmp_path / "logs" / "m.csv") as file:
        totals = [float(r["total"]) for r in csv.DictReader(file)]
    assert sum(totals[-5:]) < 0.5 * sum(totals[:5])


def test_weights_one_zero_equal_single_style_training(tmp_path, dataset_dir, style_files):
    train.main(train_args(dataset_dir, tmp_path / "a", style_files[:2], "--style-weights", "1,0",
                          "--max-steps", "3", "--savename", "m"))
    train.main(train_args(dataset_dir, tmp_path / "b", style_files[:1], "--max-steps", "3", "--savename", "m"))
    assert_same_weights(load_state(tmp_path / "a/models/m.pth"), load_state(tmp_path / "b/models/m.pth"),
                        atol=0)


def test_alpha_equals_style_weights(tmp_path, dataset_dir, style_files):
    train.main(train_args(dataset_dir, tmp_path / "a", style_files[:2], "--alpha", "0.3",
                          "--max-steps", "2", "--savename", "m"))
    train.main(train_args(dataset_dir, tmp_path / "b", style_files[:2], "--style-weights", "0.3,0.7",
                          "--max-steps", "2", "--savename", "m"))
    assert_same_weights(load_state(tmp_path / "a/models/m.pth"), load_state(tmp_path / "b/models/m.pth"),
                        atol=0)


def test_alt_switches_style_every_n_steps_and_cycles():
    weights = [train.weights_for_step(step, [0.2, 0.3, 0.5], alt=2) for step in range(7)]
    assert weights == [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [1, 0, 0]]
    assert train.weights_for_step(5, [0.2, 0.8], alt=None) == [0.2, 0.8]


def test_alt_run_starts_on_the_first_style_alone(tmp_path, dataset_dir, style_files):
    train.main(train_args(dataset_dir, tmp_path / "alt", style_files, "--alt", "1", "--max-steps", "2",
                          "--savename", "m"))
    train.main(train_args(dataset_dir, tmp_path / "one", style_files, "--style-weights", "1,0,0",
                          "--max-steps", "2", "--savename", "m"))
    with open(tmp_path / "alt/logs/m.csv") as alt_file, open(tmp_path / "one/logs/m.csv") as one_file:
        alt_rows, one_rows = list(csv.DictReader(alt_file)), list(csv.DictReader(one_file))
    assert alt_rows[0]["style"] == one_rows[0]["style"]  # step 0: style 1 only, in both runs
    assert alt_rows[1]["style"] != one_rows[1]["style"]  # step 1: style 2 only in the alt run


def test_resume_equals_an_uninterrupted_run(tmp_path, dataset_dir, style_files):
    # 6 images, batch 2: 3 steps an epoch, so the checkpoint at step 4 sits mid-epoch.
    common = ("--max-steps", "6", "--epochs", "3", "--checkpoint-interval", "4", "--savename", "m")
    train.main(train_args(dataset_dir, tmp_path / "full", style_files[:2], *common))
    train.main(train_args(dataset_dir, tmp_path / "part", style_files[:2], *common[:-2], "--savename", "m",
                          "--max-steps", "4"))
    checkpoint = tmp_path / "part/checkpoints/m_step0000004.pth"
    train.main(train_args(dataset_dir, tmp_path / "part", style_files[:2], *common, "--resume", str(checkpoint)))
    assert_same_weights(load_state(tmp_path / "full/models/m.pth"), load_state(tmp_path / "part/models/m.pth"))
    with open(tmp_path / "part/logs/m.csv") as file:
        assert [int(r["step"]) for r in csv.DictReader(file)] == [1, 2, 3, 4, 5, 6]


def test_unreadable_image_is_skipped_with_a_warning(tmp_path, dataset_dir, style_files, capsys):
    (dataset_dir / "broken.jpg").write_bytes(b"not a jpeg")
    train.main(train_args(dataset_dir, tmp_path, style_files[:1], "--max-steps", "1"))
    warnings = [line for line in capsys.readouterr().err.splitlines() if "broken.jpg" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning:")


def test_help_explains_every_flag_with_its_default(tmp_path):
    result = run_script("train.py", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for flag in ["--datapath", "--stylepath", "--save-dir", "--savename", "--content-weight", "--style-weight",
                 "--checkpoint-interval", "--checkpoint-dir", "--log-interval", "--log-dir", "--epochs",
                 "--learning-rate", "--batch-size", "--image-size", "--style-size", "--alpha", "--alt",
                 "--style-weights", "--tv-weight", "--seed", "--device", "--max-steps", "--resume", "--workers",
                 "--vgg-weights"]:
        assert flag in result.stdout
    assert "default: 100000.0" in result.stdout and "default: 10000000000.0" in result.stdout


@pytest.mark.parametrize("case", ["missing dataset", "empty dataset", "missing style", "weight count",
                                  "negative weight", "zero weights", "bad vgg path", "zero batch"])
def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, dataset_dir, style_files, case):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    styles = ",".join(map(str, style_files[:2]))
    args = {"datapath": dataset_dir, "stylepath": styles, "extra": []}
    expected = {
        "missing dataset": ("--datapath", "no such folder"),
        "empty dataset": ("--datapath", "no readable image"),
        "missing style": ("--stylepath", "no such file"),
        "weight count": ("--style-weights", "3 weights given for 2"),
        "negative weight": ("--style-weights", "non-negative"),
        "zero weights": ("--style-weights", "all zero"),
        "bad vgg path": ("--vgg-weights", "no such file"),
        "zero batch": ("--batch-size",),
    }[case]
    if case == "missing dataset":
        args["datapath"] = tmp_path / "nowhere"
    elif case == "empty dataset":
        args["datapath"] = empty
    elif case == "missing style":
        args["stylepath"] = f"{style_files[0]},{tmp_path / 'missing.jpg'}"
    elif case == "weight count":
        args["extra"] = ["--style-weights", "1,2,3"]
    elif case == "negative weight":
        args["extra"] = ["--style-weights", "1,-1"]
    elif case == "zero weights":
        args["extra"] = ["--style-weights", "0,0"]
    elif case == "bad vgg path":
        args["extra"] = ["--vgg-weights", str(tmp_path / "vgg.pth")]
    elif case == "zero batch":
        args["extra"] = ["--batch-size", "0"]
    out = tmp_path / "out"
    out.mkdir()
    command = ["--datapath", args["datapath"], "--stylepath", args["stylepath"], "--vgg-weights", "random",
               "--max-steps", "1", "--image-size", "32", *args["extra"]]
    if case == "bad vgg path":
        command.remove("random")
        command.remove("--vgg-weights")
    result = run_script("train.py", *command, cwd=out)
    if case == "zero batch":  # argparse's own usage error
        assert result.returncode == 2 and "Traceback" not in result.stderr and "--batch-size" in result.stderr
    else:
        assert_clean_failure(result, *expected)
    assert files_under(out) == set()


@pytest.mark.parametrize("flags", [["--image-size", "0"], ["--image-size", "-1"], ["--batch-size", "-2"]])
def test_sizes_of_zero_or_less_are_refused_by_the_flag_parser(tmp_path, dataset_dir, style_files, capsys, flags):
    before = files_under(tmp_path)
    result = run_main_in_process(capsys, train.main, *train_args(dataset_dir, tmp_path, style_files[:1], *flags))
    assert_usage_error(result, flags[0], "invalid positive integer value")
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("flag", ["--save-dir", "--checkpoint-dir", "--log-dir"])
def test_an_output_folder_that_cannot_be_made_fails_at_once(tmp_path, dataset_dir, style_files, capsys, flag):
    blocker = tmp_path / "a file"
    blocker.write_text("in the way")
    args = train_args(dataset_dir, tmp_path / "out", style_files[:1], "--max-steps", "1")
    args[args.index(flag) + 1] = str(blocker / "sub")
    result = run_main_in_process(capsys, train.main, *args)
    assert_clean_failure(result, flag, "a file")
    assert "--vgg-weights random" not in result.stderr  # it failed before building the loss network
    assert not (tmp_path / "out").exists() and blocker.read_text() == "in the way"


def test_an_unreadable_style_image_is_one_clear_line(tmp_path, dataset_dir, style_files, capsys):
    fake = tmp_path / "style.png"
    fake.write_text("not an image")
    result = run_main_in_process(capsys, train.main, *train_args(dataset_dir, tmp_path / "out", [style_files[0], fake]))
    assert_clean_failure(result, "cannot read image", str(fake))
    assert not (tmp_path / "out").exists()


def test_truncated_jpeg_and_png_photos_are_skipped_with_a_warning(tmp_path, dataset_dir, style_files, capsys):
    jpeg = write_noise_image(tmp_path / "whole.jpg", 120, 160, seed=20)
    png = write_noise_image(tmp_path / "whole.png", 60, 80, seed=21)
    (dataset_dir / "cut.jpg").write_bytes(jpeg.read_bytes()[:len(jpeg.read_bytes()) * 9 // 10])
    (dataset_dir / "cut.png").write_bytes(png.read_bytes()[:len(png.read_bytes()) // 2])
    # 8 files at batch 2: the 4 steps of one epoch ask for every file once.
    train.main(train_args(dataset_dir, tmp_path, style_files[:1], "--max-steps", "4", "--savename", "m"))
    assert (tmp_path / "models" / "m.pth").is_file()
    err = capsys.readouterr().err.splitlines()
    for name in ("cut.jpg", "cut.png"):
        warnings = [line for line in err if name in line]
        assert warnings and all(line.startswith("warning: skipping") for line in warnings), (name, err)


def full_disk_save(fail_when: Callable[[Path], bool]) -> Callable:
    """torch.save that, for the files `fail_when` picks, writes half of the data and fails as a full disk does."""
    real_save = torch.save

    def save(obj, file, *args, **kwargs):
        name = Path(getattr(file, "name", file))
        if not fail_when(name):
            return real_save(obj, file, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer)
        half = buffer.getvalue()[:len(buffer.getvalue()) // 2]
        file.write(half) if hasattr(file, "write") else name.write_bytes(half)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return save


@pytest.mark.parametrize("failing", ["checkpoint", "model"])
def test_a_full_disk_is_one_clear_line_and_leaves_no_partial_file(tmp_path, dataset_dir, style_files, capsys,
                                                                   monkeypatch, failing):
    if failing == "checkpoint":  # the checkpoint of step 1 is written, the one of step 2 is not
        monkeypatch.setattr(torch, "save", full_disk_save(lambda path: "m_step0000002" in path.name))
        expected = str(tmp_path / "checkpoints" / "m_step0000002.pth")
    else:
        monkeypatch.setattr(torch, "save", full_disk_save(lambda path: path.parent.name == "models"))
        expected = str(tmp_path / "models" / "m.pth")
    result = run_main_in_process(capsys, train.main, *train_args(dataset_dir, tmp_path, style_files[:1], "--max-steps",
                                                                 "3", "--checkpoint-interval", "1", "--savename", "m"))
    assert_clean_failure(result, f"cannot write {expected}: No space left on device")
    written = {Path("m_step0000001.pth")} if failing == "checkpoint" else {
        Path(f"m_step000000{i}.pth") for i in (1, 2, 3)}
    assert files_under(tmp_path / "checkpoints") == written  # no partial file, not even a temporary one
    for name in written:
        model_files.load_checkpoint(tmp_path / "checkpoints" / name)
    assert files_under(tmp_path / "models") == set()


def test_a_really_full_disk_is_a_clear_error_not_a_runtime_error_from_torch(tmp_path, monkeypatch):
    if not Path("/dev/full").exists():
        pytest.skip("needs Linux's /dev/full")

    @contextlib.contextmanager
    def into_dev_full(path):
        yield Path("/dev/full")  # every write there fails with ENOSPC

    monkeypatch.setattr(utils, "atomic_path", into_dev_full)
    with pytest.raises(utils.UserError, match="cannot write .*m.pth: No space left on device"):
        utils.torch_save({"weight": torch.zeros(1000)}, tmp_path / "m.pth")
    with pytest.raises(utils.UserError, match="cannot write .*m.json: No space left on device"):
        utils.save_json({"a": 1}, tmp_path / "m.json")


@pytest.mark.parametrize("kind", ["truncated", "a model file", "another architecture", "pickle that runs code"])
def test_a_checkpoint_that_cannot_be_resumed_from_is_refused_in_one_line(tmp_path, kind):
    path = tmp_path / f"{kind}.pth"
    model = TransformerNet().state_dict()
    checkpoint = {"model": model, "optimizer": {}, "step": 2}
    if kind == "truncated":
        torch.save(checkpoint, path)
        path.write_bytes(path.read_bytes()[:200_000])
    elif kind == "a model file":
        torch.save(model, path)
    elif kind == "another architecture":
        torch.save({**checkpoint, "model": {"fc.weight": torch.zeros(2, 2)}}, path)
    else:
        path.write_bytes(pickle.dumps(_CreatesAFile(tmp_path / "created")))
    reason = {"truncated": "truncated or corrupt", "a model file": "not a training checkpoint",
              "another architecture": "missing", "pickle that runs code": "pickled objects"}[kind]
    with pytest.raises(utils.UserError) as error:
        model_files.load_checkpoint(path)
    message = str(error.value)
    assert message.startswith(f"--resume: {path}") and reason in message and "\n" not in message, message
    assert not (tmp_path / "created").exists()


def test_resuming_from_a_truncated_checkpoint_fails_before_writing_anything(tmp_path, dataset_dir, style_files,
                                                                             capsys):
    checkpoint = tmp_path / "cut.pth"
    torch.save({"model": TransformerNet().state_dict(), "optimizer": {}, "step": 2}, checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[:100_000])
    out = tmp_path / "out"
    result = run_main_in_process(capsys, train.main, *train_args(dataset_dir, out, style_files[:1],
                                                                 "--resume", checkpoint))
    assert_clean_failure(result, "--resume", "truncated or corrupt")
    assert not out.exists()


class _CreatesAFile:
    """Unpickling this calls open(path, "w"): a stand-in for a file that runs code."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def test_training_reads_16_bit_and_other_image_modes_as_rendering_does(tmp_path):
    """A 16-bit PNG used to come out white (Pillow's convert("RGB") clips 16-bit values at 255): training photos
    and style images are read as render_image.py reads them."""
    folder = tmp_path / "photos"
    folder.mkdir()
    ramp = np.linspace(2_000, 60_000, 36 * 44).reshape(36, 44)
    Image.fromarray(ramp.astype(np.uint16)).save(folder / "gray16.png")  # mode I;16
    Image.fromarray(ramp.astype(np.int32), "I").save(folder / "gray32.tif")
    write_noise_image(folder / "gray-alpha.png", 36, 44, seed=1, mode="LA")
    write_noise_image(folder / "palette.png", 36, 44, seed=2, mode="P")
    write_noise_image(folder / "cmyk.jpg", 36, 44, seed=3, mode="CMYK")
    for path in image_io.list_images(folder):
        as_rendered = image_io.image_to_tensor(image_io.open_picture(path).rgb)
        assert torch.equal(image_io.image_to_tensor(image_io.load_rgb(path)), as_rendered), path.name
    sixteen_bit = image_io.image_to_tensor(image_io.load_rgb(folder / "gray16.png"))
    assert (sixteen_bit == 255).float().mean() < 0.1 and abs(sixteen_bit.mean().item() - 31_000 / 257) < 2
    dataset = training_data.ImageFolderDataset(folder, 32)
    crop = dataset[dataset.paths.index(folder / "gray16.png")]
    assert crop.shape == (3, 32, 32) and (crop == 255).float().mean() < 0.1


def test_the_cosine_schedule_falls_from_the_learning_rate_to_zero_and_constant_stays():
    from types import SimpleNamespace

    from style_transfer.training import learning_rate

    cosine = SimpleNamespace(learning_rate=0.01, lr_schedule="cosine")
    rates = [learning_rate(cosine, step, 100) for step in range(100)]
    assert rates[0] == 0.01 and rates[50] == pytest.approx(0.005) and 0 < rates[-1] < 1e-5
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False))
    constant = SimpleNamespace(learning_rate=0.01, lr_schedule="constant")
    assert {learning_rate(constant, step, 100) for step in range(100)} == {0.01}


def test_a_cosine_run_resumed_midway_equals_the_uninterrupted_one_and_refuses_another_length(
        tmp_path, dataset_dir, style_files, capsys):
    """The rate is a function of the step and the run's length: a resumed run follows the same curve, and a resume
    that would change the length (so the curve) is refused like any other changed setting."""
    common = ("--max-steps", "6", "--epochs", "3", "--checkpoint-interval", "4", "--savename", "m",
              "--lr-schedule", "cosine", "--learning-rate", "0.01")
    train.main(train_args(dataset_dir, tmp_path / "full", style_files[:1], *common))
    checkpoint = tmp_path / "full/checkpoints/m_step0000004.pth"
    train.main(train_args(dataset_dir, tmp_path / "part", style_files[:1], *common, "--resume", str(checkpoint)))
    assert_same_weights(load_state(tmp_path / "full/models/m.pth"), load_state(tmp_path / "part/models/m.pth"))
    provenance = json.loads((tmp_path / "full/models/m.json").read_text())
    assert (provenance["lr_schedule"], provenance["learning_rate"]) == ("cosine", 0.01)
    constant = tmp_path / "constant"
    train.main(train_args(dataset_dir, constant, style_files[:1], *common[:-4], "--learning-rate", "0.01",
                          "--resume", str(checkpoint), "--resume-anyway"))
    with pytest.raises(AssertionError):  # the schedule changes the weights: the test above is not vacuous
        assert_same_weights(load_state(tmp_path / "full/models/m.pth"), load_state(constant / "models/m.pth"))
    longer = train_args(dataset_dir, tmp_path / "longer", style_files[:1], *common, "--resume", str(checkpoint))
    longer[longer.index("--max-steps") + 1] = "8"
    result = run_main_in_process(capsys, train.main, *longer)
    assert_clean_failure(result, "--resume", "--lr-schedule cosine over 6 steps (now cosine over 8 steps)")


def test_a_resume_with_a_lower_learning_rate_trains_at_that_rate(tmp_path, dataset_dir, style_files):
    """The way out of a divergence its message gives: resume from the last good checkpoint with a lower rate. The
    optimiser's saved state holds the old rate; before, loading it silently undid the new --learning-rate."""
    common = ("--savename", "m", "--checkpoint-interval", "2", "--learning-rate", "0.01")
    train.main(train_args(dataset_dir, tmp_path / "a", style_files[:1], *common, "--max-steps", "2"))
    checkpoint = tmp_path / "a/checkpoints/m_step0000002.pth"
    before = torch.load(checkpoint, weights_only=True)["model"]
    moved = {}
    for rate in ("1e-12", "0.01"):
        out = tmp_path / rate
        train.main(train_args(dataset_dir, out, style_files[:1], *common[:-1], rate, "--max-steps", "3",
                              "--resume", str(checkpoint)))
        after = load_state(out / "models/m.pth")
        moved[rate] = max((after[k].float() - before[k].float()).abs().max().item() for k in before)
    assert moved["1e-12"] < 1e-9 < 1e-4 < moved["0.01"]


def test_a_checkpoint_from_before_the_schedule_resumes_as_constant_and_refuses_cosine(
        tmp_path, dataset_dir, style_files, capsys):
    common = ("--savename", "m", "--checkpoint-interval", "2", "--max-steps", "3")
    train.main(train_args(dataset_dir, tmp_path / "a", style_files[:1], *common[:-1], "2"))
    checkpoint = tmp_path / "a/checkpoints/m_step0000002.pth"
    contents = torch.load(checkpoint, weights_only=False)
    del contents["settings"]["--lr-schedule"]  # as written before the flag existed
    torch.save(contents, checkpoint)
    resumed = ("--resume", str(checkpoint))
    result = run_main_in_process(capsys, train.main,
                                 *train_args(dataset_dir, tmp_path / "b", style_files[:1], *common, *resumed))
    assert result.returncode == 0 and "--lr-schedule" not in result.stderr, result.stderr
    result = run_main_in_process(capsys, train.main, *train_args(dataset_dir, tmp_path / "c", style_files[:1], *common,
                                                                 *resumed, "--lr-schedule", "cosine"))
    assert_clean_failure(result, "--resume", "--lr-schedule constant (now cosine over 3 steps)")
