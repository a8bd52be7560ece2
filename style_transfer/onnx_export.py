"""Exporting a trained network to ONNX (export.py): the graph around the network, the style baked in or taken as
a second input, fp16 files, the check of the written file with ONNX Runtime, and the file's metadata.

The graph's input `input` is a float32 N x 3 x H x W batch in 0-255, as the network takes it, and its output
`output` the same, of the input's size; N, H and W are dynamic. The network needs sides that are multiples of
4 (and at least 8); the graph pads any other size inside itself with replicated edge pixels, as
TransformerNet.forward does in PyTorch, and crops the result back. The pad is written with shape arithmetic,
a Range and a Gather, not with Python ints, so it follows the input's size at run time instead of being frozen
at the size the exporter traced (transformer_net.py's own pad would be).

A conditional model either has one mix baked in (its scales and shifts are then constants: a plain model's
graph), or with `style_input` takes the mix as a second input `style_mix`, one weight per style (1 x S for the
whole batch, or one row per image), normalised to sum 1 inside the graph. An arbitrary-style model is two files:
the network, whose second input `style_params` is the predicted scales and shifts (1 x P, or one row per image),
and its predictor (`predictor_path`: input `style_image`, the picture 1 x 3 x H x W in 0-255 with its shorter side
at the model's style size; output `style_params`), the loss network included. Only the networks' public
forward(x) / forward(x, style_mix) / forward(x, style_params=P) and set_style_mix are used, not the layers'
internals.

The exporter is the TorchScript one (`dynamo=False` where the installed torch has both), with dynamic_axes:
available in every torch this suite supports; opset OPSET.
"""

import copy
import functools
import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from style_transfer.arbitrary_net import ArbitraryTransformerNet, identity_params, style_statistics
from style_transfer.conditional_net import ConditionalTransformerNet
from transformer_net import MIN_SIDE, SIZE_MULTIPLE, TransformerNet
from utils import UserError

OPSET = 17
# A small batch at sizes the network does not take directly (not multiples of 4): the check runs it through
# the written file and through PyTorch in fp32.
CHECK_SHAPE = (2, 3, 37, 29)
MIN_PSNR_DB = {False: 50.0, True: 40.0}  # fp32 files, fp16 files


class ExportGraph(nn.Module):
    """What the ONNX file computes: pad to the network's sizes, (fp16: cast), the network, cast back, crop."""

    def __init__(self, network: TransformerNet, fp16: bool, style_input: bool):
        super().__init__()
        self.network = network
        self.fp16 = fp16
        self.style_input = style_input

    def forward(self, image: torch.Tensor, style_mix: torch.Tensor | None = None) -> torch.Tensor:
        shape = torch._shape_as_tensor(image)  # a tensor while tracing: the sizes stay dynamic in the graph
        height, width = shape[2], shape[3]
        padded = image.index_select(2, _replicated_indices(height)).index_select(3, _replicated_indices(width))
        if self.fp16:
            padded = padded.half()
        if isinstance(self.network, ArbitraryTransformerNet):  # the second input is the predicted style_params
            stylised = self.network(padded, style_params=style_mix.float())
        elif self.style_input:
            mix = style_mix.float()
            stylised = self.network(padded, mix / mix.sum(dim=1, keepdim=True))
        else:
            stylised = self.network(padded)
        return stylised.float()[:, :, :height, :width]


def _replicated_indices(side: torch.Tensor) -> torch.Tensor:
    """0, 1, ..., side - 1, then side - 1 repeated up to the next size the network takes (replicate padding)."""
    padded = torch.clamp(torch.div(side + SIZE_MULTIPLE - 1, SIZE_MULTIPLE, rounding_mode="floor") * SIZE_MULTIPLE,
                         min=MIN_SIDE)
    return torch.clamp(torch.arange(padded), max=side - 1)


class PredictorGraph(nn.Module):
    """An arbitrary model's predictor file: a style picture through the loss network to its `style_params`."""

    def __init__(self, model: ArbitraryTransformerNet, loss_network: nn.Module):
        super().__init__()
        self.loss_network = copy.deepcopy(loss_network).float().cpu().eval()
        self.predictor = copy.deepcopy(model.predictor).float().cpu().eval()

    def forward(self, style_image: torch.Tensor) -> torch.Tensor:
        return self.predictor(style_statistics(self.loss_network(style_image)))


def model_kind(model: TransformerNet) -> str:
    """`plain`, `conditional` or `arbitrary`; a UserError for a kind of network this exporter does not know."""
    if type(model) is TransformerNet:
        return "plain"
    if type(model) is ConditionalTransformerNet:
        return "conditional"
    if type(model) is ArbitraryTransformerNet:
        return "arbitrary"
    raise UserError(f"exporting a {type(model).__name__} is not supported yet (export.py knows plain, "
                    "conditional and arbitrary-style TransformerNets)")


def predictor_path(path: Path) -> Path:
    """Where an arbitrary model's predictor goes beside its network's file: OUT.onnx -> OUT.predictor.onnx."""
    return path.with_suffix(".predictor.onnx")


