"""Helpers shared by every script: errors, devices, image I/O, atomic files, model files and
the training loop that train.py and distillation.py share."""

import argparse
import contextlib
import csv
import functools
import json
import math
import os
import pickle
import platform
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.distributed as dist
from PIL import Image, ImageDraw, ImageOps
from tqdm import tqdm

from transformer_net import TransformerNet

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


# ---------------------------------------------------------------- errors and entry points

class UserError(Exception):
    """A problem with the user's input: reported as one line, without a traceback."""


class TooLarge(UserError):
    """An image or batch too large for the device (the scripts add which flag renders smaller)."""


def too_large_for_device(exc: BaseException) -> str | None:
    """What `exc` says was too large for the device, or None: its memory (torch.OutOfMemoryError, or the CPU
    allocator's RuntimeError), or, on CUDA, the 32-bit indexing of some kernels (past 2^31 values a tensor)."""
    text = str(exc) if isinstance(exc, RuntimeError) else ""
    if "out of memory" in text or "not enough memory" in text:
        return "out of memory"
    if "32-bit index" in text:
        return "too large for the device's 32-bit indexing"
    return None


def warn(message: str) -> None:
    tqdm.write(f"warning: {message}", file=sys.stderr)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the module docstring kept as written, and a refused flag as one line: `error: ...`."""

    def __init__(self, **kwargs):
        super().__init__(formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def run_main(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run a script's main(): user errors become one `error:` line and exit status 1."""
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def parse_weights(text: str | None, count: int, what: str) -> list[float]:
    """Parse `w1,w2,...` into `count` non-negative weights summing to 1 (default: equal)."""
    if text is None:
        return [1.0 / count] * count
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise UserError(f"{what}: not a comma-separated list of numbers: {text!r}") from None
    if len(weights) != count:
        raise UserError(f"{what}: {len(weights)} weights given for {count} inputs")
    if any(not np.isfinite(w) or w < 0 for w in weights):
        raise UserError(f"{what}: weights must be finite and non-negative: {text}")
    total = sum(weights)
    if total == 0:
        raise UserError(f"{what}: the weights are all zero")
    return [w / total for w in weights]


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"not an integer: {text}") from None
    if value <= 0:
        raise ValueError(f"must be > 0: {text}")
    return value


positive_int.__name__ = "positive integer"  # argparse names the type in its error message


# ---------------------------------------------------------------- devices

def choose_device(name: str = "auto") -> torch.device:
    """`auto` prefers CUDA, then Apple's MPS, then the CPU; a named device must exist."""
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    elif name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (try --device cpu)")
    elif name == "mps" and not has_mps:
        raise UserError("--device mps: Apple's MPS backend is not available (try --device cpu)")
    return torch.device(name)


