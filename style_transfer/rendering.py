"""Rendering with a trained network: the flags both renderers share, precision set-up, and `stylize`
(the network, --preserve-color, --strength) for a batch of images or frames."""

import argparse
import contextlib
from collections.abc import Iterator

import torch

from style_transfer.openvino_runtime import OpenVinoNetwork
from transformer_net import TransformerNet
from utils import (
    COMPILE_HELP,
    PRECISIONS,
    RUNTIMES,
    TooLarge,
    autocast,
    compile_network,
    too_large_for_device,
    unit_float,
)

_LUMA = (0.299, 0.587, 0.114)  # Y of BT.601 / JPEG YCbCr


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
    parser.add_argument("--runtime", default="auto", choices=RUNTIMES,
                        help="what runs the network: torch (PyTorch), or openvino (the CPU only, --precision fp32 "
                             "or bf16, not with --compile; needs the openvino and onnx packages; tiles still run in "
                             "PyTorch); auto = openvino on the CPU where those are installed, for work of about 2 "
                             "megapixels or more (less: PyTorch's shorter set-up wins), else torch (default: "
                             "%(default)s)")


def default_batch_size(device: torch.device) -> int:
    """Frames per forward pass when rendering video: batches pay on GPUs; on the CPU they were slower."""
    return 4 if device.type == "cuda" else 1


def prepare_for_rendering(model: TransformerNet, precision: str, compile: bool = False,
                          runtime: str = "torch") -> torch.nn.Module | OpenVinoNetwork:
    """`model` set up for stylize() at `precision`, a choose_precision() result, by `runtime`, a
    choose_runtime() result: for torch, `model` itself, changed in place (or its compiled wrapper); for openvino,
    an OpenVinoNetwork of it (`model` left as it is).

    bf16 on the CPU converts the weights once, so that the activations stay bf16 from layer to layer:
    autocast instead casts every layer's input and output, and was 1.5x slower at 1280x720 (benchmark.py,
    README). Elsewhere reduced precision is autocast's, the weights stay fp32.
    """
    if runtime == "openvino":
        return OpenVinoNetwork(model, precision)
    if precision == "bf16" and next(model.parameters()).device.type == "cpu":
        model.to(torch.bfloat16)
    return compile_network(model.eval(), compile, inference=True)


def stylize(model: torch.nn.Module | OpenVinoNetwork, batch: torch.Tensor, precision: str = "fp32",
            preserve_color: bool = False, strength: float = 1.0) -> torch.Tensor:
    """Stylise an Nx3xHxW batch in 0-255 (fp32, on the model's device); the result is fp32 in 0-255.

    `precision` is a choose_precision() result; with a model whose weights prepare_for_rendering()
    made bf16, the network simply runs in bf16. With `preserve_color` the stylised luminance goes
    onto the content's chroma; `strength` < 1 then blends towards the content.
    """
    try:
        if isinstance(model, OpenVinoNetwork):
            stylised = model(batch)
        else:
            with arithmetic(model, precision, batch.device) as weights:
                stylised = model(batch.to(weights))
        with torch.inference_mode():
            return finish(batch, stylised.float().clamp(0, 255), preserve_color, strength)
    except (RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError too
        problem = too_large_for_device(exc)
        if problem is None:
            raise
        height, width = batch.shape[-2:]
        frames = f" ({len(batch)} frames at once)" if len(batch) > 1 else ""
        raise TooLarge(f"{problem} at {width}x{height}{frames} on {batch.device}") from None


@contextlib.contextmanager
def arithmetic(model: torch.nn.Module, precision: str, device: torch.device) -> Iterator[torch.dtype]:
    """Inference in `precision` (a choose_precision() result): autocast for a model with fp32 weights, none for
    one whose weights prepare_for_rendering() made bf16. Yields the weights' type, the type its input needs."""
    weights = next(model.parameters()).dtype
    with torch.inference_mode():
        with autocast(precision, device) if weights == torch.float32 else contextlib.nullcontext():
            yield weights


def finish(batch: torch.Tensor, stylised: torch.Tensor, preserve_color: bool = False,
           strength: float = 1.0) -> torch.Tensor:
    """--preserve-color and --strength: the network's output `stylised` set against the content `batch`."""
    if preserve_color:
        stylised = (batch + (luminance(stylised) - luminance(batch))).clamp(0, 255)
    return stylised if strength == 1 else torch.lerp(batch, stylised, strength)


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """Y of YCbCr. Adding a value to R, G and B alike changes Y by that value and leaves Cb and Cr."""
    red, green, blue = rgb.unbind(1)
    return (_LUMA[0] * red + _LUMA[1] * green + _LUMA[2] * blue).unsqueeze(1)

