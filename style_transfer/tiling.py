"""Images of any size: rendering in overlapping tiles, in bounded memory and without seams.

What it owns:
- the memory-fit decision: whether a whole-image render fits the device's free memory (CUDA's free memory, or
  a safe share of the RAM available on the CPU) and, where it does not, the largest tile that does;
- the tile layout: tiles at multiples of 4 pixels (the network's two stride-2 steps then see the same pixel
  grid as in the whole image), overlapping their neighbours by at least OVERLAP pixels;
- the feathered blend: across the middle of each overlap one tile fades out as the next fades in, and the
  GUARD pixels at a tile's inner edges, where its reflection padding differs from the whole image, never count;
- whole-image instance-norm statistics: every InstanceNorm of the network normalises every tile with the
  statistics of the whole image rather than of the tile, so colours and contrast match across tiles. They come
  from one forward pass over a sample of full-resolution crops of the image with the statistics pooled over the
  sample (the whole image when it is small enough), or, with `exact`, from one pass over all tiles per
  normalisation layer (the whole image's statistics exactly, at several times the cost).

With the same statistics every tile computes the same function, so the tiles agree away from their edges; the
rest of the difference to a whole-image render is the statistics' sampling error (benchmarks/tiling_benchmark.py).
"""

import argparse
import contextlib
import copy
import functools
import itertools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from style_transfer import rendering
from transformer_net import MIN_SIDE, SIZE_MULTIPLE, InstanceNorm
from utils import TooLarge, compile_network

GUARD = 16  # pixels at a tile's inner edges that never count
RAMP = 32  # the feather: the width over which one tile fades into the next
OVERLAP = 2 * GUARD + RAMP  # the least overlap of neighbouring tiles
MIN_TILE = 128  # smaller tiles would be mostly overlap
MAX_AUTO_TILE = 1024  # the default tile side when tiling is needed (smaller where the device has less room)
SAMPLE_CROP = 64  # side of the full-resolution crops the statistics are pooled over (64 did best of 64, 128, 256)
SAMPLE_PIXELS = 1 << 20  # at most this many pixels of crops; an image up to this size is its own sample
CPU_MEMORY_SHARE = 0.5  # of the RAM available now, what a render may use on the CPU
CUDA_MEMORY_SHARE = 0.9  # of CUDA's free memory

# The peak of a whole-image render, in bytes per pixel and per byte of the activations' element size: the
# network's widest step holds some 160 channels at full resolution, besides the input and output tensors and
# oneDNN's copies. `python benchmarks/tiling_benchmark.py --parts memory` prints the measured figure (peak RSS
# above the process's start-up) beside this estimate: 505-506 bytes/pixel in bf16 at 3.1 and 12.6 megapixels
# on the CPU (benchmarks/tiling-cpu-2core.log), hence 2 x 256.
ACTIVATION_BYTES_PER_PIXEL_PER_BYTE = 256


def tile_side(text: str) -> int:
    """argparse type for --tile: 0 (never tile) or a side of at least MIN_TILE pixels, rounded down to a multiple
    of 4."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value != 0 and value < MIN_TILE:
        raise argparse.ArgumentTypeError(f"must be 0 (never tile) or at least {MIN_TILE}: {text}")
    return value - value % 4


# ---------------------------------------------------------------- the memory-fit decision

def activation_bytes(pixels: int, precision: str, device: torch.device) -> int:
    """Estimated peak memory of rendering `pixels` at once (one image or tile) at `precision` on `device`."""
    element = 4 if precision == "fp32" else 2
    return pixels * element * ACTIVATION_BYTES_PER_PIXEL_PER_BYTE


def memory_budget(device: torch.device) -> int:
    """Bytes a render may use now: a share of CUDA's free memory (and of what PyTorch holds unused), or a
    share of the RAM available on the CPU (and MPS, which shares it)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(CUDA_MEMORY_SHARE * free)
    return int(CPU_MEMORY_SHARE * available_ram())