PRECISIONS = ["auto", "fp32", "bf16", "fp16"]
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_fast_bf16() -> bool:
    """True where oneDNN runs bfloat16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def choose_precision(name: str, device: torch.device) -> str:
    """`auto` as the fastest precision that keeps the quality on `device`; a named one must work there.

    auto: fp16 on CUDA, bf16 on CPUs with native bfloat16, fp32 elsewhere (MPS, older CPUs)."""
    if name == "auto":
        if device.type == "cuda":
            return "fp16"
        return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"
    if name == "fp32":
        return name
    if device.type == "cuda" and name == "bf16" and not torch.cuda.is_bf16_supported():
        raise UserError("--precision bf16: this GPU has no bfloat16 support (use fp16 or fp32)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # older releases only warn that they disable autocast
            torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[name])
    except Exception:
        raise UserError(f"--precision {name} is not supported on {device.type} by torch {torch.__version__} "
                        "(use fp32)") from None
    return name


def training_precision(name: str, device: torch.device) -> str:
    """Like choose_precision, but auto prefers bf16 on GPUs (no gradient scaling needed) and fp16 is CUDA only."""
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return choose_precision(name, device)
    if name == "fp16" and device.type != "cuda":
        raise UserError("--precision fp16: training in fp16 needs CUDA (use bf16 or fp32)")
    return choose_precision(name, device)


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context for a choose_precision() result (nothing for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])


def compile_network(model: torch.nn.Module, enabled: bool, inference: bool = False) -> torch.nn.Module:
    """torch.compile'd `model` when `enabled` (same weights, fused kernels). The first call at each new
    input size pays the compilation (seconds to tens of seconds), so it pays off on videos and training.
    `inference`: the weights will not change, so they are folded into the compiled code (freezing)."""
    if not enabled:
        return model
    if not hasattr(torch, "compile"):
        raise UserError(f"--compile needs torch >= 2.0 (this is {torch.__version__})")
    on_cpu = next(model.parameters()).device.type == "cpu"
    if on_cpu and not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++")):
        raise UserError("--compile on the CPU needs a C++ compiler (g++ or clang++; or leave out --compile)")
    return torch.compile(model, dynamic=False, options={"freezing": True} if inference else None)


COMPILE_HELP = ("torch.compile the transformer network: fused kernels, faster after a warm-up of tens of seconds "
                "per input size; pays off on GPUs and long runs (default: off)")


# ---------------------------------------------------------------- files

def require_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what}: no such file: {path}")
    return path


@contextlib.contextmanager
def atomic_path(final_path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `final_path`; rename it into place only on success."""
    final_path = Path(final_path)
    final_path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{final_path.stem}.", suffix=final_path.suffix,
                                     dir=final_path.parent)
    os.close(fd)
    temp_path = Path(temp_name)
    try:
        yield temp_path
        if temp_path.exists():  # mkstemp makes it private (0600): give it the mode a new file gets here
            os.chmod(temp_path, 0o666 & ~_umask())
        os.replace(temp_path, final_path)
    finally:
        temp_path.unlink(missing_ok=True)


@functools.cache
def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(final_path: str | Path) -> Iterator[Path]:
    """atomic_path for writing one file: an OSError (a full disk, a file in the way) becomes a UserError."""
    try:
        with atomic_path(final_path) as temp:
            yield temp
    except OSError as exc:
        raise write_error(final_path, exc) from None


def write_error(path: str | Path, exc: OSError) -> UserError:
    return UserError(f"cannot write {path}: {exc.strerror or exc}")


def save_json(data: dict, path: str | Path) -> None:
    with atomic_file(path) as temp:
        temp.write_text(json.dumps(data, indent=2, default=str) + "\n")


def torch_save(obj: object, path: str | Path) -> None:
    with atomic_file(path) as temp, temp.open("wb") as file:
        torch.save(obj, file)  # through a Python file, a full disk is an OSError, not an obscure RuntimeError


# ---------------------------------------------------------------- images

