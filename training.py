"""The training loop train.py and distillation.py share: their common flags, Adam, precision, checkpoints and
resume, Ctrl-C, torchrun (DDP), and the final model with its provenance."""

import argparse
import os
import shlex
import signal
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from model_files import load_checkpoint, machine_description, save_model
from training_data import EpochBatchSampler, ImageFolderDataset
from training_log import CsvLog, plot_losses
from utils import (
    COMPILE_HELP,
    PRECISIONS,
    UserError,
    autocast,
    choose_device,
    compile_network,
    positive_int,
    save_json,
    torch_save,
    training_precision,
    warn,
)


def _ignore_sigint(worker_id: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop


def add_training_args(parser: argparse.ArgumentParser) -> None:
    """The flags train.py and distillation.py share (the original scripts' names kept)."""
    parser.add_argument("--datapath", required=True,
                        help="folder of training photos, searched recursively (e.g. the COCO 2017 root)")
    parser.add_argument("--save-dir", default="models", help="folder for the final model (default: %(default)s)")
    parser.add_argument("--savename", default=None,
                        help="file name of the final model (default: derived from the inputs, .pth)")
    parser.add_argument("--epochs", type=positive_int, default=2, help="passes over the dataset (default: %(default)s)")
    parser.add_argument("--max-steps", type=positive_int, default=None,
                        help="stop after this many optimiser steps, e.g. for smoke runs (default: no limit)")
    parser.add_argument("--batch-size", type=positive_int, default=4, help="images per step (default: %(default)s)")
    parser.add_argument("--image-size", type=positive_int, default=256,
                        help="training crops are this many pixels square (default: %(default)s)")
    parser.add_argument("--learning-rate", "--lr", dest="learning_rate", type=float, default=1e-3,
                        help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42, help="seed for weights and data order (default: %(default)s)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="where to train; auto prefers CUDA, then MPS (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=None,
                        help="data-loading processes (default: 4 on CUDA, 0 otherwise)")
    parser.add_argument("--vgg-weights", default="imagenet",
                        help="loss network: imagenet (VGG16, the real thing), offline (a seeded random "
                             "multi-scale network with colour statistics, for machines without the ImageNet "
                             "weights: palette and some texture, not artistic style), random (untrained VGG16, "
                             "smoke runs) or PATH to a torchvision VGG16 state_dict (default: %(default)s)")
    parser.add_argument("--log-dir", default="logs",
                        help="folder for the CSV log, the loss plot and the params file (default: %(default)s)")
    parser.add_argument("--log-interval", type=positive_int, default=50,
                        help="steps between log rows and progress-bar updates (default: %(default)s)")
    parser.add_argument("--checkpoint-dir", default="checkpoints",
                        help="folder for resumable checkpoints (default: %(default)s)")
    parser.add_argument("--checkpoint-interval", type=positive_int, default=2000,
                        help="steps between checkpoints (default: %(default)s)")
    parser.add_argument("--resume", default=None, metavar="CKPT",
                        help="continue from a checkpoint written by this script (default: start fresh)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="arithmetic of the forward passes (autocast; weights and losses stay fp32): auto = "
                             "bf16 on GPUs and CPUs with native bfloat16, else fp32; fp16 (CUDA only) uses a "
                             "gradient scaler (default: %(default)s)")
    parser.add_argument("--compile", action="store_true", help=COMPILE_HELP)
    parser.add_argument("--save-fp16", action="store_true",
                        help="store the final model's tensors as float16: half the file size, loads back as "
                             "float32 (default: float32)")


def require_writable_folders(args: argparse.Namespace) -> None:
    """Fail at once, before any work, if an output folder cannot be made or written to (nothing is created)."""
    for flag, folder in (("--save-dir", args.save_dir), ("--log-dir", args.log_dir),
                         ("--checkpoint-dir", args.checkpoint_dir)):
        absolute = Path(folder).absolute()
        existing = next(p for p in (absolute, *absolute.parents) if p.exists())
        if not existing.is_dir():
            raise UserError(f"{flag}: cannot create the folder {folder}: {existing} is a file")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UserError(f"{flag}: cannot write to {existing} (no permission, or a read-only disk)")


def training_device(name: str) -> torch.device:
    """The device of this process; under torchrun, also joins the process group (NCCL or gloo)."""
    device = choose_device(name)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def _rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


LossFunction = Callable[[torch.nn.Module, torch.Tensor, int], dict[str, torch.Tensor]]


def fit(model: torch.nn.Module, compute_losses: LossFunction, dataset: ImageFolderDataset,
        args: argparse.Namespace, device: torch.device, provenance: dict) -> Path:
    """The training loop both trainers share: Adam, progress, CSV log, checkpoints, resume, Ctrl-C, DDP.

    `compute_losses(network, batch, step)` runs `network` (the model, wrapped for DDP under torchrun)
    on the batch and returns named loss terms, the one to minimise under "total". Rank 0 writes the
    log, checkpoints and the model (to `save_dir/savename`, with `provenance` plus run facts beside
    it; `provenance` should name the command, see command_line).
    """
    rank, world_size = _rank_and_world()
    is_main = rank == 0
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    precision = training_precision(args.precision, device)
    scaler = _gradient_scaler(precision == "fp16")
    steps_per_epoch = EpochBatchSampler(len(dataset), args.batch_size, 0, 0, world_size=world_size).steps_per_epoch()
    total_steps = args.epochs * steps_per_epoch
    if args.max_steps is not None:
        total_steps = min(total_steps, args.max_steps)
    step, elapsed = 0, 0.0
    if args.resume:
        checkpoint = load_checkpoint(args.resume)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        step, elapsed = checkpoint["step"], checkpoint.get("elapsed_s", 0.0)
        torch.set_rng_state(checkpoint["torch_rng"])
        if "scaler" in checkpoint:
            scaler.load_state_dict(checkpoint["scaler"])
    model.to(device).train()
    torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick its fastest kernels once
    network = compile_network(model, args.compile)
    if world_size > 1:
        device_ids = [device] if device.type == "cuda" else None
        network = torch.nn.parallel.DistributedDataParallel(network, device_ids=device_ids)
    stem = Path(args.savename).stem
    log = CsvLog(Path(args.log_dir) / f"{stem}.csv", keep_until=step) if is_main else None
    workers = args.workers if args.workers is not None else (4 if device.type == "cuda" else 0)

    def save_checkpoint() -> Path:
        path = Path(args.checkpoint_dir) / f"{stem}_step{step:07d}.pth"
        if is_main:
            torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                        "elapsed_s": elapsed, "torch_rng": torch.get_rng_state(), "scaler": scaler.state_dict(),
                        "args": vars(args)}, path)
        return path

    stop = StopRequest(world_size, device)
    progress = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True, disable=not is_main)
    sums: dict[str, torch.Tensor] = {}
    sampler = EpochBatchSampler(len(dataset), args.batch_size, args.seed, 0, 0, rank, world_size)
    # One loader for the whole run: persistent workers are not respawned every epoch (which, on a small
    # dataset, cost more than the steps themselves); the sampler, read in this process, moves on instead.
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                                         persistent_workers=workers > 0, worker_init_fn=_ignore_sigint,
                                         pin_memory=device.type == "cuda")
    started, interval_steps = time.perf_counter(), 0
    with stop, progress:  # the bar is closed (its line ended) before any error is printed
        while step < total_steps and not stop.requested:
            sampler.epoch, sampler.start_step = divmod(step, steps_per_epoch)
            for batch in loader:
                with autocast(precision, device):
                    losses = compute_losses(network, batch.to(device, non_blocking=True), step)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(losses["total"]).backward()
                scaler.step(optimizer)
                scaler.update()
                step += 1
                interval_steps += 1
                for name, value in losses.items():
                    sums[name] = sums.get(name, 0) + value.detach()
                progress.update(1)
                if step % args.log_interval == 0 or step == total_steps:
                    means = _mean_over_processes(sums, interval_steps)
                    if log is not None:
                        log.write(step, elapsed + time.perf_counter() - started, means)
                    progress.set_postfix({k: f"{v:.3g}" for k, v in means.items()})
                    sums, interval_steps = {}, 0
                if step % args.checkpoint_interval == 0:
                    save_checkpoint()
                if step >= total_steps or stop.agreed():
                    break
    elapsed += time.perf_counter() - started
    if stop.requested:
        path = save_checkpoint()
        _write_run_files(log, args, provenance, stem)
        raise UserError(f"interrupted at step {step}/{total_steps}; checkpoint saved, continue with: "
                        f"--resume {shlex.quote(str(path))}")
    model_path = Path(args.save_dir) / args.savename
    if is_main:
        _write_run_files(log, args, provenance, stem)
        save_model(model, model_path, {
            **provenance, "steps": step, "image_size": args.image_size, "batch_size": args.batch_size,
            "processes": world_size, "precision": precision, "vgg_weights": args.vgg_weights,
            "wall_time_s": round(elapsed, 1), "machine": machine_description(device), "final_losses": log.last(),
        }, fp16=args.save_fp16)
    if world_size > 1:
        dist.barrier()
    return model_path


