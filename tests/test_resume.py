"""Resuming training from a checkpoint: onto the training device, across precisions, only with the same settings
(unless --resume-anyway), and the end of a run when Ctrl-C comes during its last step."""

import os
import signal
from pathlib import Path

import pytest
import torch

import distillation
import train
from conftest import (
    assert_clean_failure,
    files_under,
    load_state,
    run_main_in_process,
    save_random_model,
    train_args,
    write_noise_image,
)
from style_transfer import model_files, training, training_checkpoint
from transformer_net import TransformerNet


def two_step_checkpoint(dataset_dir: Path, out: Path, styles: list[Path], *extra: str) -> Path:
    train.main(train_args(dataset_dir, out, styles, "--max-steps", "2", "--checkpoint-interval", "2",
                          "--savename", "m", *extra))
    return out / "checkpoints" / "m_step0000002.pth"


def test_resume_moves_the_model_to_its_device_before_loading_the_optimiser_state(tmp_path, dataset_dir, style_files,
                                                                                   monkeypatch):
    """Adam's load_state_dict puts its state on the device of the parameters as they are then: loaded before the
    model moves to the GPU, the state stays on the CPU and the first step meets tensors on two devices."""
    checkpoint = two_step_checkpoint(dataset_dir, tmp_path, style_files[:1])
    events = []
    real_to, real_load = TransformerNet.to, torch.optim.Adam.load_state_dict

    def to(self, *args, **kwargs):
        events.append("model to device")
        return real_to(self, *args, **kwargs)

    def load_state_dict(self, state):
        events.append("optimiser state")
        return real_load(self, state)

    monkeypatch.setattr(TransformerNet, "to", to)
    monkeypatch.setattr(torch.optim.Adam, "load_state_dict", load_state_dict)
    train.main(train_args(dataset_dir, tmp_path, style_files[:1], "--max-steps", "3", "--savename", "m",
                          "--resume", str(checkpoint)))
    assert "optimiser state" in events and events.index("model to device") < events.index("optimiser state")


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
def test_the_optimiser_state_lands_on_the_device_of_the_parameters(tmp_path, dataset_dir, style_files):
    """On the `meta` device as a stand-in for a GPU, the model moved and the optimiser built as fit() does:
    every tensor of Adam's state follows the parameters."""
    checkpoint = model_files.load_checkpoint(two_step_checkpoint(dataset_dir, tmp_path, style_files[:1]))
    model = TransformerNet().to("meta")
    optimizer = torch.optim.Adam(model.parameters())
    scaler = training._gradient_scaler(False)
    training_checkpoint.load_training_state(checkpoint, model, optimizer, scaler, torch.device("meta"))
    assert {p.device.type for p in model.parameters()} == {"meta"}
    moments = [t for state in optimizer.state.values() for name, t in state.items() if name != "step"]
    assert len(moments) == 2 * len(list(model.parameters()))
    assert {t.device.type for t in moments} == {"meta"}


@pytest.mark.parametrize("direction", ["bf16 run resumed in fp16", "fp16 run resumed in bf16"])
def test_a_run_resumes_in_another_precision(tmp_path, dataset_dir, style_files, monkeypatch, direction):
    """fp16 uses a gradient scaler, bf16 and fp32 do not: a checkpoint of one resumes in the other. On the CPU an
    enabled CPU GradScaler stands in for fp16's (fp16 training itself needs CUDA: see tests/test_cuda.py)."""
    scaled = [direction.startswith("fp16"), direction.endswith("fp16")]  # before and after the resume
    monkeypatch.setattr(training, "_gradient_scaler", lambda enabled: torch.amp.GradScaler("cpu", enabled=scaled[0]))
    checkpoint = two_step_checkpoint(dataset_dir, tmp_path, style_files[:1])
    assert bool(torch.load(checkpoint, weights_only=True)["scaler"]) == scaled[0]
    monkeypatch.setattr(training, "_gradient_scaler", lambda enabled: torch.amp.GradScaler("cpu", enabled=scaled[1]))
    train.main(train_args(dataset_dir, tmp_path, style_files[:1], "--max-steps", "4", "--savename", "m",
                          "--resume", str(checkpoint)))
    TransformerNet().load_state_dict(load_state(tmp_path / "models" / "m.pth"))