def list_images(folder: str | Path) -> list[Path]:
    """Every file with an image extension below `folder`, recursively, in a stable order."""
    return sorted(p for p in Path(folder).rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def load_rgb(path: str | Path, size: int | None = None) -> Image.Image:
    """Open an image upright (EXIF orientation applied) as RGB; `size` scales its shorter side."""
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UserError(f"cannot read image {path}: {exc}") from None
    if size is not None:
        scale = size / min(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    return image


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """A PIL RGB image as a 3xHxW tensor in 0-255, of torch's default dtype (float32 unless changed)."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1).to(torch.get_default_dtype())


def tensor_to_image(tensor: torch.Tensor) -> Image.Image:
    """A 3xHxW tensor in 0-255 (clamped and rounded) as a PIL RGB image."""
    array = tensor.detach().float().clamp(0, 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, "RGB")


# ---------------------------------------------------------------- model files

def save_model(model: torch.nn.Module, path: str | Path, provenance: dict, fp16: bool = False) -> None:
    """Save a plain state_dict (the example's layout) and its provenance as JSON beside it.

    With `fp16` the tensors are stored as float16: half the size, and load_state_dict casts them
    back to float32 (here and in the PyTorch example)."""
    path = Path(path)
    state = {k: (v.half() if fp16 else v).detach().cpu() for k, v in model.state_dict().items()}
    torch_save(state, path)
    save_json(provenance, provenance_path(path))


def provenance_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


# The original multi-style repo saved each tensor twice, under two module trees; either maps.
_LEGACY_RENAMES = [
    (r"conv1\.conv1\.", "conv1.conv2d."), (r"conv2\.conv1\.", "conv2.conv2d."),
    (r"conv3\.conv1\.", "conv3.conv2d."), (r"conv4\.conv1\.", "deconv3.conv2d."),
    (r"norm([1-5])\.", r"in\1."),
    (r"res([1-5])\.ConvLayer([12])\.conv1\.", r"res\1.conv\2.conv2d."),
    (r"res([1-5])\.norm([12])\.", r"res\1.in\2."),
    (r"up([12])\.conv1\.", r"deconv\1.conv2d."),
    (r"encoder\.0\.conv1\.", "conv1.conv2d."), (r"encoder\.3\.conv1\.", "conv2.conv2d."),
    (r"encoder\.6\.conv1\.", "conv3.conv2d."), (r"encoder\.1\.", "in1."),
    (r"encoder\.4\.", "in2."), (r"encoder\.7\.", "in3."),
    (r"decoder\.0\.conv1\.", "deconv1.conv2d."), (r"decoder\.3\.conv1\.", "deconv2.conv2d."),
    (r"decoder\.6\.conv1\.", "deconv3.conv2d."), (r"decoder\.1\.", "in4."), (r"decoder\.4\.", "in5."),
]
_LEGACY_RESIDUAL = re.compile(r"residual\.([0-4])\.(ConvLayer[12]\.conv1\.|norm[12]\.)(.+)")
# Old releases of the example saved InstanceNorm running statistics that nothing uses.
_UNUSED_KEY = re.compile(r"(^|\.)(running_mean|running_var|num_batches_tracked)$")


def _canonical_name(key: str) -> str:
    key = key.removeprefix("module.")  # saved from a DataParallel wrapper
    residual = _LEGACY_RESIDUAL.fullmatch(key)
    if residual:
        index, inner, rest = residual.groups()
        key = f"res{int(index) + 1}.{inner}{rest}"
    for pattern, replacement in _LEGACY_RENAMES:
        renamed, count = re.subn(f"^{pattern}", replacement, key)
        if count:
            return renamed
    return key


def to_transformer_state(state: object) -> dict[str, torch.Tensor]:
    """Our, the example's or the original repo's layout as our state_dict (fp32 tensors)."""
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a training checkpoint
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("it holds no state_dict")
    converted = {}
    for key, tensor in state.items():
        if _UNUSED_KEY.search(key):
            continue
        converted.setdefault(_canonical_name(key), tensor.float())
    return converted


def load_transformer(path: str | Path, device: torch.device | str = "cpu") -> TransformerNet:
    """Load a TransformerNet in eval mode from any supported layout; never runs pickled code."""
    path = require_file(path, "model")
    model = TransformerNet()
    try:
        state = to_transformer_state(_load_weights(path))
        _check_state(state, model.state_dict())
    except ValueError as exc:
        raise UserError(f"{path} is not a TransformerNet model: {exc}") from None
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def _load_weights(path: Path) -> object:
    """torch.load with weights_only=True, its many failure messages turned into one short reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4 in the checkpoint"
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise ValueError("it holds pickled objects other than tensors, which are refused "
                             "(nothing in it was run)") from None
        raise ValueError(f"not a file written by torch.save ({_first_line(exc)})") from None
    except Exception as exc:
        if "zip archive" in str(exc) or isinstance(exc, EOFError):
            raise ValueError("the file is truncated or corrupt") from None
        detail = "" if isinstance(exc, KeyError) else f" ({type(exc).__name__}: {_first_line(exc)})"
        raise ValueError(f"not a file written by torch.save{detail}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:120] if text else type(exc).__name__


def _check_state(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of its {len(expected)} weights are missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unknown entries (e.g. {unexpected[0]})")
        raise ValueError(", ".join(parts))
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise ValueError(f"{key} has shape {list(state[key].shape)}, expected {list(tensor.shape)}")


# ---------------------------------------------------------------- training (train.py, distillation.py)

class ImageFolderDataset(torch.utils.data.Dataset):
    """Every readable image below a folder, as RGB, shorter side scaled and centre-cropped."""

    def __init__(self, root: str | Path, image_size: int):
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"--datapath: no such folder: {root}")
        candidates = list_images(root)
        self.paths = [p for p in tqdm(candidates, desc="checking images", unit="img",
                                      disable=len(candidates) < 5000, leave=False) if _readable(p)]
        if not self.paths:
            raise UserError(f"--datapath: no readable image in {root} "
                            f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        for offset in range(len(self.paths)):
            path = self.paths[(index + offset) % len(self.paths)]
            try:
                return image_to_tensor(self._crop(load_rgb(path, self.image_size)))
            except UserError as exc:  # a file that opened but fails to decode: use the next one
                warn(f"skipping {exc}")
        raise UserError("--datapath: no image could be decoded")

    def _crop(self, image: Image.Image) -> Image.Image:
        left = (image.width - self.image_size) // 2
        top = (image.height - self.image_size) // 2
        return image.crop((left, top, left + self.image_size, top + self.image_size))


def _readable(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except Exception as exc:
        warn(f"skipping unreadable image {path}: {exc}")
        return False


class EpochBatchSampler(torch.utils.data.Sampler):
    """This process's batches of one epoch: a seeded shuffle per epoch, from any step on.

    Each step's global batch is perm[k*B:(k+1)*B] for B = batch_size * world_size, and rank r takes
    the r-th part of it, so N processes see exactly the data of one process with N times the batch,
    and a resumed run sees exactly what the uninterrupted run would have seen.
    """

    def __init__(self, size: int, batch_size: int, seed: int, epoch: int, start_step: int = 0,
                 rank: int = 0, world_size: int = 1):
        self.size, self.batch_size, self.seed, self.epoch = size, batch_size, seed, epoch
        self.start_step, self.rank, self.world_size = start_step, rank, world_size

    def steps_per_epoch(self) -> int:
        return math.ceil(self.size / (self.batch_size * self.world_size))

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        global_batch = self.batch_size * self.world_size
        for step in range(self.start_step, self.steps_per_epoch()):
            chunk = order[step * global_batch:(step + 1) * global_batch]
            yield torch.tensor_split(chunk, self.world_size)[self.rank].tolist()

    def __len__(self) -> int:
        return self.steps_per_epoch() - self.start_step


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
                        help="loss network: imagenet, random (untrained, offline smoke runs) "
                             "or PATH to a torchvision VGG16 state_dict (default: %(default)s)")
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


def load_checkpoint(path: str | Path) -> dict:
    path = require_file(path, "--resume")
    try:
        checkpoint = _load_weights(path)  # never runs pickled code
        if not (isinstance(checkpoint, dict) and {"model", "optimizer", "step"} <= checkpoint.keys()
                and isinstance(checkpoint["model"], dict)):
            raise ValueError("it is not a training checkpoint of this suite")
        _check_state(checkpoint["model"], TransformerNet().state_dict())
    except ValueError as exc:
        raise UserError(f"--resume: {path} is not a usable checkpoint: {exc}") from None
    return checkpoint


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


class CsvLog:
    """Loss rows appended as they come; on resume, rows past the checkpoint are dropped."""

    def __init__(self, path: Path, keep_until: int = 0):
        self.path = path
        self._rows: list[dict] = []
        if keep_until and path.is_file():
            with path.open(newline="") as file:
                self._rows = [r for r in csv.DictReader(file) if int(r["step"]) <= keep_until]
        self._fields: list[str] | None = list(self._rows[0]) if self._rows else None
        self._rewrite()

    def write(self, step: int, elapsed: float, losses: dict[str, float]) -> None:
        row = {"step": step, "elapsed_s": f"{elapsed:.2f}", **{k: f"{v:.6g}" for k, v in losses.items()}}
        self._rows.append(row)
        if self._fields is None:
            self._fields = list(row)
            self._rewrite()
        else:
            try:
                with self.path.open("a", newline="") as file:
                    csv.DictWriter(file, self._fields).writerow(row)
            except OSError as exc:
                raise write_error(self.path, exc) from None

    def rows(self) -> list[dict]:
        return self._rows

    def last(self) -> dict:
        return {k: float(v) for k, v in self._rows[-1].items()} if self._rows else {}

    def _rewrite(self) -> None:
        if self._fields is None:
            return
        with atomic_file(self.path) as temp, temp.open("w", newline="") as file:
            writer = csv.DictWriter(file, self._fields)
            writer.writeheader()
            writer.writerows(self._rows)


def plot_losses(rows: list[dict], path: Path, width: int = 900, height: int = 500) -> None:
    """Draw each loss column against the step on a log scale, as a PNG (no plotting library)."""
    names = [k for k in (rows[0] if rows else {}) if k not in ("step", "elapsed_s")]
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = 70, 20, width - 20, height - 40
    draw.rectangle((left, top, right, bottom), outline="black")
    points = {n: [(int(r["step"]), float(r[n])) for r in rows if float(r[n]) > 0] for n in names}
    values = [math.log10(v) for series in points.values() for _, v in series]
    if values:
        steps = [s for series in points.values() for s, _ in series]
        lo, hi = min(values), max(values) + 1e-9
        first, last = min(steps), max(steps) + 1e-9
        for i, name in enumerate(names):
            xy = [(left + (s - first) / (last - first) * (right - left),
                   bottom - (math.log10(v) - lo) / (hi - lo) * (bottom - top)) for s, v in points[name]]
            colour = PLOT_COLOURS[i % len(PLOT_COLOURS)]
            if len(xy) > 1:
                draw.line(xy, fill=colour, width=2)
            elif xy:
                draw.ellipse((xy[0][0] - 3, xy[0][1] - 3, xy[0][0] + 3, xy[0][1] + 3), fill=colour)
            draw.text((right - 150, top + 10 + 15 * i), name, fill=colour)
        draw.text((5, top), f"{10 ** hi:.3g}", fill="black")
        draw.text((5, bottom - 10), f"{10 ** lo:.3g}", fill="black")
        draw.text((left, bottom + 8), f"step {first:.0f}", fill="black")
        draw.text((right - 80, bottom + 8), f"step {last:.0f}", fill="black")
    draw.text((width // 2 - 60, height - 20), "loss (log scale)", fill="black")
    with atomic_file(path) as temp:
        image.save(temp, format="PNG")


PLOT_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def command_line(script: str, argv: list[str] | None) -> str:
    """The command that ran a script, quoted so it can be pasted back into a shell."""
    argv = sys.argv[1:] if argv is None else argv
    return " ".join(shlex.quote(str(a)) for a in ["python", script, *argv])


def machine_description(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return f"{device.type}: {name}, {os.cpu_count()} cores, {platform.system()}, torch {torch.__version__}"


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


# ---------------------------------------------------------------- rendering (render_image.py, render_video.py)

_LUMA = (0.299, 0.587, 0.114)  # Y of BT.601 / JPEG YCbCr
_NO_ALPHA_FORMATS = {"JPEG", "BMP", "PPM"}
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".avi"}
X264_PRESETS = ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"]


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"not a number: {text}") from None


def unit_float(text: str) -> float:
    """argparse type: a number from 0 to 1."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise ValueError(f"must be from 0 to 1: {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _number(text)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"must be > 0: {text}")
    return value


unit_float.__name__ = "number from 0 to 1"  # argparse names the type in its error message
positive_float.__name__ = "positive number"


def add_render_args(parser: argparse.ArgumentParser) -> None:
    """The flags render_image.py and render_video.py share."""
    parser.add_argument("--preserve-color", "--preserve-colour", action="store_true",
                        help="keep the content's colours: the stylised brightness with the content's chroma")
    parser.add_argument("--strength", type=unit_float, default=1.0, metavar="S",
                        help="how much style: 1 = fully stylised, 0 = the content unchanged, in between a "
                             "blend of the two (default: %(default)s)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                        help="where to run the network; auto prefers CUDA, then MPS (default: %(default)s)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="the network's arithmetic; bf16 and fp16 use autocast; auto = fp16 on CUDA, bf16 on "
                             "CPUs with native bfloat16 (AVX512-BF16, AMX), else fp32 (default: %(default)s)")
    parser.add_argument("--compile", action="store_true", help=COMPILE_HELP)


def default_batch_size(device: torch.device) -> int:
    """Frames per forward pass when rendering video: batches pay on GPUs; on the CPU they were slower."""
    return 4 if device.type == "cuda" else 1


def prepare_for_rendering(model: TransformerNet, precision: str, compile: bool = False) -> torch.nn.Module:
    """`model` (changed in place) set up for stylize() at `precision`, a choose_precision() result.

    bf16 on the CPU converts the weights once, so that the activations stay bf16 from layer to layer:
    autocast instead casts every layer's input and output, and was 1.5x slower at 1280x720 (benchmark.py,
    README). Elsewhere reduced precision is autocast's, the weights stay fp32.
    """
    if precision == "bf16" and next(model.parameters()).device.type == "cpu":
        model.to(torch.bfloat16)
    return compile_network(model.eval(), compile, inference=True)


def stylize(model: torch.nn.Module, batch: torch.Tensor, precision: str = "fp32", preserve_color: bool = False,
            strength: float = 1.0) -> torch.Tensor:
    """Stylise an Nx3xHxW batch in 0-255 (fp32, on the model's device); the result is fp32 in 0-255.

    `precision` is a choose_precision() result; with a model whose weights prepare_for_rendering()
    made bf16, the network simply runs in bf16. With `preserve_color` the stylised luminance goes
    onto the content's chroma; `strength` < 1 then blends towards the content.
    """
    weights = next(model.parameters()).dtype
    try:
        with torch.inference_mode():
            with autocast(precision, batch.device) if weights == torch.float32 else contextlib.nullcontext():
                stylised = model(batch.to(weights))
            stylised = stylised.float().clamp(0, 255)
            if preserve_color:
                stylised = (batch + (_luminance(stylised) - _luminance(batch))).clamp(0, 255)
            return stylised if strength == 1 else torch.lerp(batch, stylised, strength)
    except RuntimeError as exc:  # torch.OutOfMemoryError is one too
        problem = too_large_for_device(exc)
        if problem is None:
            raise
        height, width = batch.shape[-2:]
        frames = f" ({len(batch)} frames at once)" if len(batch) > 1 else ""
        raise TooLarge(f"{problem} at {width}x{height}{frames} on {batch.device}") from None


def _luminance(rgb: torch.Tensor) -> torch.Tensor:
    """Y of YCbCr. Adding a value to R, G and B alike changes Y by that value and leaves Cb and Cr."""
    red, green, blue = rgb.unbind(1)
    return (_LUMA[0] * red + _LUMA[1] * green + _LUMA[2] * blue).unsqueeze(1)


# ------------------------------- images

@dataclass
class Picture:
    """An image to stylise, upright: its RGB pixels, and what is needed to give the result the input's kind."""

    rgb: Image.Image
    alpha: Image.Image | None = None
    grayscale: bool = False
    icc_profile: bytes | None = None

    def resized(self, size: tuple[int, int]) -> "Picture":
        if size == self.rgb.size:
            return self
        alpha = self.alpha.resize(size, Image.Resampling.LANCZOS) if self.alpha else None
        return Picture(self.rgb.resize(size, Image.Resampling.LANCZOS), alpha, self.grayscale, self.icc_profile)

    def with_pixels(self, rgb: Image.Image) -> Image.Image:
        """`rgb` (e.g. the stylised pixels) as the input's kind: grayscale stays gray, alpha comes back."""
        image = rgb.convert("L") if self.grayscale else rgb
        if self.alpha is not None:
            image.putalpha(self.alpha)
        if self.icc_profile:
            image.info["icc_profile"] = self.icc_profile
        return image


def open_picture(path: str | Path) -> Picture:
    """Open any image Pillow reads, upright (EXIF orientation applied); 16-bit becomes 8-bit."""
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UserError(f"cannot read image {path}: {exc}") from None
    # A profile describes RGB or gray pixels; a CMYK or Lab one would not fit the RGB we make of those.
    icc_profile = image.info.get("icc_profile") if image.mode not in ("CMYK", "LAB", "HSV") else None
    if image.mode.startswith("I") or image.mode == "F":  # 16-bit gray (I;16*, or I from older Pillow)
        scale = 1 if image.mode == "F" else 257
        image = Image.fromarray((np.asarray(image, dtype=np.float64) / scale).round().clip(0, 255).astype(np.uint8))
    grayscale = image.mode in ("1", "L", "LA", "La")
    if "transparency" in image.info or image.mode in ("PA", "RGBa", "La"):
        image = image.convert("RGBA")  # palette or single-colour transparency as an alpha channel
    alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
    return Picture(image.convert("RGB"), alpha, grayscale, icc_profile)


def image_format(path: str | Path) -> str:
    """The Pillow format that writes `path`, from its extension."""
    suffix = Path(path).suffix.lower()
    name = Image.registered_extensions().get(suffix)
    if name not in Image.SAVE:
        raise UserError(f"{path}: cannot write images with the extension {suffix or '(none)'!r} "
                        "(use e.g. .png, .jpg or .webp)")
    return name


def save_image(image: Image.Image, path: str | Path) -> None:
    """Write atomically in the format the extension names (JPEG at quality 95)."""
    file_format = image_format(path)
    if file_format in _NO_ALPHA_FORMATS and image.mode in ("LA", "RGBA"):
        warn(f"{Path(path).name}: {file_format} has no transparency, the alpha channel is dropped")
        image = image.convert(image.mode[:-1])
    options = {"quality": 95} if file_format in ("JPEG", "WEBP") else {}
    if image.info.get("icc_profile"):
        options["icc_profile"] = image.info["icc_profile"]
    try:
        with atomic_path(path) as temp:
            image.save(temp, format=file_format, **options)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


# ------------------------------- videos

def find_ffmpeg() -> str | None:
    """The ffmpeg binary inside the imageio-ffmpeg wheel, else one on the PATH, else None."""
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return shutil.which("ffmpeg")


@dataclass
class VideoInfo:
    width: int  # of the frames as OpenCV decodes them (upright)
    height: int
    fps: Fraction
    frames: int | None  # the container's count, an estimate; None if unknown
    audio: str | None  # the first audio stream's codec; None without audio (or without ffmpeg)


def probe_video(path: Path, ffmpeg: str | None) -> VideoInfo:
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # we report unreadable files ourselves
    capture = cv2.VideoCapture(str(path))
    try:
        ok, frame = capture.read() if capture.isOpened() else (False, None)
        if not ok:
            raise UserError(f"cannot read video {path}: OpenCV cannot decode it (not a video, or damaged)")
        cv_fps, frames = capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    text = ""
    if ffmpeg:  # `ffmpeg -i` describes the streams on stderr (and fails for want of an output)
        text = subprocess.run([ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, text=True,
                              errors="replace", stdin=subprocess.DEVNULL).stderr
    audio = re.search(r"Stream #\S+.*?: Audio: (\w+)", text)
    listed_fps = re.search(r"Stream #\S+.*?: Video: .*?([\d.]+) (?:fps|tbr)", text)
    return VideoInfo(frame.shape[1], frame.shape[0],
                     _frame_rate([cv_fps, float(listed_fps.group(1)) if listed_fps else 0.0]),
                     frames if frames > 0 else None, audio.group(1) if audio else None)


def _frame_rate(candidates: list[float]) -> Fraction:
    """The first plausible rate as an exact fraction: 29.97002997 is 30000/1001, not 2997/100."""
    for value in candidates:
        if math.isfinite(value) and 0 < value <= 1000:
            rate = Fraction(value).limit_denominator(1001)
            return rate if abs(rate - value) < 1e-6 * value else Fraction(value).limit_denominator(1_000_000)
    warn("the video does not say its frame rate: assuming 30 fps")
    return Fraction(30)


def audio_codec(ffmpeg: str, source: Path, suffix: str) -> str:
    """`copy` if ffmpeg can copy the source's audio into a `suffix` file as it is, else `aac`."""
    with tempfile.TemporaryDirectory() as folder:
        trial = subprocess.run([ffmpeg, "-v", "error", "-i", str(source), "-map", "0:a", "-c:a", "copy", "-t", "0.5",
                                "-y", str(Path(folder) / f"trial{suffix}")], capture_output=True,
                               stdin=subprocess.DEVNULL)
    return "copy" if trial.returncode == 0 else "aac"


class FrameReader:
    """Decode a video with OpenCV in a background thread: RGB uint8 HxWx3 frames, resized to `size`
    (width, height). A bounded queue keeps only a few frames in memory."""

    def __init__(self, path: Path, size: tuple[int, int], queue_size: int = 16):
        self._capture = cv2.VideoCapture(str(path))
        self._size = size
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                ok, frame = self._capture.read()
                if not ok:
                    break
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                if (frame.shape[1], frame.shape[0]) != self._size:
                    shrink = self._size[0] * self._size[1] < frame.shape[0] * frame.shape[1]
                    frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
                self._put(frame)
        except Exception as exc:
            self._error = exc
        finally:
            self._capture.release()
            self._put(None)

    def _put(self, item: np.ndarray | None) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                pass

    def __iter__(self) -> Iterator[np.ndarray]:
        while (frame := self._queue.get()) is not None:
            yield frame
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class VideoWriter:
    """Encode RGB uint8 NxHxWx3 batches in a background thread: H.264 (yuv420p) by piping raw frames
    to ffmpeg, with the audio of `audio_from` muxed in; without ffmpeg, OpenCV's mp4v writer, no audio.

    yuv420p needs even sides: an odd height or width gets its last row or column repeated once.
    """

    def __init__(self, path: Path, size: tuple[int, int], fps: Fraction, ffmpeg: str | None, crf: int = 18,
                 preset: str = "medium", audio_from: Path | None = None, audio_codec: str = "copy",
                 queue_size: int = 4):
        width, height = size
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._error: Exception | None = None
        self._aborted = False
        self._process: subprocess.Popen | None = None
        self._opencv: cv2.VideoWriter | None = None
        self.padding = (height % 2, width % 2) if ffmpeg else (0, 0)
        if ffmpeg:
            self._log = tempfile.TemporaryFile()
            command = [ffmpeg, "-hide_banner", "-nostats", "-loglevel", "error",
                       "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width + width % 2}x{height + height % 2}",
                       "-framerate", f"{fps.numerator}/{fps.denominator}", "-i", "pipe:0"]
            if audio_from is not None:
                command += ["-i", str(audio_from), "-map", "0:v", "-map", "1:a?", "-c:a", audio_codec]
                command += ["-b:a", "192k"] if audio_codec != "copy" else []
            command += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
                        "-vf", "scale=out_color_matrix=bt709:out_range=tv,"
                               "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv"]
            if path.suffix.lower() in (".mp4", ".m4v", ".mov"):
                command += ["-movflags", "+faststart"]
            # Its own session: Ctrl-C reaches only us, and we stop ffmpeg ourselves.
            self._process = subprocess.Popen([*command, "-y", str(path)], stdin=subprocess.PIPE,
                                             stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=True)
        else:
            self._opencv = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), size)
            if not self._opencv.isOpened():
                raise UserError(f"OpenCV cannot write the video {path}")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._aborted:
                try:
                    frames = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                if frames is None:
                    break
                if self._process is not None:
                    if any(self.padding):
                        frames = np.pad(frames, ((0, 0), (0, self.padding[0]), (0, self.padding[1]), (0, 0)),
                                        mode="edge")
                    self._process.stdin.write(np.ascontiguousarray(frames).tobytes())
                else:
                    for frame in frames:
                        self._opencv.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        except Exception as exc:  # e.g. BrokenPipeError: ffmpeg stopped, its log says why
            self._error = exc

    def write(self, frames: np.ndarray) -> None:
        """Queue a batch; waits while the encoder is behind."""
        while self._error is None:
            try:
                self._queue.put(frames, timeout=0.1)
                return
            except queue.Full:
                pass
        self._finish()

    def close(self) -> None:
        """Encode what is queued and finish the file; UserError if the encoder failed."""
        self.write(None)
        self._finish()

    def _finish(self) -> None:
        self._thread.join()
        if self._opencv is not None:
            self._opencv.release()
            if self._error is not None:
                raise UserError(f"OpenCV's video writer failed: {self._error}")
            return
        with contextlib.suppress(BrokenPipeError):
            self._process.stdin.close()
        returncode = self._process.wait()
        if returncode or self._error is not None:
            self._log.seek(0)
            lines = self._log.read().decode(errors="replace").strip().splitlines()
            first = re.sub(r"^(\[[^]]*\] *)+", "", lines[0]) if lines else self._error  # the cause; the rest follow
            raise UserError(f"ffmpeg failed (exit status {returncode}): {first}")

    def abort(self) -> None:
        """Stop at once (after Ctrl-C or an error); the file is left incomplete for the caller to delete."""
        self._aborted = True
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        self._thread.join()
        if self._process is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()
        if self._opencv is not None:
            self._opencv.release()
