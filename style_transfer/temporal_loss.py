"""The stability loss of --temporal-weight (train.py and distillation.py): steadier video without video data.

A network flickers when a small change of its input (the camera moving a little, noise) changes its output by
more than that. So each training step also stylises a slightly changed copy of the photos, shifted, zoomed,
rotated a little and with some noise, and asks its output to equal the same change applied to the output of
the unchanged photos (Ruder et al. 2018, Gupta et al. 2017):

    stability = temporal_weight * MSE over the pixels inside both views( net(T(x) + noise), T(net(x)) )

in 0-255 pixel units, as distillation.py's --pixel-weight. The changed copy goes through the network in the
same forward pass as the photos (one batch of twice the size), so the scripts' own losses are unchanged and
DDP sees one forward pass per step.

The random changes come from a generator of their own on the training device, seeded afresh every step from
(--seed + rank, step): under torchrun every process draws its own changes (with one seed they all drew the
same), no random numbers are copied from the host, and a resumed run draws exactly what the uninterrupted run
would have drawn, on a GPU too, with no generator state to keep in the checkpoint.
"""

import argparse
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from utils import non_negative_float

MAX_SHIFT = 0.03  # of the crop's side
MAX_ZOOM = 0.05  # relative
MAX_ROTATION = math.radians(2)
NOISE = 4.0  # standard deviation in 0-255 units

# compute_losses(network, batch, step) -> named losses with a "total": what training.fit runs each step
LossFunction = Callable[[torch.nn.Module, torch.Tensor, int], dict[str, torch.Tensor]]


def add_temporal_weight_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--temporal-weight", type=non_negative_float, default=0.0, metavar="W",
                        help="weight of the stability loss that makes videos flicker less: the output of a "
                             "slightly shifted, zoomed, rotated and noised copy of each photo must match the "
                             "same change applied to the photo's output (MSE in 0-255 units); costs a second "
                             "pass of the transformer per step; 0 = off (default: %(default)s)")


def random_views(batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One random small shift, zoom and rotation per image: the Nx2x3 matrices of F.affine_grid, drawn from
    `generator` (default: the device's default generator) on the batch's device."""
    count = len(batch)
    uniform = lambda limit: (torch.rand(count, generator=generator, device=batch.device) * 2 - 1) * limit  # noqa: E731
    scale, angle = 1 + uniform(MAX_ZOOM), uniform(MAX_ROTATION)
    shift = torch.stack([uniform(2 * MAX_SHIFT), uniform(2 * MAX_SHIFT)], dim=1)  # affine_grid spans 2 units
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    return torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)


def step_seed(seed: int, rank: int, step: int) -> int:
    """The stability loss's seed for one step of one process (rank), from (seed + rank, step), mixed (splitmix64)
    so that its low 32 bits differ too: the CPU's generator (mt19937) keeps only those."""
    value = ((seed + rank) * 2**32 + step + 0x9E3779B97F4A7C15) % 2**64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) % 2**64
    return value ^ (value >> 31)


def transform(images: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`images` seen through `theta`, and an Nx1xHxW mask of the pixels that come from inside them."""
    images = images.to(torch.promote_types(images.dtype, torch.float32))  # fp32 at least (float64 stays)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    inside = (grid.abs() <= 1).all(dim=-1, keepdim=True).permute(0, 3, 1, 2)
    moved = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return moved, inside.to(moved.dtype)


class _WithPerturbedCopy(torch.nn.Module):
    """The network as the loss function sees it: called on the batch, it also stylises `perturbed` in the same
    pass and keeps that output for the stability loss."""

    def __init__(self, network: torch.nn.Module, batch: torch.Tensor, perturbed: torch.Tensor):
        super().__init__()
        self.network, self.batch, self.perturbed = network, batch, perturbed
        self.outputs: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, images: torch.Tensor, style_mix: torch.Tensor | None = None) -> torch.Tensor:
        """`style_mix`: a conditional network's style weights, one row for all images or one per image; each
        perturbed copy is stylised with its own image's row."""
        extra = () if style_mix is None else (style_mix,)
        if images is not self.batch or self.outputs is not None:
            return self.network(images, *extra)
        if style_mix is not None and style_mix.dim() == 2 and len(style_mix) == len(images):
            extra = (torch.cat([style_mix, style_mix]),)
        output, perturbed_output = self.network(torch.cat([images, self.perturbed.to(images.dtype)]), *extra).chunk(2)
        self.outputs = output, perturbed_output
        return output


def with_stability_loss(compute_losses: LossFunction, weight: float, seed: int = 0, rank: int = 0) -> LossFunction:
    """`compute_losses` with the stability term added to its total (as "stability"); as it is for weight 0.
    The random changes of a step come from step_seed(seed, rank, step)."""
    if not weight:
        return compute_losses
    generators: dict[torch.device, torch.Generator] = {}

    def compute(network: torch.nn.Module, batch: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        if batch.device not in generators:
            generators[batch.device] = torch.Generator(device=batch.device)
        generator = generators[batch.device].manual_seed(step_seed(seed, rank, step))  # host-side: no sync
        theta = random_views(batch, generator)
        with torch.autocast(batch.device.type, enabled=False):
            moved, inside = transform(batch, theta)
            noise = torch.randn(moved.shape, generator=generator, device=moved.device, dtype=moved.dtype)
            perturbed = (moved + NOISE * noise).clamp(0, 255)
        wrapped = _WithPerturbedCopy(network, batch, perturbed)
        losses = compute_losses(wrapped, batch, step)
        if wrapped.outputs is None:
            raise RuntimeError("--temporal-weight: the loss function did not run the network on the batch")
        output, perturbed_output = wrapped.outputs
        with torch.autocast(batch.device.type, enabled=False):
            target, _ = transform(output, theta)
            squared = (perturbed_output.to(target.dtype) - target) ** 2 * inside
            stability = weight * squared.sum() / (inside.sum() * squared.shape[1]).clamp(min=1)
        losses = {**losses, "stability": stability}
        losses["total"] = losses["total"] + stability
        return losses

    return compute