def available_ram() -> int:
    """RAM available to a new allocation without swapping (MemAvailable on Linux; free pages elsewhere)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30  # unknown: assume a modest machine


def choose_tile(size: tuple[int, int], requested: int | None, precision: str, device: torch.device) -> int:
    """The tile side for an image of `size` (width, height), 0 for a whole-image render.

    `requested` is --tile: 0 never tiles, N tiles images larger than N. None (the default) tiles only when the
    whole image would not fit in memory_budget(), with the largest tile that fits, at most MAX_AUTO_TILE."""
    width, height = size
    if requested is not None:
        return requested if max(width, height) > requested else 0
    budget = memory_budget(device)
    if activation_bytes(width * height, precision, device) <= budget:
        return 0
    return fitting_tile(budget, precision, device)


def fitting_tile(budget: int, precision: str, device: torch.device) -> int:
    """The largest tile side (a multiple of 64, MIN_TILE to MAX_AUTO_TILE) whose render fits in `budget`."""
    side = math.isqrt(max(0, budget // activation_bytes(1, precision, device)))
    return max(MIN_TILE, min(MAX_AUTO_TILE, side - side % 64))


# ---------------------------------------------------------------- the tile layout and the feathered blend

@dataclass
class Axis:
    """Where the tiles lie along one side of the image: their starts and their common length."""

    starts: list[int]
    length: int

    @classmethod
    def plan(cls, size: int, tile: int, exact_side: bool) -> "Axis":
        """Tiles over `size` pixels (a multiple of 4), at most `tile` long (exactly, with `exact_side`, unless the
        image is shorter), evenly spaced at multiples of 4 and overlapping by at least OVERLAP."""
        if size <= tile:
            return cls([0], size)
        overlap = OVERLAP + 4  # rounding the starts to multiples of 4 moves them by up to 2 pixels each
        count = math.ceil((size - overlap) / (tile - overlap))
        length = tile if exact_side else min(tile, _network_side(math.ceil((size + (count - 1) * overlap) / count)))
        return cls([4 * round(i * (size - length) / (4 * (count - 1))) for i in range(count)], length)

    def weights(self) -> list[np.ndarray]:
        """Each tile's blend weight along this axis: 1 inside, 0 in the GUARD at an inner edge, a linear ramp
        of RAMP pixels centred in the middle of each overlap. The weights of all tiles sum to 1 everywhere."""
        middles = [(start + following + self.length) / 2 for start, following in itertools.pairwise(self.starts)]
        result = []
        for i, start in enumerate(self.starts):
            centres = start + np.arange(self.length) + 0.5
            weight = np.ones(self.length, np.float32)
            if i > 0:
                weight *= _ramp(centres, middles[i - 1])
            if i + 1 < len(self.starts):
                weight *= 1 - _ramp(centres, middles[i])
            result.append(weight)
        return result


def _ramp(positions: np.ndarray, middle: float) -> np.ndarray:
    """0 before `middle`, 1 after, linear over RAMP pixels centred on it."""
    return np.clip((positions - (middle - RAMP / 2)) / RAMP, 0, 1).astype(np.float32)


def _network_side(size: int) -> int:
    """The side the network works at: `size` padded to a multiple of 4, and to at least MIN_SIDE (its padding)."""
    return max(MIN_SIDE, size + -size % SIZE_MULTIPLE)


# ---------------------------------------------------------------- whole-image instance-norm statistics

Statistics = list[tuple[torch.Tensor, torch.Tensor]]  # (mean, variance) per normalisation layer, each 1xCx1x1


class WholeImageNorm:
    """Every InstanceNorm of a network (affine or not, e.g. inside a conditional network's style normalisation),
    told to normalise with given statistics instead of its input's own.

    Each layer's `statistics` is set to this object's answer for that layer; without statistics given here the
    layers behave as usual. The answers are read on each call, so a torch.compile'd network takes new statistics
    without recompiling."""

    def __init__(self, model: nn.Module):
        self.norms = [m for m in model.modules() if isinstance(m, InstanceNorm) and not m.track_running_stats]
        self.given: Statistics | None = None
        self._pooled: Statistics | None = None
        self._measured: tuple[int, tuple[slice, slice], int, list] | None = None
        self.measured = False  # whether the layer being measured has been reached in this pass
        for index, norm in enumerate(self.norms):
            norm.statistics = functools.partial(self._statistics, index)

    @contextlib.contextmanager
    def using(self, statistics: Statistics) -> Iterator[None]:
        """Every layer normalises with `statistics`."""
        self.given = statistics
        try:
            yield
        finally:
            self.given = None

    @contextlib.contextmanager
    def pooling(self) -> Iterator[Statistics]:
        """Every layer normalises with its statistics over the whole batch (as if the batch were one image) and
        appends them to the list yielded."""
        self._pooled = []
        try:
            yield self._pooled
        finally:
            self._pooled = None

    @contextlib.contextmanager
    def measuring(self, known: Statistics, region: tuple[slice, slice], height: int, sums: list) -> Iterator[None]:
        """Layers up to len(known) normalise with `known`; the next one adds its input's per-channel sum, sum of
        squares and pixel count over `region` (slices of the input, `height` pixels high, at multiples of 4) to
        `sums` and sets `measured`, after which the rest of the pass is not needed."""
        self.given, self._measured, self.measured = known, (len(known), region, height, sums), False
        try:
            yield
        finally:
            self.given, self._measured = None, None

    def _statistics(self, index: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self._measured is not None and index == self._measured[0]:
            self._add_sums(x)
        if self.given is not None and index < len(self.given):
            return self.given[index]
        if self._pooled is not None:
            variance, mean = torch.var_mean(x.float(), dim=(0, 2, 3), keepdim=True, unbiased=False)
            self._pooled.append((mean, variance))
            return mean, variance
        return None

    def _add_sums(self, x: torch.Tensor) -> None:
        _, (rows, columns), input_height, sums = self._measured
        factor = input_height // x.shape[-2]  # 1, 2 or 4: the layer's resolution
        part = x[..., rows.start // factor:rows.stop // factor, columns.start // factor:columns.stop // factor]
        part = part.double()
        sums[0] += part.sum(dim=(0, 2, 3)).cpu()
        sums[1] += part.square().sum(dim=(0, 2, 3)).cpu()
        sums[2] += part[:, 0].numel()
        self.measured = True


# ---------------------------------------------------------------- rendering in tiles

class TiledRenderer:
    """Renders images tile by tile with a copy of a prepared network (rendering.prepare_for_rendering without
    --compile), its normalisation switched to whole-image statistics; `compile` compiles the copy, and then every
    tile has the same shape (`tile` x `tile`, for images at least that large) so one compilation serves all."""

    def __init__(self, model: nn.Module, precision: str, compile: bool = False):
        self.model = copy.deepcopy(model)
        self.norms = WholeImageNorm(self.model)
        self.network = compile_network(self.model, compile, inference=True)
        self.precision = precision
        self.same_tile_shape = compile
        self.device = next(self.model.parameters()).device

    def render(self, image: Image.Image, tile: int, preserve_color: bool = False, strength: float = 1.0,
               exact: bool = False) -> Image.Image:
        """Stylise an RGB image in tiles of at most `tile` pixels a side (MIN_TILE or more, a multiple of 4)."""
        pixels = np.asarray(image.convert("RGB"))
        height, width = pixels.shape[:2]
        rows = Axis.plan(_network_side(height), tile, self.same_tile_shape)
        columns = Axis.plan(_network_side(width), tile, self.same_tile_shape)
        count = len(rows.starts) * len(columns.starts)
        passes = len(self.norms.norms) + 1 if exact else 1
        with tqdm(total=passes * count, unit="tile", leave=False, disable=count < 2, dynamic_ncols=True) as bar:
            if exact:
                statistics = self.exact_statistics(pixels, rows, columns, bar)
            else:
                statistics = self.sampled_statistics(pixels)
            with self.norms.using(statistics):
                stylised = self._blend(pixels, rows, columns, preserve_color, strength, bar)
        return Image.fromarray(stylised, "RGB")

    def sampled_statistics(self, pixels: np.ndarray, sample_pixels: int | None = None) -> Statistics:
        """Each layer's statistics pooled over full-resolution crops from all over the image (the whole image
        when it has at most `sample_pixels`, default the smaller of SAMPLE_PIXELS and what fits in memory)."""
        if sample_pixels is None:
            fits = memory_budget(self.device) // activation_bytes(1, self.precision, self.device)
            sample_pixels = max(MIN_TILE**2, min(SAMPLE_PIXELS, fits))
        sample_pixels = min(sample_pixels, _network_side(pixels.shape[0]) * _network_side(pixels.shape[1]))
        while True:  # a quarter of the sample each time it runs out of memory (after a fallback to tiles, say)
            try:
                batch = torch.tensor(sample_crops(pixels, sample_pixels)).permute(0, 3, 1, 2).float()
                with self.norms.pooling() as statistics:
                    rendering.stylize(self.model, batch.to(self.device), self.precision)
                return statistics
            except TooLarge:
                if sample_pixels <= MIN_TILE**2:
                    raise
            sample_pixels //= 4
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def exact_statistics(self, pixels: np.ndarray, rows: Axis, columns: Axis, bar: tqdm) -> Statistics:
        """The whole image's statistics exactly, as a whole-image render has them: for each layer in turn, a pass
        over all tiles up to that layer, adding up its input over the part of the image each tile owns."""
        statistics: Statistics = []
        regions = [(r, c) for r in _owned(rows) for c in _owned(columns)]
        tiles = [(top, left) for top in rows.starts for left in columns.starts]
        for _ in self.norms.norms:
            sums = [0, 0, 0]
            for (top, left), region in zip(tiles, regions, strict=True):
                with self.norms.measuring(statistics, region, rows.length, sums):
                    self._run_until_measured(_tile_batch(pixels, top, left, rows.length, columns.length,
                                                         self.device))
                bar.update()
            mean = sums[0] / sums[2]
            variance = (sums[1] / sums[2] - mean.square()).clamp(min=0)
            statistics.append((mean.float().view(1, -1, 1, 1).to(self.device),
                               variance.float().view(1, -1, 1, 1).to(self.device)))
        return statistics

    def _run_until_measured(self, batch: torch.Tensor) -> None:
        """The network's steps on a tile (already at a multiple of 4: no padding) until the layer being measured
        has been reached: the later layers would not change the sums."""
        with rendering.arithmetic(self.model, self.precision, batch.device) as weights:
            batch = batch.to(weights)
            for step in self.model.steps():
                batch = step(batch)
                if self.norms.measured:
                    return

    def _blend(self, pixels: np.ndarray, rows: Axis, columns: Axis, preserve_color: bool, strength: float,
               bar: tqdm) -> np.ndarray:
        """Stylise every tile and add it in with its feathered weight, one row of tiles at a time: only a band of
        rows as high as a tile is held in floating point, finished rows go straight into the 8-bit result."""
        height, width = pixels.shape[:2]
        result = np.empty_like(pixels)
        row_weights, column_weights = rows.weights(), columns.weights()
        carried = np.zeros((0, _network_side(width), 3), np.float32)  # rows of the last band the next one adds to
        for i, top in enumerate(rows.starts):
            band = np.zeros((rows.length, _network_side(width), 3), np.float32)
            band[:len(carried)] = carried
            for j, left in enumerate(columns.starts):
                batch = _tile_batch(pixels, top, left, rows.length, columns.length, self.device)
                stylised = rendering.stylize(self.network, batch, self.precision, preserve_color, strength)
                weight = row_weights[i][:, None, None] * column_weights[j][None, :, None]
                band[:, left:left + columns.length] += stylised[0].permute(1, 2, 0).cpu().numpy() * weight
                bar.update()
            finished = rows.starts[i + 1] - top if i + 1 < len(rows.starts) else rows.length
            kept = min(finished, height - top)
            result[top:top + kept] = np.clip(band[:kept, :width], 0, 255).round()
            carried = band[finished:]
        return result


def sample_crops(pixels: np.ndarray, sample_pixels: int) -> np.ndarray:
    """A batch of full-resolution crops spread over the image on a grid (NxHxWx3), at most `sample_pixels` in
    all; the whole image (padded as the network pads it) when that is small enough."""
    height, width = pixels.shape[:2]
    padded_height, padded_width = _network_side(height), _network_side(width)
    if padded_height * padded_width <= sample_pixels:
        return _padded(pixels, 0, 0, padded_height, padded_width)[None]
    side = min(SAMPLE_CROP, padded_height, padded_width, math.isqrt(sample_pixels) // 4 * 4)
    count = max(1, sample_pixels // side**2)
    grid_rows = max(1, min(count, round(math.sqrt(count * padded_height / padded_width))))
    grid_columns = max(1, count // grid_rows)
    crops = []
    for row in range(grid_rows):
        top = _cell_start(row, grid_rows, padded_height, side)
        for column in range(grid_columns):
            crops.append(_padded(pixels, top, _cell_start(column, grid_columns, padded_width, side), side, side))
    return np.stack(crops)


def _cell_start(index: int, cells: int, size: int, side: int) -> int:
    """Where a crop of `side` centred in cell `index` of `cells` along `size` starts (a multiple of 4, inside)."""
    centre = (index + 0.5) * size / cells
    return min(max(0, round(centre - side / 2)), size - side) // 4 * 4


def _owned(axis: Axis) -> list[slice]:
    """The part of the image each tile counts for the exact statistics (tile coordinates, multiples of 4): up
    to the middles of its overlaps, so every pixel is counted once."""
    middles = [(start + following + axis.length) / 2 for start, following in itertools.pairwise(axis.starts)]
    bounds = [0, *(4 * int(middle / 4) for middle in middles), axis.starts[-1] + axis.length]
    return [slice(low - start, high - start)
            for start, (low, high) in zip(axis.starts, itertools.pairwise(bounds), strict=True)]


def _padded(pixels: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    """pixels[top:top + height, left:left + width], its last row and column repeated where that goes past the
    image, as the network pads an image to a multiple of 4."""
    part = pixels[top:top + height, left:left + width]
    missing_rows, missing_columns = height - part.shape[0], width - part.shape[1]
    if missing_rows or missing_columns:
        part = np.pad(part, ((0, missing_rows), (0, missing_columns), (0, 0)), mode="edge")
    return part


def _tile_batch(pixels: np.ndarray, top: int, left: int, height: int, width: int,
                device: torch.device) -> torch.Tensor:
    tile = _padded(pixels, top, left, height, width)
    return torch.tensor(tile).permute(2, 0, 1)[None].float().to(device)  # a copy: `pixels` is read-only


def fallback_tile(size: tuple[int, int], precision: str, device: torch.device) -> int:
    """After a whole-image render ran out of memory: a tile side that should fit, smaller than the image, or 0
    when the image is too small to tile."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    half = math.ceil(max(size) / 2)
    tile = min(fitting_tile(memory_budget(device), precision, device), half + -half % 4)
    return tile if MIN_TILE <= tile < max(size) else 0