def require_exporter() -> None:
    """The onnx package, which writing the file's metadata needs (torch.onnx itself is part of torch)."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UserError("export.py needs the onnx package (pip install onnx; see requirements.txt)") from None


def require_runtime() -> None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise UserError("checking the exported file needs onnxruntime (pip install onnxruntime; see "
                        "requirements.txt), or leave the check out with --no-check") from None


def export_graph(model: TransformerNet, mix: list[float] | None, style_input: bool, fp16: bool) -> ExportGraph:
    """The graph to export: a copy of `model` with `mix` set (conditional, baked) and in fp16 if asked."""
    network = copy.deepcopy(model).float().cpu().eval()
    if fp16:
        network = network.half()
    if isinstance(network, ConditionalTransformerNet) and mix is not None and not style_input:
        network.set_style_mix(mix)
    return ExportGraph(network, fp16, style_input).eval()


def write_onnx(graph: ExportGraph, path: Path, style_count: int) -> None:
    """torch.onnx.export of `graph` to `path`, with dynamic batch, height and width (and rows of style_mix)."""
    image = torch.rand(1, 3, 4 * SIZE_MULTIPLE, 3 * SIZE_MULTIPLE) * 255
    inputs: tuple[torch.Tensor, ...] = (image,)
    names = ["input"]
    axes = {"input": {0: "batch", 2: "height", 3: "width"}, "output": {0: "batch", 2: "height", 3: "width"}}
    if isinstance(graph.network, ArbitraryTransformerNet):
        inputs = (image, identity_params(graph.network))
        names.append("style_params")
        axes["style_params"] = {0: "params_rows"}
    elif graph.style_input:
        inputs = (image, torch.full((1, style_count), 1.0 / style_count))
        names.append("style_mix")
        axes["style_mix"] = {0: "mix_rows"}
    _export(graph, inputs, path, names, ["output"], axes)


def write_predictor(model: ArbitraryTransformerNet, loss_network: nn.Module, path: Path) -> None:
    """torch.onnx.export of an arbitrary model's predictor (PredictorGraph), the picture's height and width dynamic."""
    picture = torch.rand(1, 3, model.style_size, model.style_size) * 255
    _export(PredictorGraph(model, loss_network).eval(), (picture,), path, ["style_image"], ["style_params"],
            {"style_image": {2: "height", 3: "width"}})


def _export(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path, input_names: list[str],
            output_names: list[str], axes: dict) -> None:
    options = {"dynamo": False} if "dynamo" in _export_parameters() else {}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's tracer and deprecation warnings
        try:
            torch.onnx.export(module, inputs, str(path), input_names=input_names, output_names=output_names,
                              dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True, **options)
        except RuntimeError as exc:  # torch.onnx.errors.OnnxExporterError is one too
            detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise UserError(f"torch.onnx.export failed ({detail}); nothing was written") from None


def _export_parameters() -> set[str]:
    import inspect

    return set(inspect.signature(torch.onnx.export).parameters)


def add_metadata(path: Path, metadata: dict[str, object]) -> None:
    """Store `metadata` in the file's metadata_props (values as JSON), readable by any ONNX runtime."""
    import onnx

    model = onnx.load(str(path))
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(model, str(path))


def check_with_runtime(path: Path, model: TransformerNet, mix: list[float] | None, style_input: bool,
                       fp16: bool, style_params: torch.Tensor | None = None) -> float:
    """Run the written file with ONNX Runtime on a small odd-sized batch, against the fp32 PyTorch network with
    the same mix; returns the PSNR in dB, or raises a UserError below MIN_PSNR_DB."""
    import onnxruntime

    generator = torch.Generator().manual_seed(0)
    image = torch.rand(*CHECK_SHAPE, generator=generator) * 255
    feeds = {"input": image.numpy()}
    reference = copy.deepcopy(model).float().cpu().eval()
    if isinstance(reference, ArbitraryTransformerNet):  # the scales and shifts of a seeded picture's style
        params = style_params if style_params is not None else identity_params(reference)
        feeds["style_params"] = params.float().numpy()
        reference = functools.partial(reference, style_params=params.float())
    elif isinstance(reference, ConditionalTransformerNet):
        check_mix = mix if mix is not None else [1.0 / reference.style_count] * reference.style_count
        reference.set_style_mix(check_mix)
        if style_input:
            feeds["style_mix"] = np.asarray([check_mix], dtype=np.float32)
    with torch.no_grad():
        expected = reference(image).clamp(0, 255).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    result = np.clip(session.run(None, feeds)[0], 0, 255)
    quality = psnr(result, expected)
    if not quality >= MIN_PSNR_DB[fp16]:
        raise UserError(f"the exported file's output differs from PyTorch's ({quality:.1f} dB PSNR, expected at "
                        f"least {MIN_PSNR_DB[fp16]:g} dB); nothing was written")
    return quality


def check_predictor(path: Path, model: ArbitraryTransformerNet, loss_network: nn.Module) -> torch.Tensor:
    """Run the predictor file with ONNX Runtime on a seeded odd-sized picture against PyTorch's prediction; returns
    PyTorch's (1 x P), or raises a UserError where they differ by more than float rounding."""
    import onnxruntime

    generator = torch.Generator().manual_seed(1)
    picture = torch.rand(1, 3, model.style_size, model.style_size + 13, generator=generator) * 255
    with torch.no_grad():
        expected = PredictorGraph(model, loss_network)(picture)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    found = torch.from_numpy(session.run(None, {"style_image": picture.numpy()})[0])
    if not torch.allclose(found, expected, rtol=1e-3, atol=1e-3):
        raise UserError(f"the exported predictor's output differs from PyTorch's (by up to "
                        f"{(found - expected).abs().max().item():.3g}); nothing was written")
    return expected


def psnr(result: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of two 0-255 arrays, rounded to 8 bits as an image file would be."""
    mse = float(np.mean((np.round(result) - np.round(reference)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)
