"""--stroke-scale S: strokes S times larger relative to the picture. The photo is stylised at 1/S of its
resolution (area-averaged), and the full-resolution detail is brought back by guided upsampling, after the
guided filter of He et al. (2010) and its fast upsampling form (He & Sun 2015, arXiv:1505.00996): at the low
resolution each output channel is fitted, in 3x3 windows, as a linear function of the photo's luminance
(stylised ≈ a·Y + b). The result is the bicubic upscale of the small render plus the photo's detail layer (the
full-resolution luminance minus its upscaled low-resolution version: what the low resolution lost) times the
local gain a, upsampled bilinearly (it is smooth). Where the style kept the photo's structure (a ≠ 0) its
full-resolution edges come back at the style's contrast; where the style painted over it (a ≈ 0) the painted
strokes are kept as they are, only larger.

Why this method: a plain (bicubic) upscale of the small render is blurred at the photo's edges; adding the photo's
detail layer back unchanged would re-add detail the style removed, and the guided filter's own output (a·Y + b
with both smoothed) would also smooth away the strokes that do not follow the photo. The gain-weighted detail
layer keeps the strokes and adds back as much of the photo's detail as the style kept locally, for a few box
filters.

The step sits before and after the network, so the network path itself (whole or in tiles, conditional models,
batches of video frames) is the usual one; --strength and --preserve-color then apply to the full-resolution
result against the full-resolution photo (rendering.finish). S = 1 never enters this module.
"""

import argparse
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from style_transfer import rendering

MAX_STROKE_SCALE = 16.0
RADIUS = 1  # the guided filter's window, (2r+1)² pixels at the low resolution
EPSILON = (0.02 * 255) ** 2  # its regulariser, in squared 0-255 units: below it a local contrast counts as noise


def stroke_scale(text: str) -> float:
    """argparse type for --stroke-scale: a finite number > 0 and at most MAX_STROKE_SCALE."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a number: {text}") from None
    if not (math.isfinite(value) and 0 < value <= MAX_STROKE_SCALE):
        raise ValueError(f"must be > 0 and at most {MAX_STROKE_SCALE:g}: {text}")
    return value


stroke_scale.__name__ = f"number > 0 and at most {MAX_STROKE_SCALE:g}"  # argparse names it in its error


def add_stroke_scale_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stroke-scale", type=stroke_scale, default=1.0, metavar="S",
                        help="strokes S times larger relative to the picture: stylise at 1/S of the resolution "
                             "and bring the full-resolution photo's detail back by guided upsampling (e.g. 2 on a "
                             "24-megapixel photo paints the strokes of a 6-megapixel render); values below 1 make "
                             f"them finer; at most {MAX_STROKE_SCALE:g} (default: %(default)s, the plain render)")


def stylise_with_stroke_scale(photo: torch.Tensor, scale: float, stylise: Callable[[torch.Tensor], torch.Tensor],
                              preserve_color: bool = False, strength: float = 1.0) -> torch.Tensor:
    """The Nx3xHxW `photo` (0-255) stylised with strokes `scale` times larger: `stylise` (the usual network path,
    without --preserve-color and --strength) runs on the photo at 1/`scale` of its resolution, the guided
    upsampling brings it back, then --preserve-color and --strength apply at full resolution."""
    small = downscale(photo, scale).round()  # whole values, as a photo read from a file
    stylised = guided_upsample(stylise(small), small, photo)
    return rendering.finish(photo, stylised, preserve_color, strength)


def small_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(height, width) of the low-resolution render."""
    return max(1, round(height / scale)), max(1, round(width / scale))


def downscale(batch: torch.Tensor, scale: float) -> torch.Tensor:
    """An Nx3xHxW batch at 1/`scale` of its resolution, each pixel the area average of those it covers."""
    size = small_size(*batch.shape[-2:], scale)
    if scale < 1:
        return F.interpolate(batch, size=size, mode="bicubic", align_corners=False).clamp(0, 255)
    return F.interpolate(batch, size=size, mode="area")


def guided_upsample(stylised_small: torch.Tensor, photo_small: torch.Tensor, photo: torch.Tensor,
                    radius: int = RADIUS, epsilon: float = EPSILON) -> torch.Tensor:
    """The low-resolution `stylised_small` at the resolution of `photo`: its bicubic upscale plus the photo's
    detail that the low resolution lost (full-resolution luminance minus its upscaled low-resolution one), times
    the local gain `a` of the guided filter's fit stylised ≈ a·Y + b. `photo_small` is the photo at the low
    resolution (what was stylised). All Nx3xHxW in 0-255."""
    guide = rendering.luminance(photo_small.float())
    stylised_small = stylised_small.float()
    mean_guide = _box(guide, radius)
    covariance = _box(guide * stylised_small, radius) - mean_guide * _box(stylised_small, radius)
    variance = _box(guide * guide, radius) - mean_guide * mean_guide
    gain = _box(covariance / (variance + epsilon), radius)
    size = photo.shape[-2:]
    detail = rendering.luminance(photo.float()) - _upscale(guide, size)
    return (_upscale(stylised_small, size) + F.interpolate(gain, size=size, mode="bilinear") * detail).clamp(0, 255)


def _upscale(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False)


def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """The mean over a (2r+1)² window, over the pixels inside the picture at its borders."""
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)

