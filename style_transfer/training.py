"""The training loop train.py and distillation.py share: their common flags, Adam, precision, checkpoints and
resume (see training_checkpoint), Ctrl-C, torchrun (DDP), and the final model with its provenance."""

import argparse
import contextlib
import math
import os
import shlex
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from style_transfer import previews, training_checkpoint
from style_transfer.divergence import DivergenceGuard
from style_transfer.model_files import machine_description, save_model
from style_transfer.temporal_loss import LossFunction, add_temporal_weight_arg, with_stability_loss
from style_transfer.training_data import EpochBatchSampler, ImageFolderDataset
from style_transfer.training_log import CsvLog, plot_losses
from utils import (
    COMPILE_HELP,
    PRECISIONS,
    UserError,
    autocast,
    choose_device,
    compile_network,
    non_negative_int,
    positive_float,
    positive_int,
    save_json,
    torch_save,
    training_precision,
    warn,
)


def _ignore_stop_signals(worker_id: int) -> None:
    """In each data-loader worker: the main process decides when to stop. Ctrl-C, and a SIGTERM sent to the whole
    process group (as SLURM and `kill -TERM -- -PGID` do), reach the workers too; one killed by it would make the
    main process fail mid-step, without a checkpoint. The main process still ends its workers when it is done."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


@contextlib.contextmanager
def _workers_ended(loader: torch.utils.data.DataLoader) -> Iterator[None]:
    """End the loader's persistent workers when training ends, however it ends. They ignore SIGTERM (above), so
    the SIGTERM with which Python's multiprocessing ends leftover daemon processes at exit cannot end them: a
    loader still alive then (held by a traceback, or a reference cycle) made the process hang at exit, joining
    workers that would never stop. Told by their loader, they stop at once."""
    try:
        yield
    finally:
        iterator = getattr(loader, "_iterator", None)  # where the DataLoader keeps persistent workers' iterator
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
            loader._iterator = None


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
    parser.add_argument("--learning-rate", "--lr", dest="learning_rate", type=positive_float, default=1e-3,
                        help="Adam learning rate (default: %(default)s)")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                        help="constant: --learning-rate throughout; cosine: from --learning-rate along a half "
                             "cosine to nearly 0 at the last step (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42, help="seed for weights and data order (default: %(default)s)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="where to train; auto prefers CUDA, then MPS (default: %(default)s)")
    parser.add_argument("--workers", type=non_negative_int, default=None,
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
                        help="continue from a checkpoint written by this script, with the same flags: one that "
                             "changes what its step means (batch size, processes, image size, number of photos, "
                             "styles or teachers) is refused (default: start fresh)")
    parser.add_argument("--resume-anyway", action="store_true",
                        help="with --resume: continue even where those settings differ (default: refuse)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="arithmetic of the forward passes (autocast; weights and losses stay fp32): auto = "
                             "bf16 on GPUs and CPUs with native bfloat16 (GPUs of compute capability 8.0 and up), "
                             "fp16 on older GPUs, else fp32; fp16 (CUDA only) uses a gradient scaler "
                             "(default: %(default)s)")
    parser.add_argument("--compile", action="store_true", help=COMPILE_HELP)
    parser.add_argument("--save-fp16", action="store_true",
                        help="store the final model's tensors as float16: half the file size, loads back as "
                             "float32 (default: float32)")
    add_temporal_weight_arg(parser)
    previews.add_preview_args(parser)


def require_writable_folders(args: argparse.Namespace) -> None:
    """Fail at once, before any work, if an output folder cannot be made or written to (nothing is created), or
    if the preview flags are bad (see previews.check_preview_args)."""
    previews.check_preview_args(args)
    for flag, folder in (("--save-dir", args.save_dir), ("--log-dir", args.log_dir),
                         ("--checkpoint-dir", args.checkpoint_dir)):
        absolute = Path(folder).absolute()
        existing = next(p for p in (absolute, *absolute.parents) if p.exists())
        if not existing.is_dir():
            raise UserError(f"{flag}: cannot create the folder {folder}: {existing} is a file")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UserError(f"{flag}: cannot write to {existing} (no permission, or a read-only disk)")


def learning_rate(args: argparse.Namespace, step: int, total_steps: int) -> float:
    """The rate of the update after `step` steps: --learning-rate, or with --lr-schedule cosine that rate times
    (1 + cos(pi step / total)) / 2, which falls to nearly 0 at the last update. A function of the step alone, set
    before every update: a resumed run follows the same curve, and a resume with another --learning-rate (as a
    divergence's message advises) takes it from its first step (the optimiser's saved state held the old rate)."""
    if args.lr_schedule == "constant":
        return args.learning_rate
    return args.learning_rate * 0.5 * (1 + math.cos(math.pi * step / total_steps))


def training_device(name: str) -> torch.device:
    """The device of this process; under torchrun, also joins the process group (fit() leaves it at the end).

    NCCL with one GPU per process; where a machine runs more processes than it has GPUs, they share the GPUs
    round-robin over gloo (NCCL refuses two processes on one GPU). gloo on the CPU."""
    device = choose_device(name)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "gloo"
        if device.type == "cuda":
            local_rank, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
            device = torch.device("cuda", local_rank % gpus)
            torch.cuda.set_device(device)
            if int(os.environ.get("LOCAL_WORLD_SIZE", "1")) <= gpus:
                backend = "nccl"
        dist.init_process_group(backend)
    return device


def _rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def fit(model: torch.nn.Module, compute_losses: LossFunction, dataset: ImageFolderDataset,
        args: argparse.Namespace, device: torch.device, provenance: dict,
        resume_settings: dict[str, str] | None = None) -> Path:
    """The training loop both trainers share: Adam, progress, CSV log, checkpoints, resume, Ctrl-C, DDP.

    `compute_losses(network, batch, step)` runs `network` (the model, wrapped for DDP under torchrun)
    on the batch and returns named loss terms, the one to minimise under "total"; each must be a mean over
    the batch's images. Rank 0 writes the log, checkpoints and the model (to `save_dir/savename`, with
    `provenance` plus run facts beside it; `provenance` should name the command, see command_line).
    `resume_settings` are the script's own settings that --resume must find unchanged (see
    training_checkpoint.run_settings). Under torchrun, the process leaves the process group at the end.
    """
    try:
        return _fit(model, compute_losses, dataset, args, device, provenance, resume_settings or {})
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _fit(model: torch.nn.Module, compute_losses: LossFunction, dataset: ImageFolderDataset,
         args: argparse.Namespace, device: torch.device, provenance: dict, resume_settings: dict[str, str]) -> Path:
    rank, world_size = _rank_and_world()
    is_main = rank == 0
    model.to(device).train()
    if args.temporal_weight:
        compute_losses = with_stability_loss(compute_losses, args.temporal_weight, args.seed, rank)
        provenance = {**provenance, "temporal_weight": args.temporal_weight}
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    precision = training_precision(args.precision, device)
    scaler = _gradient_scaler(precision == "fp16")
    steps_per_epoch = EpochBatchSampler(len(dataset), args.batch_size, 0, 0, world_size=world_size).steps_per_epoch()
    total_steps = args.epochs * steps_per_epoch
    if args.max_steps is not None:
        total_steps = min(total_steps, args.max_steps)
    settings = training_checkpoint.run_settings(args, world_size, len(dataset), total_steps, resume_settings)
    step, elapsed = 0, 0.0
    if args.resume:  # after the model's move to the device: the optimiser's state follows its parameters
        step, elapsed = training_checkpoint.resume(args.resume, model, optimizer, scaler, device, settings,
                                                   args.resume_anyway)
    torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick its fastest kernels once
    network = compile_network(model, args.compile)
    if world_size > 1:
        device_ids = [device] if device.type == "cuda" else None
        network = torch.nn.parallel.DistributedDataParallel(network, device_ids=device_ids)
    if args.compile:  # a full batch is known from the start: a run resumed at an epoch's end starts short
        network = FullBatches(network, args.batch_size * (2 if args.temporal_weight else 1))
    stem = Path(args.savename).stem
    log = CsvLog(Path(args.log_dir) / f"{stem}.csv", keep_until=step) if is_main else None
    preview = previews.Previews(model, args, device, precision, stem, step) if is_main else None
    workers = args.workers if args.workers is not None else (4 if device.type == "cuda" else 0)
    guard = DivergenceGuard(device, check_losses=not scaler.is_enabled(), last_good=args.resume)

    def save_checkpoint() -> Path:
        guard.check(step, model)  # never a checkpoint of a diverged run
        path = Path(args.checkpoint_dir) / f"{stem}_step{step:07d}.pth"
        if guard.last_good == path:  # written at this step already (a stop agreed at a checkpoint step)
            return path
        if is_main:
            torch_save(training_checkpoint.contents(model, optimizer, scaler, step, elapsed, args, settings,
                                                    precision, device), path)
        guard.last_good = path
        return path

    stop = StopRequest(world_size, device)
    progress = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True, disable=not is_main)
    sums: dict[str, torch.Tensor] = {}
    sampler = EpochBatchSampler(len(dataset), args.batch_size, args.seed, 0, 0, rank, world_size)
    # One loader for the whole run: persistent workers are not respawned every epoch (which, on a small
    # dataset, cost more than the steps themselves); the sampler, read in this process, moves on instead.
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                                         persistent_workers=workers > 0, worker_init_fn=_ignore_stop_signals,
                                         pin_memory=device.type == "cuda")
    started, interval_steps = time.perf_counter(), 0
    closing_preview = contextlib.closing(preview) if preview else contextlib.nullcontext()
    with stop, progress, closing_preview, _workers_ended(loader):  # the bar is closed before any error is printed
        while step < total_steps and not stop.stopping:
            sampler.epoch, sampler.start_step = divmod(step, steps_per_epoch)
            for batch in loader:
                with autocast(precision, device):
                    losses = compute_losses(network, batch.to(device, non_blocking=True), step)
                share = sampler.loss_scale(step % steps_per_epoch)
                if share != 1:  # a ragged last global batch: see EpochBatchSampler
                    losses = {name: value * share for name, value in losses.items()}
                optimizer.zero_grad(set_to_none=True)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(args, step, total_steps)
                scaler.scale(losses["total"]).backward()
                scaler.step(optimizer)
                scaler.update()
                step += 1
                interval_steps += 1
                guard.observe(step, losses["total"])
                for name, value in losses.items():
                    sums[name] = sums.get(name, 0) + value.detach()
                progress.update(1)
                if step % args.log_interval == 0 or step == total_steps:
                    means = _mean_over_processes(sums, interval_steps)
                    guard.check(step)  # the loss has just been read: reading the flag costs no extra wait
                    if log is not None:
                        log.write(step, elapsed + time.perf_counter() - started, means)
                        preview.losses(step, means)
                    progress.set_postfix({k: f"{v:.3g}" for k, v in means.items()})
                    sums, interval_steps = {}, 0
                if step % args.checkpoint_interval == 0:
                    save_checkpoint()
                if preview is not None:
                    preview.after_step(step)
                if step >= total_steps or stop.agreed():
                    break
    elapsed += time.perf_counter() - started
    if step < total_steps:  # stopped (Ctrl-C, SIGTERM) before the end; a stop during the last step is the end
        with _all_wait_for_rank_0(world_size):
            path = save_checkpoint()
            _write_run_files(log, args, provenance, stem)
        raise UserError(f"interrupted at step {step}/{total_steps}; checkpoint saved, continue with: "
                        f"--resume {shlex.quote(str(path))}")
    model_path = Path(args.save_dir) / args.savename
    guard.check(step, model)  # never a diverged model
    with _all_wait_for_rank_0(world_size):
        if is_main:
            _write_run_files(log, args, provenance, stem)
            save_model(model, model_path, {
                **provenance, "steps": step, "image_size": args.image_size, "batch_size": args.batch_size,
                "learning_rate": args.learning_rate, "lr_schedule": args.lr_schedule,
                "processes": world_size, "precision": precision, "vgg_weights": args.vgg_weights,
                "wall_time_s": round(elapsed, 1), "machine": machine_description(device),
                "final_losses": log.last(),
            }, fp16=args.save_fp16)
    return model_path


class FullBatches(torch.nn.Module):
    """--compile: a short batch (an epoch's last, in one process or under torchrun) padded to the largest batch the
    network has run, with copies of its first image, and only the real images' outputs returned. Compiled for
    fixed shapes, the network would otherwise be compiled again for the short batch (tens of seconds or more, once
    per run and size); compiling with a dynamic batch dimension instead made the compile itself slower (see
    benchmarks/ragged_compile.py). The padding costs the short step the time of a full one, once an epoch.
    The network stylises each image on its own (instance norm), so the padding changes no real image's output,
    and, cut off, adds nothing to the loss or the gradient."""

    def __init__(self, network: torch.nn.Module, size: int = 0):
        super().__init__()
        self.network = network
        self.size = size  # a full batch (the stability loss stacks its copies in): what the network is compiled for

    def forward(self, images: torch.Tensor, style_mix: torch.Tensor | None = None) -> torch.Tensor:
        count = len(images)
        self.size = max(self.size, count)
        padding = self.size - count
        if padding:
            images = torch.cat([images, images[:1].expand(padding, *images.shape[1:])])
            if style_mix is not None and style_mix.dim() == 2 and len(style_mix) == count:  # a row per image
                style_mix = torch.cat([style_mix, style_mix[:1].expand(padding, -1)])
        output = self.network(images) if style_mix is None else self.network(images, style_mix)
        return output[:count]


@contextlib.contextmanager
def _all_wait_for_rank_0(world_size: int) -> Iterator[None]:
    """Under torchrun, no process goes on (and exits) before rank 0 has written its files, even if that fails:
    torchrun stops all processes as soon as one exits, which would cut rank 0's checkpoint short."""
    try:
        yield
    finally:
        if world_size > 1:
            dist.barrier()


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

    requested = False  # a signal came to this process
    stopping = False  # all processes agreed to stop (requested, here or in another process)

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
            self.stopping = self.requested
        else:
            flag = torch.tensor([float(self.requested)])
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
            self.stopping = bool(flag.item())
        return self.stopping

    def __enter__(self):
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc_info):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

