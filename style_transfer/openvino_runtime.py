"""Rendering on the CPU through OpenVINO (`--runtime openvino`, the default on the CPU where the openvino package
is installed): the network exported to ONNX once (onnx_export's graph: odd sizes padded inside it), then compiled
by OpenVINO's CPU plugin for each input shape it meets (a second or so, once per size), in bf16 on CPUs with
native bf16 and in fp32 elsewhere. On the 2-core machines measured it ran the network several times faster than
every PyTorch path (benchmarks/cpu_paths.py, docs/performance.md): its convolutions keep their weights in the
layout the CPU wants, where PyTorch's eager oneDNN calls re-lay them out at every call.

A conditional network is exported with its mix as a second input (one row for all images, or one per image),
set by set_style_mix() as on the PyTorch network: --style-mix, --style-schedule and mixes of --style-image
pictures work unchanged. The graph divides each row by its sum; the mixes style_choice.py makes already sum to 1.
What runs in PyTorch instead: tiles (they need the norms to be told the whole image's statistics, tiling.py) and
--compile (utils.choose_runtime).
"""

import tempfile
from pathlib import Path

import numpy as np
import torch

from style_transfer import onnx_export
from style_transfer.conditional_net import ConditionalTransformerNet
from transformer_net import TransformerNet
from utils import UserError

_HINTS = {"fp32": "f32", "bf16": "bf16"}  # choose_precision() results OpenVINO runs on the CPU


class OpenVinoNetwork:
    """A TransformerNet (plain or conditional, fp32 weights) as OpenVINO runs it: call it with an N x 3 x H x W
    float32 batch in 0-255 on the CPU; it returns the stylised batch, float32, in 0-255. A conditional network's
    mix is the one set on it when this was made, until set_style_mix()."""

    def __init__(self, network: TransformerNet, precision: str):
        import openvino

        self.core = openvino.Core()
        self.hint = _HINTS[precision]
        conditional = isinstance(network, ConditionalTransformerNet)
        self.style_count = network.style_count if conditional else None
        self.style_mix = network.style_mix.detach().float().cpu().clone() if conditional else None
        graph = onnx_export.export_graph(network, None, style_input=conditional, fp16=False)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "network.onnx"
            try:
                onnx_export.write_onnx(graph, path, self.style_count or 1)
            except UserError as exc:
                raise UserError(f"cannot hand the network to OpenVINO: {exc}; render with --runtime torch") from None
            self.graph = self.core.read_model(str(path))  # read into memory: the file may go
        self.shapes: tuple | None = None
        self.request = None  # compiled for self.shapes: the last size only (a compiled size holds its buffers)

    def set_style_mix(self, mix) -> None:
        """As ConditionalTransformerNet.set_style_mix: one weight per style, or one row of them per image."""
        self.style_mix = torch.as_tensor(mix, dtype=torch.float32).reshape(-1, self.style_count)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        inputs = [batch.detach().float().contiguous().numpy()]
        if self.style_mix is not None:
            inputs.append(self.style_mix.numpy())
        shapes = tuple(tuple(x.shape) for x in inputs)
        try:
            if shapes != self.shapes:
                self.request, self.shapes = None, None  # the old size's buffers go before the new size's come
                self.request, self.shapes = self.compile_for(shapes), shapes
            self.request.infer(dict(enumerate(inputs)))
            return torch.from_numpy(np.array(self.request.get_output_tensor(0).data))
        except BaseException:
            self.request, self.shapes = None, None  # nothing half-made kept (e.g. while tiles take over)
            raise

    def compile_for(self, shapes: tuple) -> object:
        """An infer request compiled for these input shapes (static shapes: OpenVINO's fastest kernels)."""
        graph = self.graph.clone()
        graph.reshape({port.get_any_name(): list(shape) for port, shape in zip(graph.inputs, shapes, strict=True)})
        compiled = self.core.compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": self.hint,
                                                          "PERFORMANCE_HINT": "LATENCY",
                                                          "INFERENCE_NUM_THREADS": torch.get_num_threads()})
        return compiled.create_infer_request()