def test_resuming_with_other_settings_is_refused_naming_each_flag(tmp_path, dataset_dir, style_files, capsys):
    checkpoint = two_step_checkpoint(dataset_dir, tmp_path, style_files[:2], "--style-weights", "0.7,0.3")
    write_noise_image(dataset_dir / "one more.jpg", 40, 40, seed=50)
    before = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*") if path.is_file()}
    changed = train_args(dataset_dir, tmp_path, [style_files[0], style_files[2]], "--style-weights", "0.5,0.5",
                         "--max-steps", "4", "--savename", "m", "--resume", checkpoint)
    changed[changed.index("--batch-size") + 1] = "3"
    changed[changed.index("--image-size") + 1] = "24"
    result = run_main_in_process(capsys, train.main, *changed)
    assert_clean_failure(result, "--resume", str(checkpoint), "--batch-size 2 (now 3)", "--image-size 32 (now 24)",
                         "images in --datapath 6 (now 7)", "--stylepath", "style 1.png", "style 2.png",
                         "--style-weights 0.7,0.3 (now 0.5,0.5)", "--resume-anyway")
    assert "processes" not in result.stderr  # the same: not named
    assert {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*") if path.is_file()} == before

    result = run_main_in_process(capsys, train.main, *changed, "--resume-anyway")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert any("--batch-size 2 (now 3)" in line and "--resume-anyway" in line for line in warnings), result.stderr
    assert torch.load(tmp_path / "checkpoints" / "m_step0000002.pth", weights_only=True)["step"] == 2


def test_resuming_with_another_number_of_processes_is_refused(tmp_path, dataset_dir, style_files, capsys):
    checkpoint = two_step_checkpoint(dataset_dir, tmp_path, style_files[:1])
    saved = torch.load(checkpoint, weights_only=True)
    saved["settings"]["processes (torchrun)"] = 4  # as if written by 4 processes
    torch.save(saved, checkpoint)
    result = run_main_in_process(capsys, train.main, *train_args(dataset_dir, tmp_path, style_files[:1], "--max-steps",
                                                                 "4", "--savename", "m", "--resume", checkpoint))
    assert_clean_failure(result, "processes (torchrun) 4 (now 1)")
    assert "--batch-size" not in result.stderr


def test_distillation_refuses_to_resume_with_other_teachers(tmp_path, dataset_dir, capsys):
    teachers = [save_random_model(tmp_path / "teachers" / f"t{i}.pth", seed=i) for i in range(3)]
    common = ["--datapath", dataset_dir, "--vgg-weights", "random", "--image-size", "32", "--batch-size", "2",
              "--device", "cpu", "--save-dir", tmp_path / "models", "--log-dir", tmp_path / "logs",
              "--checkpoint-dir", tmp_path / "checkpoints", "--savename", "s"]
    distillation.main([*map(str, common), "--teachers", f"{teachers[0]},{teachers[1]}", "--max-steps", "2",
                       "--checkpoint-interval", "2"])
    models = files_under(tmp_path / "models")
    result = run_main_in_process(capsys, distillation.main, *common, "--teachers", f"{teachers[0]},{teachers[2]}",
                                 "--teacher-weights", "0.4,0.6", "--max-steps", "4",
                                 "--resume", tmp_path / "checkpoints" / "s_step0000002.pth")
    assert_clean_failure(result, "--teachers", "t1.pth", "t2.pth", "--teacher-weights 0.5,0.5 (now 0.4,0.6)")
    assert files_under(tmp_path / "models") == models


def test_ctrl_c_during_the_last_step_still_writes_the_model(tmp_path, dataset_dir, style_files, capsys, monkeypatch):
    """The last step completes, so the run is complete: the model is written and the exit is a success."""
    calls = []
    real_forward = TransformerNet.forward

    def forward_then_ctrl_c(self, x):
        calls.append(1)
        if len(calls) == 3:  # the third (last) training step
            os.kill(os.getpid(), signal.SIGINT)
        return real_forward(self, x)

    monkeypatch.setattr(TransformerNet, "forward", forward_then_ctrl_c)
    result = run_main_in_process(capsys, train.main, *train_args(dataset_dir, tmp_path, style_files[:1],
                                                                 "--max-steps", "3", "--savename", "m"))
    assert result.returncode == 0, result.stderr
    assert "stopping after this step" in result.stderr and "interrupted" not in result.stderr
    assert len(calls) == 3
    TransformerNet().load_state_dict(load_state(tmp_path / "models" / "m.pth"))
