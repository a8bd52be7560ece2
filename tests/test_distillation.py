import csv
import json
import pickle
from pathlib import Path

import pytest
import torch

import distillation
import utils
from conftest import (
    assert_clean_failure,
    assert_usage_error,
    files_under,
    run_main_in_process,
    run_script,
    save_random_model,
    write_noise_image,
)
from style_transfer import image_io, model_files
from transformer_net import TransformerNet


@pytest.fixture
def teachers(tmp_path) -> list[Path]:
    colours = [(220.0, 60.0, 40.0), (30.0, 90.0, 210.0)]
    return [save_random_model(tmp_path / "teachers" / f"teacher {i}.pth", 10 + i, gain=1, bias=c)
            for i, c in enumerate(colours)]


@pytest.fixture
def fixed_batch_dir(tmp_path) -> Path:
    """Two photos and batch size 2: every step sees the same batch."""
    for i in range(2):
        write_noise_image(tmp_path / "fixed" / f"{i}.png", 32, 32, seed=i)
    return tmp_path / "fixed"


def distil_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--datapath", str(data), "--vgg-weights", "random", "--image-size", "32", "--batch-size", "2",
            "--device", "cpu", "--save-dir", str(out / "models"), "--log-dir", str(out / "logs"),
            "--checkpoint-dir", str(out / "checkpoints"), "--log-interval", "1", "--savename", "student", *extra]


def csv_totals(path: Path) -> list[float]:
    with open(path) as file:
        return [float(row["total"]) for row in csv.DictReader(file)]


def student_distances(out: Path, data: Path, teachers: list[Path]) -> list[float]:
    student = model_files.load_transformer(out / "models" / "student.pth")
    images = torch.stack([image_io.image_to_tensor(image_io.load_rgb(p)) for p in sorted(data.iterdir())])
    with torch.no_grad():
        result = student(images)
        return [(result - model_files.load_transformer(t)(images)).pow(2).mean().item() for t in teachers]


def test_loss_falls_on_a_fixed_batch(tmp_path, fixed_batch_dir, teachers):
    distillation.main(distil_args(fixed_batch_dir, tmp_path, "--teachers", ",".join(map(str, teachers)),
                                  "--max-steps", "30", "--epochs", "30", "--lr", "1e-2"))
    totals = csv_totals(tmp_path / "logs" / "student.csv")
    assert len(totals) == 30
    assert totals[-1] < 0.5 * totals[0]


@pytest.mark.parametrize("weights,closer", [("1,0", 0), ("0,1", 1)])
def test_teacher_weights_decide_which_teacher_the_student_imitates(tmp_path, fixed_batch_dir, teachers,
                                                                   weights, closer):
    distillation.main(distil_args(fixed_batch_dir, tmp_path, "--teachers", ",".join(map(str, teachers)),
                                  "--teacher-weights", weights, "--max-steps", "30", "--epochs", "30",
                                  "--lr", "1e-2", "--pixel-weight", "1"))
    distances = student_distances(tmp_path, fixed_batch_dir, teachers)
    assert distances[closer] < 0.5 * distances[1 - closer]


def test_model1_model2_equal_teachers(tmp_path, dataset_dir, teachers):
    distillation.main(distil_args(dataset_dir, tmp_path / "a", "--model1", str(teachers[0]),
                                  "--model2", str(teachers[1]), "--max-steps", "2"))
    distillation.main(distil_args(dataset_dir, tmp_path / "b", "--teachers", ",".join(map(str, teachers)),
                                  "--max-steps", "2"))
    a = torch.load(tmp_path / "a/models/student.pth", weights_only=True)
    b = torch.load(tmp_path / "b/models/student.pth", weights_only=True)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_equals_an_uninterrupted_run(tmp_path, dataset_dir, teachers):
    common = ["--teachers", ",".join(map(str, teachers)), "--epochs", "3", "--checkpoint-interval", "2"]
    distillation.main(distil_args(dataset_dir, tmp_path / "full", *common, "--max-steps", "5"))
    distillation.main(distil_args(dataset_dir, tmp_path / "part", *common, "--max-steps", "2"))
    checkpoint = tmp_path / "part/checkpoints/student_step0000002.pth"
    distillation.main(distil_args(dataset_dir, tmp_path / "part", *common, "--max-steps", "5",
                                  "--resume", str(checkpoint)))
    full = torch.load(tmp_path / "full/models/student.pth", weights_only=True)
    part = torch.load(tmp_path / "part/models/student.pth", weights_only=True)
    for key in full:
        torch.testing.assert_close(full[key], part[key], atol=1e-5, rtol=0, msg=key)


def test_provenance_names_the_teachers_and_their_own_provenance(tmp_path, dataset_dir, teachers):
    utils.save_json({"script": "train.py", "styles": [{"path": "mosaic.jpg", "weight": 1.0}]},
                    model_files.provenance_path(teachers[0]))
    distillation.main(distil_args(dataset_dir, tmp_path, "--teachers", ",".join(map(str, teachers)),
                                  "--teacher-weights", "3,1", "--max-steps", "1", "--init-from", str(teachers[0])))
    provenance = json.loads((tmp_path / "models" / "student.json").read_text())
    assert [t["weight"] for t in provenance["teachers"]] == [0.75, 0.25]
    assert provenance["teachers"][0]["provenance"]["styles"][0]["path"] == "mosaic.jpg"
    assert provenance["teachers"][1]["provenance"] is None
    assert provenance["init_from"] == str(teachers[0])
    assert provenance["command"].startswith("python distillation.py")


