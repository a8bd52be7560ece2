"""The image transformation network of Johnson et al. (2016), and its normalisation layer.

Layer for layer and name for name the `TransformerNet` of the PyTorch `fast_neural_style`
example, so state_dicts move between the two projects in both directions. Input and output
are RGB batches in the 0-255 range.

The one addition, off by default (so the example's models and ours stay interchangeable), is an output norm:
an instance norm of the three output colours, `OUTPUT_CENTRE + OUTPUT_SPREAD * output_norm(deconv3(y))`. Its
scale and shift set each colour's mean and contrast directly. A network that takes its norms' scales and shifts
from a style picture (the arbitrary-style network, style_transfer/arbitrary_net.py) reached a lower style loss with
it, most of it in the loss's colour part (docs/styles.md); models that have one hold `output_norm.weight` and
`output_norm.bias`.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# The two stride-2 convolutions and the two x2 upsamplings only give back the input's size
# when both sides are multiples of this.
SIZE_MULTIPLE = 4
# Reflection padding needs each side larger than the pad, also after the two strides.
MIN_SIDE = 8
# The output norm's fixed affine: a normalised colour of 0 is mid-grey, +-2 standard deviations about 0 and 255.
# Fixed numbers rather than the norm's initial scale and shift, so that a scale or shift of order 1 moves the
# colours by tens of levels and an optimiser's steps move them at the rate they move every other norm.
OUTPUT_CENTRE = 127.5
OUTPUT_SPREAD = 64.0


Statistics = tuple[torch.Tensor, torch.Tensor]  # (mean, variance), each 1 x C x 1 x 1


class InstanceNorm(nn.InstanceNorm2d):
    """nn.InstanceNorm2d (the same parameters and state_dict) that can be told which statistics to normalise with.

    `statistics`, while set, is called with the layer's input and returns the (mean, variance) to use instead of
    the input's own, or None for its own. Tiled rendering gives every tile the whole image's statistics this way;
    the conditional network's normalisation uses this layer too, so both networks can be told alike."""

    def __init__(self, num_features: int, affine: bool = True):
        super().__init__(num_features, affine=affine)
        self.statistics: Callable[[torch.Tensor], Statistics | None] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        given = None if self.statistics is None else self.statistics(x)
        if given is None:
            return super().forward(x)
        mean, variance = given
        scale = torch.rsqrt(variance + self.eps)
        if self.affine:
            scale = scale * self.weight.float().view(1, -1, 1, 1)
        shift = -mean * scale
        if self.affine:
            shift = shift + self.bias.float().view(1, -1, 1, 1)
        return torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype))  # one pass, in x's own precision


class ConvLayer(nn.Module):
    """Reflection padding, then a convolution (so the borders do not darken)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(self.reflection_pad(x))


class ResidualBlock(nn.Module):
    """conv-IN-ReLU-conv-IN plus the skip connection."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in1 = InstanceNorm(channels)
        self.conv2 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in2 = InstanceNorm(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.in1(self.conv1(x)))
        return self.in2(self.conv2(out)) + x


class UpsampleConvLayer(nn.Module):
    """Nearest-neighbour upsampling, then a convolution (avoids transposed-conv checkerboards)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 upsample: int | None = None):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


def state_has_output_norm(state: dict[str, torch.Tensor]) -> bool:
    """Whether a (plain or conditional) state_dict is of a network with an output norm."""
    return "output_norm.weight" in state


class TransformerNet(nn.Module):
    def __init__(self, output_norm: bool = False):
        super().__init__()
        self.conv1 = ConvLayer(3, 32, kernel_size=9, stride=1)
        self.in1 = InstanceNorm(32)
        self.conv2 = ConvLayer(32, 64, kernel_size=3, stride=2)
        self.in2 = InstanceNorm(64)
        self.conv3 = ConvLayer(64, 128, kernel_size=3, stride=2)
        self.in3 = InstanceNorm(128)
        self.res1 = ResidualBlock(128)
        self.res2 = ResidualBlock(128)
        self.res3 = ResidualBlock(128)
        self.res4 = ResidualBlock(128)
        self.res5 = ResidualBlock(128)
        self.deconv1 = UpsampleConvLayer(128, 64, kernel_size=3, stride=1, upsample=2)
        self.in4 = InstanceNorm(64)
        self.deconv2 = UpsampleConvLayer(64, 32, kernel_size=3, stride=1, upsample=2)
        self.in5 = InstanceNorm(32)
        self.deconv3 = ConvLayer(32, 3, kernel_size=9, stride=1)
        # Registered last, so that modules() lists the norms in the order forward() runs them (tiling relies on it).
        self.output_norm = InstanceNorm(3) if output_norm else None
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stylise a batch of any height and width; the output has exactly the input's size."""
        height, width = x.shape[-2:]
        pad_bottom = max(MIN_SIDE, height + -height % SIZE_MULTIPLE) - height
        pad_right = max(MIN_SIDE, width + -width % SIZE_MULTIPLE) - width
        if pad_bottom or pad_right:
            # Reflection padding needs pad < side; "replicate" works for every size.
            x = F.pad(x, (0, pad_right, 0, pad_bottom), mode="replicate")
        for step in self.steps():
            x = step(x)
        return x[..., :height, :width]

    @property
    def has_output_norm(self) -> bool:
        return self.output_norm is not None

    def steps(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """The network after its padding, in the order forward() runs it: each step ends after a normalisation and
        its ReLU, a residual block or the last convolution (and the output norm, if any), so that a caller can run
        the first few alone (tiled rendering's exact statistics need the network only up to the layer they
        measure)."""
        return [lambda y: self.relu(self.in1(self.conv1(y))),
                lambda y: self.relu(self.in2(self.conv2(y))),
                lambda y: self.relu(self.in3(self.conv3(y))),
                self.res1, self.res2, self.res3, self.res4, self.res5,
                lambda y: self.relu(self.in4(self.deconv1(y))),
                lambda y: self.relu(self.in5(self.deconv2(y))),
                self._output]

    def _output(self, y: torch.Tensor) -> torch.Tensor:
        y = self.deconv3(y)
        return y if self.output_norm is None else OUTPUT_CENTRE + OUTPUT_SPREAD * self.output_norm(y)