def _gradient_scaler(enabled: bool) -> "torch.amp.GradScaler":
    """fp16 gradients underflow without loss scaling; disabled, the scaler passes everything through."""
    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
        return torch.amp.GradScaler("cuda", enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)


def _mean_over_processes(sums: dict[str, torch.Tensor], steps: int) -> dict[str, float]:
    """Mean loss terms over the last `steps` steps and over all processes (the only host sync)."""
    names = list(sums)
    stacked = torch.stack([sums[n].float() for n in names]) / steps
    if dist.is_initialized():
        dist.all_reduce(stacked)
        stacked /= dist.get_world_size()
    return dict(zip(names, stacked.tolist(), strict=True))


def _write_run_files(log: "CsvLog | None", args: argparse.Namespace, provenance: dict, stem: str) -> None:
    if log is None:
        return
    plot_losses(log.rows(), Path(args.log_dir) / f"{stem}_loss.png")
    save_json({"args": vars(args), **provenance}, Path(args.log_dir) / f"{stem}_params.json")


class StopRequest:
    """Turn the first Ctrl-C/SIGTERM into a flag checked between steps; a second one aborts."""

    requested = False

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        warn("stopping after this step (press Ctrl-C again to abort without a checkpoint)")

    def __init__(self, world_size: int, device: torch.device):
        # Under torchrun the processes agree on the flag every step. Over gloo, with a CPU tensor, that costs
        # no GPU sync: a CUDA tensor over NCCL would make every step wait for the GPU to finish the last one.
        self._group = None
        if world_size > 1 and device.type != "cpu":
            self._group = dist.new_group(backend="gloo")  # every process constructs one, as new_group needs
        self._world_size = world_size

    def agreed(self) -> bool:
        """Whether to stop now; under torchrun all processes stop at the same step."""
        if self._world_size == 1:
            return self.requested
        flag = torch.tensor([float(self.requested)])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        self.requested = bool(flag.item())
        return self.requested

    def __enter__(self):
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc_info):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