def test_init_from_starts_the_student_at_that_model(tmp_path, fixed_batch_dir, teachers):
    """With a learning rate too small to matter (Adam moves a weight by about the learning rate; zero is refused)
    the student stays the model it started from."""
    distillation.main(distil_args(fixed_batch_dir, tmp_path, "--teachers", str(teachers[1]),
                                  "--init-from", str(teachers[0]), "--max-steps", "1", "--lr", "1e-30"))
    student = torch.load(tmp_path / "models/student.pth", weights_only=True)
    start = torch.load(teachers[0], weights_only=True)
    for k in start:
        torch.testing.assert_close(student[k], start[k], rtol=0, atol=1e-20, msg=k)


def test_init_from_a_model_with_an_output_norm_gives_the_student_one(tmp_path, fixed_batch_dir, teachers):
    """As a model frozen from an arbitrary-style one has (transformer_net.py): the student failed to load it."""
    start_model = TransformerNet(output_norm=True)
    start_model.load_state_dict(torch.load(teachers[0], weights_only=True), strict=False)
    with torch.no_grad():
        start_model.output_norm.bias.fill_(0.5)
    model_files.save_model(start_model, tmp_path / "start.pth", {"script": "test"})
    distillation.main(distil_args(fixed_batch_dir, tmp_path, "--teachers", str(teachers[1]),
                                  "--init-from", str(tmp_path / "start.pth"), "--max-steps", "1", "--lr", "1e-30"))
    student = torch.load(tmp_path / "models/student.pth", weights_only=True)
    assert student.keys() == start_model.state_dict().keys()
    for k, tensor in start_model.state_dict().items():
        torch.testing.assert_close(student[k], tensor, rtol=0, atol=1e-20, msg=k)


@pytest.mark.parametrize("case", ["missing teacher", "not a model", "weight count", "no teachers"])
def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, dataset_dir, teachers, case):
    not_a_model = tmp_path / "notes.pth"
    not_a_model.write_text("just text")
    listed = ",".join(map(str, teachers))
    extra, expected = {
        "missing teacher": (["--teachers", f"{teachers[0]},{tmp_path / 'gone.pth'}"], ("--teachers", "gone.pth")),
        "not a model": (["--teachers", f"{teachers[0]},{not_a_model}"], ("notes.pth", "not a TransformerNet")),
        "weight count": (["--teachers", listed, "--teacher-weights", "1,2,3"], ("--teacher-weights", "3 weights")),
        "no teachers": ([], ("--teachers",)),
    }[case]
    out = tmp_path / "out"
    out.mkdir()
    result = run_script("distillation.py", "--datapath", dataset_dir, "--vgg-weights", "random",
                        "--max-steps", "1", *extra, cwd=out)
    assert_clean_failure(result, *expected)
    assert files_under(out) == set()


class _CreatesAFile:
    """Unpickling this calls open(path, "w"): a stand-in for a model file that runs code."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


@pytest.mark.parametrize("case", ["negative weight", "zero weights", "truncated teacher",
                                  "teacher of another architecture", "teacher that runs code",
                                  "unwritable checkpoint dir"])
def test_more_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, dataset_dir, teachers, capsys, case):
    listed = ",".join(map(str, teachers))
    odd = tmp_path / "odd model.pth"
    if case == "truncated teacher":
        odd.write_bytes(teachers[1].read_bytes()[:100_000])
    elif case == "teacher of another architecture":
        torch.save({"fc.weight": torch.zeros(10, 4), "fc.bias": torch.zeros(10)}, odd)
    elif case == "teacher that runs code":
        odd.write_bytes(pickle.dumps(_CreatesAFile(tmp_path / "created")))
    extra, expected = {
        "negative weight": (["--teachers", listed, "--teacher-weights", "1,-1"], ("--teacher-weights", "non-negative")),
        "zero weights": (["--teachers", listed, "--teacher-weights", "0,0"], ("--teacher-weights", "all zero")),
        "truncated teacher": (["--teachers", f"{teachers[0]},{odd}"], (str(odd), "truncated or corrupt")),
        "teacher of another architecture": (["--teachers", f"{teachers[0]},{odd}"], (str(odd), "missing")),
        "teacher that runs code": (["--teachers", f"{teachers[0]},{odd}"], (str(odd), "pickled objects")),
        "unwritable checkpoint dir": (["--teachers", listed, "--checkpoint-dir", teachers[0] / "sub"],
                                      ("--checkpoint-dir", "is a file")),
    }[case]
    out = tmp_path / "out"
    result = run_main_in_process(capsys, distillation.main, *distil_args(dataset_dir, out, "--max-steps", "1"),
                                 *extra)
    assert_clean_failure(result, *expected)
    assert "--vgg-weights random" not in result.stderr  # refused before any training work
    assert not out.exists() and not (tmp_path / "created").exists()


@pytest.mark.parametrize("flags", [["--image-size", "0"], ["--batch-size", "0"], ["--image-size", "-5"]])
def test_sizes_of_zero_or_less_are_refused_by_the_flag_parser(tmp_path, dataset_dir, teachers, capsys, flags):
    out = tmp_path / "out"
    result = run_main_in_process(capsys, distillation.main, *distil_args(dataset_dir, out, "--teachers",
                                                                         str(teachers[0]), *flags))
    assert_usage_error(result, flags[0], "invalid positive integer value")
    assert not out.exists()
