"""One network, N styles: conditional instance normalisation (Dumoulin, Shlens and Kudlur, ICLR 2017).

`ConditionalTransformerNet` is the `TransformerNet` with every instance-norm layer replaced by a
`ConditionalInstanceNorm2d`: the same convolutions, shared by all styles, and per style one scale and one shift per
channel (3,200 numbers a style, 0.19% of the network; 3,206 with an output norm, transformer_net.py). A style, or any
mix of styles, is the weighted sum of the styles' scales and shifts, so mixing costs nothing per pixel.

The state_dict has the plain network's names; only the norms' `weight` and `bias` have a leading style
dimension (`in1.weight` is N x 32 instead of 32). Each conditional norm normalises with the plain network's
`InstanceNorm(C, affine=False)` and applies the (mixed) scale and shift after it, so code that tells every
`InstanceNorm` which statistics to use (tiled rendering) works on both kinds of network. While nobody has, a
single mix is fused into the normalisation as in a plain network.

Training gives each image its own style (`forward(x, style_mix)` with one row of style weights per image,
differentiable); rendering sets a mix once (`set_style_mix`), which precomputes every layer's scale and shift.
"""

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from style_transfer.training_data import EpochBatchSampler
from transformer_net import InstanceNorm, TransformerNet, state_has_output_norm
from utils import UserError


