"""The small helpers every script needs: one-line user errors and `run_main`, argument types,
device and precision choice, and files written atomically (never half-written under their final name)."""

import argparse
import contextlib
import functools
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm


class UserError(Exception):
    """A problem with the user's input: reported as one line, without a traceback."""


class TooLarge(UserError):
    """An image or batch too large for the device (the scripts add which flag renders smaller)."""


# PyTorch's (CUDA, the CPU allocator), a C++ std::bad_alloc, and OpenVINO's CPU plugin's (2026.4)
_OUT_OF_MEMORY = ("out of memory", "not enough memory", "bad_alloc", "Failed to allocate", "Could not allocate memory",
                  "exceeds PTRDIFF_MAX")


def too_large_for_device(exc: BaseException) -> str | None:
    """What `exc` says was too large for the device, or None: its memory (torch.OutOfMemoryError, or the CPU
    allocator's RuntimeError), or, on CUDA, the 32-bit indexing of some kernels (past 2^31 values a tensor)."""
    if isinstance(exc, MemoryError):  # Python's, or a C++ std::bad_alloc (OpenVINO's) as pybind11 raises it
        return "out of memory"
    text = str(exc) if isinstance(exc, RuntimeError) else ""
    if any(sign in text for sign in _OUT_OF_MEMORY):
        return "out of memory"
    if "32-bit index" in text:
        return "too large for the device's 32-bit indexing"
    return None


def warn(message: str) -> None:
    tqdm.write(f"warning: {message}", file=sys.stderr)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the module docstring kept as written, a refused flag as one line (`error: ...`), and no
    abbreviated flags: argparse would take `--style-weight` for `--style-weights` if only one of them existed, and a
    prefix such as `--style-weig` silently for whichever flag it happens to match."""

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
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


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"not an integer: {text}") from None
    if value < 0:
        raise ValueError(f"must be >= 0: {text}")
    return value


non_negative_int.__name__ = "non-negative integer"


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


def cuda_has_native_bf16(device: torch.device) -> bool:
    """True on GPUs with bfloat16 tensor cores (Ampere and later, compute capability 8.0 and up).
    torch.cuda.is_bf16_supported() is also true where bf16 is only emulated (T4, V100), several times slower."""
    return torch.cuda.get_device_capability(device) >= (8, 0)


def choose_precision(name: str, device: torch.device) -> str:
    """`auto` as the fastest precision that keeps the quality on `device`; a named one must work there.

    auto: fp16 on CUDA, bf16 on CPUs with native bfloat16, fp32 elsewhere (MPS, older CPUs)."""
    if name == "auto":
        if device.type == "cuda":
            return "fp16"
        return "bf16" if device.type == "cpu" and cpu_has_fast_bf16() else "fp32"
    if name == "fp32":
        return name
    if device.type == "cuda" and name == "bf16":
        if not torch.cuda.is_bf16_supported():
            raise UserError("--precision bf16: this GPU has no bfloat16 support (use fp16 or fp32)")
        if not cuda_has_native_bf16(device):
            warn("--precision bf16: this GPU only emulates bfloat16, slowly (compute capability below 8.0); "
                 "fp16 is the fast choice here")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # older releases only warn that they disable autocast
            torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[name])
    except Exception:
        raise UserError(f"--precision {name} is not supported on {device.type} by torch {torch.__version__} "
                        "(use fp32)") from None
    return name


RUNTIMES = ["auto", "torch", "openvino"]
# OpenVINO's set-up pays for itself only with enough work: its export (about a second on 2 cores) and a
# compilation per image size (a fraction of one) made the bundled 600x400 photo 1.89 s against PyTorch's 0.46 s,
# and it saved about 0.77 s per megapixel (benchmarks/cpu-2core-paths.*, docs/performance.md).
OPENVINO_EXPORT_PIXELS = 1_500_000  # the work whose saving pays for the export
OPENVINO_COMPILE_PIXELS = 300_000  # the same, for each size compiled


def openvino_installed() -> bool:
    """openvino imports (missing, or broken, e.g. built against another numpy: False) and onnx is there (the network
    reaches OpenVINO as an ONNX graph, which torch.onnx writes with it; importing onnx itself takes 0.7 s)."""
    import importlib.util

    try:
        import openvino  # noqa: F401
    except Exception:
        return False
    return importlib.util.find_spec("onnx") is not None


def choose_runtime(name: str, device: torch.device, precision: str, compile: bool = False,
                   work: Callable[[], tuple[int, int]] | None = None) -> str:
    """What runs the network when rendering: `torch`, or `openvino` (style_transfer/openvino_runtime.py); a
    named one that cannot run is one UserError line, before anything is loaded or written.

    auto: OpenVINO on the CPU where openvino and onnx are installed, in fp32 or bf16, without --compile, and
    for enough work to pay for its set-up: `work()` gives (pixels the network will render, distinct sizes among
    them); None: plenty. It ran several times faster than every PyTorch path on the CPUs measured
    (docs/performance.md). Else PyTorch."""
    if name == "auto":
        if device.type != "cpu" or precision not in ("fp32", "bf16") or compile:
            return "torch"
        if work is not None:
            pixels, sizes = work()
            if pixels < OPENVINO_EXPORT_PIXELS + sizes * OPENVINO_COMPILE_PIXELS:
                return "torch"
        return "openvino" if openvino_installed() else "torch"
    if name == "openvino":
        if device.type != "cpu":
            raise UserError(f"--runtime openvino runs on the CPU, not on {device.type} (add --device cpu)")
        if compile:
            raise UserError("--compile compiles the PyTorch network: it cannot go with --runtime openvino")
        if precision not in ("fp32", "bf16"):
            raise UserError(f"--runtime openvino runs fp32 or bf16, not --precision {precision}")
        if not openvino_installed():
            raise UserError("--runtime openvino needs the openvino and onnx packages (pip install openvino onnx; "
                            "see requirements.txt)")
    return name


def training_precision(name: str, device: torch.device) -> str:
    """Like choose_precision, but auto prefers bf16 on GPUs that run it natively (no gradient scaling needed),
    fp16 with a gradient scaler on older ones; fp16 is CUDA only."""
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if cuda_has_native_bf16(device) else "fp16"
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


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0; the type of every loss weight (a NaN weight would train a NaN model)."""
    value = _number(text)
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"must be >= 0: {text}")
    return value


unit_float.__name__ = "number from 0 to 1"  # argparse names the type in its error message


positive_float.__name__ = "positive number"


non_negative_float.__name__ = "non-negative number"
