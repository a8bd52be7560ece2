"""Training checkpoints: what one holds, and resuming from one: the state onto the training device (the optimiser's
too), a gradient scaler across precisions, and the refusal of a resume whose settings would change what `step`
means (another batch size, process count, image size, dataset, styles or teachers) unless --resume-anyway."""

import argparse
from pathlib import Path

import torch

from style_transfer.model_files import load_checkpoint
from utils import UserError, warn

PROCESSES = "processes (torchrun)"  # the settings' name for the number of processes


def run_settings(args: argparse.Namespace, processes: int, images: int, total_steps: int,
                 extra: dict[str, str]) -> dict[str, str]:
    """The settings a resumed run must share with the checkpoint's, as `flag: value` strings to compare and show.
    `extra` holds the script's own (train.py: the styles, their weights and the loss weights; distillation.py: the
    teachers and --pixel-weight). The loss weights belong here because they decide the loss terms: a term the
    checkpoint did not have is another objective (and another column of the log). A cosine schedule's length
    belongs here because another length is another curve; --learning-rate does not: lowering it on resume is the
    way out of a divergence."""
    schedule = args.lr_schedule if args.lr_schedule == "constant" else f"{args.lr_schedule} over {total_steps} steps"
    return {"--batch-size": str(args.batch_size), PROCESSES: str(processes), "--image-size": str(args.image_size),
            "images in --datapath": str(images), "--temporal-weight": number_setting(args.temporal_weight),
            "--lr-schedule": schedule, **extra}


def number_setting(value: float) -> str:
    return f"{value:g}"


def paths_setting(paths: list[Path]) -> str:
    """Files as a setting: absolute, so that the same files named from another folder compare equal."""
    return ",".join(str(Path(p).resolve()) for p in paths)


def weights_setting(weights: list[float]) -> str:
    return ",".join(f"{w:g}" for w in weights)


def contents(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: "torch.amp.GradScaler", step: int,
             elapsed: float, args: argparse.Namespace, settings: dict[str, str], precision: str,
             device: torch.device | None = None) -> dict:
    """What a checkpoint holds: enough to continue exactly (weights, optimiser, scaler, step, RNG) and to check
    that the resumed run is the same run. The RNG: the CPU's, and on CUDA every GPU's (random numbers drawn on a
    GPU come from its own generator). The stability loss's generator is seeded afresh every step: no state."""
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "step": step, "elapsed_s": elapsed, **rng_state(device), "precision": precision,
            "settings": settings, "args": vars(args)}


def rng_state(device: torch.device | None) -> dict:
    state = {"torch_rng": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(checkpoint: dict, device: torch.device) -> None:
    """Restore what rng_state() saved; a checkpoint without the GPUs' state (from the CPU, or older) leaves theirs,
    and only as many GPUs as there are now are restored. Only rank 0 saves, so under torchrun every process gets
    rank 0's states: what it saved is exact for one process (see docs/training.md for why torchrun is exact too)."""
    torch.set_rng_state(checkpoint["torch_rng"])
    if device.type == "cuda" and checkpoint.get("cuda_rng"):
        for index, state in enumerate(checkpoint["cuda_rng"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, index)


def resume(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
           scaler: "torch.amp.GradScaler", device: torch.device, settings: dict[str, str],
           anyway: bool = False) -> tuple[int, float]:
    """Continue from the checkpoint at `path`: check its settings, load its state onto `device` and restore the
    RNG. Returns the step and the training time so far."""
    checkpoint = load_checkpoint(path, model)
    check_settings(path, checkpoint.get("settings"), settings, anyway)
    load_training_state(checkpoint, model, optimizer, scaler, device)
    restore_rng(checkpoint, device)
    return checkpoint["step"], checkpoint.get("elapsed_s", 0.0)


def load_training_state(checkpoint: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scaler: "torch.amp.GradScaler", device: torch.device) -> None:
    """The model on `device` with the checkpoint's weights, then the optimiser's state, which Adam casts onto the
    device of each parameter as it is at that moment: hence the model moves first (loaded the other way round,
    on a GPU Adam's first step met its state on the CPU).

    The gradient scaler is fp16's alone: an fp16 checkpoint resumed in bf16 or fp32 drops its scale, and a bf16
    or fp32 checkpoint (whose disabled scaler saved nothing) resumed in fp16 starts from a fresh scale."""
    model.to(device)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    saved_scaler = checkpoint.get("scaler") or {}
    if scaler.is_enabled() and saved_scaler:
        scaler.load_state_dict(saved_scaler)


# Settings compared since a later version, with the value every checkpoint written before had.
LATER_SETTINGS = {"--lr-schedule": "constant"}


def check_settings(path: str | Path, saved: dict[str, str] | None, current: dict[str, str], anyway: bool) -> None:
    """Refuse, in one line naming each difference, a resume whose settings differ from the checkpoint's: the step
    it holds would silently mean other images, another batch or another target. --resume-anyway overrides."""
    if saved is None:
        warn(f"--resume: {path} does not record its settings (an older checkpoint): they cannot be compared")
        return
    saved = {**LATER_SETTINGS, **saved}
    unrecorded = [name for name in current if name not in saved]
    if unrecorded:  # settings added to the comparison after the checkpoint was written
        warn(f"--resume: {path} does not record {', '.join(unrecorded)} (an older checkpoint): not compared")
    differences = [f"{name} {saved[name]} (now {value})" for name, value in current.items()
                   if name in saved and saved[name] != value]
    if not differences:
        return
    listed = ", ".join(differences)
    if anyway:
        warn(f"--resume-anyway: continuing {path} with other settings: {listed}")
        return
    raise UserError(f"--resume: {path} was written with other settings: {listed}; resume with the same ones, or "
                    "add --resume-anyway to continue regardless")
