"""The offline loss network (`--vgg-weights offline`), and the one place that builds a loss network by name.

For machines that cannot fetch the ImageNet VGG16 weights. An untrained VGG16 is a poor stand-in: deep in its
chain of random layers a few directions dominate the activations, so its Gram matrices see little more than an
image's overall colour cast, and models trained with it come out in two or three colours. This network instead
follows Ustyuzhaninov, Brendel, Gatys and Bethge, "What does it take to generate natural textures?" (ICLR
2017): a single layer of random filters at several scales, compared by Gram matrices, already carries a good
part of a texture. To that it adds a pixel-level colour code whose Gram matrix describes the colour
distribution itself, so that the style loss matches the style image's palette directly. All its weights come
from a fixed seed: every run, on every machine, builds the same network.

It fills the four slots of the VGG16 outputs (relu1_2 .. relu4_3), so vgg.py's losses work unchanged:

    slot 0  colour and fine texture, full resolution:
            - a thermometer code of the colours: for COLOUR_DIRECTIONS random unit directions d in RGB and
              COLOUR_LEVELS levels t spread over each direction's range, clamp((d·rgb - t) / step, 0, 1),
              plus a constant channel. The Gram matrix then holds, for every pair of projections and every
              pair of levels, the share of pixels above both: the joint distributions of all pairs of 1-D
              projections of the colours. Matching it matches the colour distribution, not only its mean.
            - random 5x5 filters on RGB, zero-mean per channel (a flat colour gives no response), both signs
              of each response as separate channels (CReLU): edges and lines of a few pixels.
    slot 1  content, 1/2 resolution: luminance through zero-mean random 5x5 filters, CReLU. Colour-blind and
            blind to brightness offsets, so the content loss (on this slot, as on relu2_2) keeps the photo's
            edges and leaves its colours free.
    slot 2  texture, 1/4 resolution: RGB through zero-mean random 5x5 filters, CReLU (structure of ~20 px).
    slot 3  texture, 1/8 resolution: the same (structure of ~40 px).

It is not a trained network and knows nothing of objects or of painting: it transfers colour statistics and the
statistics of random filter responses, not artistic style as the ImageNet VGG16 does.
"""

import torch
import torch.nn.functional as F
from torch import nn

import vgg
from utils import warn

OFFLINE = "offline"  # the --vgg-weights value that selects this network
SEED = 0
COLOUR_DIRECTIONS = 16
COLOUR_LEVELS = 8
COLOUR_CHANNELS = COLOUR_DIRECTIONS * COLOUR_LEVELS + 1  # slot 0's first channels: the colour code and its constant
FILTERS = 32  # random filters per slot; CReLU doubles the channels
KERNEL = 5
TEXTURE_POOLING = (4, 8)  # slots 2 and 3
# Gains of the colour code, the content slot and the texture filters: they set the balance of the loss terms
# under train.py's default --content-weight 1e5 and --style-weight 1e10 (chosen for the ImageNet VGG16).
COLOUR_GAIN = 1.5
CONTENT_GAIN = 2.0
TEXTURE_GAIN = 2.0
_LUMA = (0.299, 0.587, 0.114)


def load_loss_network(weights: str = "imagenet") -> nn.Module:
    """The loss network `--vgg-weights` names: `offline` (this module's), or VGG16 (`imagenet`, `random`, PATH)."""
    if weights == OFFLINE:
        warn("--vgg-weights offline: a seeded random multi-scale network with colour statistics, not VGG16; "
             "results carry the style image's palette and some of its texture, not artistic style")
        return OfflineLossNetwork()
    return vgg.load_vgg16(weights)


class OfflineLossNetwork(nn.Module):
    """Four feature maps of an RGB batch in 0-255, in the slots of vgg.VggOutputs (see the module docstring)."""

    def __init__(self, seed: int = SEED):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        directions = torch.randn(COLOUR_DIRECTIONS, 3, generator=generator)
        directions = directions / directions.norm(dim=1, keepdim=True)
        # A direction's projections of the RGB cube [0, 1]^3 span [sum of its negative parts, sum of its
        # positive parts]; COLOUR_LEVELS ramps, one step wide each, cover that span.
        low = directions.clamp(max=0).sum(dim=1, keepdim=True)
        step = (directions.abs().sum(dim=1, keepdim=True)) / COLOUR_LEVELS
        self.register_buffer("colour_directions", directions.repeat_interleave(COLOUR_LEVELS, dim=0))
        self.register_buffer("colour_levels", (low + step * torch.arange(COLOUR_LEVELS)).flatten())
        self.register_buffer("colour_step", step.repeat_interleave(COLOUR_LEVELS).flatten())
        self.register_buffer("luma", torch.tensor(_LUMA).view(1, 3, 1, 1))
        self.register_buffer("pixel_filters", _zero_mean_filters(generator, FILTERS, 3))
        self.register_buffer("content_filters", _zero_mean_filters(generator, FILTERS, 1))
        self.register_buffer("texture_filters", torch.stack(
            [_zero_mean_filters(generator, FILTERS, 3) for _ in TEXTURE_POOLING]))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "OfflineLossNetwork":
        return super().train(False)  # frozen: always in eval mode

    def forward(self, x: torch.Tensor, depth: int = 4) -> vgg.VggOutputs | list[torch.Tensor]:
        """Features of a 0-255 batch; with depth < 4 only the first `depth` slots are computed."""
        rgb = x / 255
        outputs = [torch.cat([self._colour_code(rgb), TEXTURE_GAIN * _filtered(rgb, self.pixel_filters)], dim=1)]
        if depth >= 2:
            luminance = (rgb * self.luma).sum(dim=1, keepdim=True)
            outputs.append(CONTENT_GAIN * _filtered(_pooled(luminance, 2), self.content_filters))
        for slot in range(2, depth):
            pooled = _pooled(rgb, TEXTURE_POOLING[slot - 2])
            outputs.append(TEXTURE_GAIN * _filtered(pooled, self.texture_filters[slot - 2]))
        return vgg.VggOutputs(*outputs) if depth == 4 else outputs[:depth]

    def _colour_code(self, rgb: torch.Tensor) -> torch.Tensor:
        projections = torch.einsum("kc,bchw->bkhw", self.colour_directions, rgb)
        code = ((projections - self.colour_levels.view(1, -1, 1, 1)) / self.colour_step.view(1, -1, 1, 1)).clamp(0, 1)
        return COLOUR_GAIN * torch.cat([code, torch.ones_like(code[:, :1])], dim=1)  # COLOUR_CHANNELS channels


def _zero_mean_filters(generator: torch.Generator, count: int, channels: int) -> torch.Tensor:
    """`count` random filters of `channels` x KERNEL x KERNEL, each channel's taps summing to 0, of unit norm."""
    filters = torch.randn(count, channels, KERNEL, KERNEL, generator=generator)
    filters = filters - filters.mean(dim=(2, 3), keepdim=True)
    return filters / filters.flatten(1).norm(dim=1).view(-1, 1, 1, 1)


def _pooled(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Average-pooled by `factor`, or less for images smaller than that (tiny test images keep one pixel)."""
    return F.avg_pool2d(images, min(factor, *images.shape[-2:]))


def _filtered(images: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """The filter responses at the images' size (edges replicated), both signs as separate channels (CReLU)."""
    responses = F.conv2d(F.pad(images, (KERNEL // 2,) * 4, mode="replicate"), filters)
    return torch.cat([F.relu(responses), F.relu(-responses)], dim=1)