class ConditionalInstanceNorm2d(nn.Module):
    """Instance normalisation with one scale and shift per style (`weight`, `bias`: styles x channels)."""

    def __init__(self, channels: int, styles: int):
        super().__init__()
        self.norm = InstanceNorm(channels, affine=False)  # the statistics, which tiled rendering can be told
        self.weight = nn.Parameter(torch.ones(styles, channels))
        self.bias = nn.Parameter(torch.zeros(styles, channels))
        # The mix set by set_mix(), as 1 x C x 1 x 1 (or one row per image): computed once, not per call.
        self.register_buffer("mixed_weight", torch.ones(1, channels, 1, 1), persistent=False)
        self.register_buffer("mixed_bias", torch.zeros(1, channels, 1, 1), persistent=False)
        self.call_mix: torch.Tensor | None = None  # per-image weights for one call, set by the network

    def set_mix(self, mix: torch.Tensor) -> None:
        """Precompute the scale and shift of `mix` (1 x styles, or one row per image of the next batches)."""
        with torch.no_grad():
            self.mixed_weight = self._mixed(mix, self.weight).detach()
            self.mixed_bias = self._mixed(mix, self.bias).detach()

    @staticmethod
    def _mixed(mix: torch.Tensor, per_style: torch.Tensor) -> torch.Tensor:
        """mix @ per_style, in fp32 at least (also for bf16 weights), as B x C x 1 x 1 in the weights' type."""
        dtype = torch.promote_types(per_style.dtype, torch.float32)
        mixed = mix.to(device=per_style.device, dtype=dtype) @ per_style.to(dtype)
        return mixed.to(per_style.dtype)[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.call_mix is None and len(self.mixed_weight) == 1 and self.norm.statistics is None:
            # One mix for the whole batch: the scale and shift fused into the normalisation, as in a plain
            # network's InstanceNorm2d (a separate pass over the activations made rendering ~8% slower).
            return F.instance_norm(x, weight=self.mixed_weight.flatten(), bias=self.mixed_bias.flatten(),
                                   eps=self.norm.eps)
        normalised = self.norm(x)  # with the statistics it was told to use, if any
        if self.call_mix is None:
            return torch.addcmul(self.mixed_bias, normalised, self.mixed_weight)
        return torch.addcmul(self._mixed(self.call_mix, self.bias), normalised, self._mixed(self.call_mix, self.weight))


class ConditionalTransformerNet(TransformerNet):
    """TransformerNet carrying `len(style_names)` styles; renders the first one until set_style_mix()."""

    def __init__(self, style_names: Sequence[str], output_norm: bool = False):
        super().__init__(output_norm)  # with output_norm, that norm is a conditional one too (transformer_net.py)
        if not style_names:
            raise ValueError("a conditional network needs at least one style")
        self.style_names = list(style_names)
        for parent in list(self.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, InstanceNorm):  # same place in the module tree: same state_dict order
                    setattr(parent, name, ConditionalInstanceNorm2d(child.num_features, len(self.style_names)))
        self.norms = [m for m in self.modules() if isinstance(m, ConditionalInstanceNorm2d)]
        self.register_buffer("style_mix", one_hot([0], len(self.style_names)), persistent=False)

    @property
    def style_count(self) -> int:
        return len(self.style_names)

    def set_style_mix(self, mix: Sequence[float] | torch.Tensor) -> None:
        """Render with this mix from now on: one weight per style (normalised weights, e.g. [0.3, 0.7]), or one
        row of them per image of the coming batches. Precomputes every layer's scale and shift (cheap)."""
        mix = torch.as_tensor(mix, dtype=torch.float32, device=self.style_mix.device)
        mix = mix.reshape(-1, self.style_count)
        self.style_mix = mix
        for norm in self.norms:
            norm.set_mix(mix)

    def forward(self, x: torch.Tensor, style_mix: torch.Tensor | None = None) -> torch.Tensor:
        """Stylise `x` with the mix set by set_style_mix(), or with `style_mix` (one row of style weights per
        image, or one row for all; differentiable, as in training). In training mode without `style_mix` the
        set mix is recomputed every call, so that the norms' weights receive gradients."""
        if style_mix is None:
            if not self.training:
                return super().forward(x)
            style_mix = self.style_mix
        style_mix = style_mix.reshape(-1, self.style_count)
        for norm in self.norms:
            norm.call_mix = style_mix
        try:
            return super().forward(x)
        finally:
            for norm in self.norms:
                norm.call_mix = None

    def train(self, mode: bool = True) -> "ConditionalTransformerNet":
        super().train(mode)
        if not mode:  # the weights may have changed since the mix was computed
            self.set_style_mix(self.style_mix)
        return self

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.set_style_mix(self.style_mix)
        return result


def one_hot(styles: Sequence[int] | torch.Tensor, count: int) -> torch.Tensor:
    """One row per entry of `styles`, with weight 1 on that style; on the device of `styles` (a tensor), made there
    by a comparison: no copy from the host, no sync (F.one_hot checks its input's range, on the host)."""
    styles = torch.as_tensor(styles, dtype=torch.long)
    return (styles[..., None] == torch.arange(count, device=styles.device)).float()


def batch_positions(step: int, batch_size: int, dataset_size: int) -> range:
    """This process's images at training `step`, numbered in order over the global batches of all steps so far
    (step x global batch + the image's place in this step's global batch): what training_data.EpochBatchSampler
    gives this process, also at the ragged end of an epoch, where the processes' parts differ in size. A process
    given only padding (weighed 0) gets one position past the global batch's images."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    sampler = EpochBatchSampler(dataset_size, batch_size, 0, 0, rank=rank, world_size=world)
    first, images = sampler.part(step % sampler.steps_per_epoch())
    first += step * batch_size * world
    return range(first, first + max(images, 1))


def styles_for_step(step: int, batch_size: int, count: int, dataset_size: int,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """The style of each image of this process's part of a training step, made on `device`: round robin over the
    images of every step in turn (batch_positions mod N), so that each step trains min(global batch, N) styles,
    every style equally often, and N processes give every image the style a single process with N times the
    batch gives it, also on the ragged last step of an epoch."""
    positions = batch_positions(step, batch_size, dataset_size)
    return torch.arange(positions.start, positions.stop, device=device) % count


def style_names(names_text: str | None, paths: Sequence[Path]) -> list[str]:
    """The styles' names for a model trained from `paths` (style images or teachers): `names_text` (the
    --style-names flag, `a,b,c`), or the files' names without extension (a repeated one gets -2, -3, ...)."""
    if names_text is not None:
        names = [n.strip() for n in names_text.split(",")]
        if len(names) != len(paths) or not all(names) or len(set(names)) != len(names):
            raise UserError(f"--style-names: give {len(paths)} different, non-empty names, one per style "
                            f"(got {names_text!r})")
        return names
    names: list[str] = []
    for path in paths:
        name, copy = Path(path).stem, 1
        while name in names:
            copy += 1
            name = f"{Path(path).stem}-{copy}"
        names.append(name)
    return names


STYLE_NAMES_HELP = ("with --conditional: the styles' names in the model, separated by commas (default: the file "
                    "names without extension)")


def conditional_state(state: dict[str, torch.Tensor], count: int) -> dict[str, torch.Tensor]:
    """A plain TransformerNet state_dict as a conditional one in which every one of `count` styles starts as
    that model (each norm's scale and shift repeated per style)."""
    reference = ConditionalTransformerNet(["style"] * count, state_has_output_norm(state)).state_dict()
    return {key: tensor.expand_as(reference[key]).clone() if tensor.dim() == 1 and reference[key].dim() == 2
            else tensor for key, tensor in state.items()}


def style_count_of(state: dict[str, torch.Tensor]) -> int | None:
    """The number of styles of a conditional state_dict, None for a plain one."""
    weight = state.get("in1.weight")
    return weight.shape[0] if weight is not None and weight.dim() == 2 else None
