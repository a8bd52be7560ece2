"""Training runs that are killed or stopped mid-way: real train.py processes and real signals."""

import csv
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import train
from conftest import ROOT, load_state, run_main_in_process, train_args
from style_transfer import model_files

STEPS = 40  # at 32 pixels, enough that the run is still going when its first checkpoint (step 2) appears


def killable_run_args(dataset_dir: Path, out: Path, styles: list[Path], *extra: str) -> list[str]:
    # 6 photos at batch 2: 3 steps an epoch, so the checkpoints every 2 steps fall mid-epoch too.
    return train_args(dataset_dir, out, styles[:2], "--max-steps", str(STEPS), "--epochs", "100",
                      "--checkpoint-interval", "2", "--savename", "m", *extra)


def checkpoints(folder: Path) -> list[Path]:
    """The checkpoints under their final names (a write in progress has a hidden temporary name)."""
    return sorted(p for p in folder.glob("*.pth") if not p.name.startswith(".")) if folder.is_dir() else []


def start_and_wait_for_a_checkpoint(args: list[str], cwd: Path,
                                    own_group: bool = False) -> tuple[subprocess.Popen, Path]:
    """Start train.py and return as soon as its first checkpoint is complete, while it is still training.
    `own_group`: in a process group of its own (as a batch scheduler starts a job), to be signalled as a whole."""
    stderr = cwd / "stderr.txt"
    with stderr.open("w") as file:  # a file, not a pipe: a full pipe would stall the process
        process = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, stdout=subprocess.DEVNULL,
                                   stderr=file, start_new_session=own_group)
    deadline = time.monotonic() + 240
    while not checkpoints(Path(args[args.index("--checkpoint-dir") + 1])):
        if process.poll() is not None:
            pytest.fail(f"train.py ended (status {process.returncode}) before its first checkpoint could be "
                        f"caught; make the run longer. Its stderr:\n{stderr.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("no checkpoint appeared within 240 s")
        time.sleep(0.005)
    return process, stderr


@pytest.fixture
def uninterrupted(tmp_path, dataset_dir, style_files) -> dict[str, torch.Tensor]:
    train.main(killable_run_args(dataset_dir, tmp_path / "uninterrupted", style_files))
    return load_state(tmp_path / "uninterrupted" / "models" / "m.pth")


@pytest.mark.slow
def test_sigkill_leaves_loadable_checkpoints_and_resuming_ends_with_the_same_weights(tmp_path, dataset_dir,
                                                                                     style_files, uninterrupted):
    out = tmp_path / "killed"
    out.mkdir()
    args = killable_run_args(dataset_dir, out, style_files)
    process, _ = start_and_wait_for_a_checkpoint(args, out)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "train.py was no longer running when it was killed"

    # Every checkpoint under its final name is complete; the model was never written, not even in part.
    steps = [model_files.load_checkpoint(path)["step"] for path in checkpoints(out / "checkpoints")]
    assert steps and steps == sorted(steps) and max(steps) < STEPS
    assert not (out / "models" / "m.pth").exists() and not (out / "models" / "m.json").exists()

    latest = checkpoints(out / "checkpoints")[-1]
    train.main([*args, "--resume", str(latest)])
    resumed = load_state(out / "models" / "m.pth")
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        assert torch.equal(resumed[key], uninterrupted[key]), key
    with open(out / "logs" / "m.csv") as file:  # the rows the killed run wrote past its checkpoint are dropped
        assert [int(row["step"]) for row in csv.DictReader(file)] == list(range(1, STEPS + 1))


def checkpoint_named_by_the_stop(process: subprocess.Popen, stderr: Path, signum: int) -> Path:
    """After a stop by `signum`: the run ended cleanly with one `interrupted ... --resume CKPT` line; that CKPT."""
    process.wait(timeout=120)
    text = stderr.read_text()
    assert process.returncode not in (0, None), text
    assert process.returncode != -signum, "the signal killed train.py instead of stopping it"
    assert "Traceback" not in text, text
    resume = [line for line in text.splitlines() if "--resume" in line]
    assert len(resume) == 1 and resume[0].startswith("error: interrupted at step"), text
    path = Path(shlex.split(resume[0].split("--resume", 1)[1])[0])
    checkpoint = model_files.load_checkpoint(path)
    assert f"interrupted at step {checkpoint['step']}/{STEPS}" in resume[0]
    assert 2 <= checkpoint["step"] < STEPS
    return path


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_or_sigterm_writes_a_checkpoint_and_says_how_to_resume(tmp_path, dataset_dir, style_files, signum):
    args = killable_run_args(dataset_dir, tmp_path, style_files)
    process, stderr = start_and_wait_for_a_checkpoint(args, tmp_path)
    process.send_signal(signum)
    checkpoint_named_by_the_stop(process, stderr, signum)
    assert not (tmp_path / "models" / "m.pth").exists()


@pytest.mark.slow
def test_sigterm_to_the_whole_process_group_with_loader_workers_stops_cleanly_and_resumes(tmp_path, dataset_dir,
                                                                                           style_files):
    """SLURM (and `kill -TERM -- -PGID`) signal every process of the job, the data-loader workers too: a worker
    killed by it made the main process die in backward() (exit 1, no checkpoint)."""
    args = killable_run_args(dataset_dir, tmp_path, style_files, "--workers", "2")
    process, stderr = start_and_wait_for_a_checkpoint(args, tmp_path, own_group=True)
    os.killpg(process.pid, signal.SIGTERM)
    checkpoint = checkpoint_named_by_the_stop(process, stderr, signal.SIGTERM)
    assert not (tmp_path / "models" / "m.pth").exists()
    train.main([*args, "--resume", str(checkpoint)])
    assert model_files.load_checkpoint(checkpoint)["step"] < STEPS
    with open(tmp_path / "logs" / "m.csv") as file:
        assert [int(row["step"]) for row in csv.DictReader(file)] == list(range(1, STEPS + 1))


def test_a_stop_at_a_checkpoint_step_writes_that_checkpoint_once(tmp_path, dataset_dir, style_files, monkeypatch,
                                                                  capsys):
    """Ctrl-C arriving while step 2's checkpoint is written: the run stops after it, without writing it again."""
    from style_transfer import training

    written = []

    def save_then_interrupt(obj, path):
        written.append(Path(path).name)
        real_save(obj, path)
        if len(written) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # caught by the run's stop handler, as a real Ctrl-C

    real_save = training.torch_save
    monkeypatch.setattr(training, "torch_save", save_then_interrupt)
    result = run_main_in_process(capsys, train.main, *killable_run_args(dataset_dir, tmp_path, style_files))
    assert "interrupted at step 2/" in result.stderr
    assert written == ["m_step0000002.pth"]  # before: written twice, at the checkpoint and again on the way out


def test_the_data_loader_workers_end_with_the_run(tmp_path, dataset_dir, style_files):
    """The workers ignore SIGTERM, so they must be ended by their loader: left alive, they were joined forever by
    Python's exit (multiprocessing's SIGTERM cannot end them) and the process hung instead of exiting."""
    import multiprocessing

    before = set(multiprocessing.active_children())
    train.main(killable_run_args(dataset_dir, tmp_path, style_files, "--workers", "2", "--max-steps", "2"))
    assert set(multiprocessing.active_children()) == before
