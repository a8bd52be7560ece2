"""Motion between video frames, measured on the *source* frames (whose motion is real): optical flow,
warping, the occlusion mask, and the Motion from one frame to the next with its reliability and scene-cut
verdict. The warping error (warping_error.py) and the --temporal blending (temporal_blend.py) build on it.

- Flow: OpenCV's DIS (the default) or Farneback, which need no weights; torchvision's RAFT where its weights
  are already on disk (nothing is downloaded). A flow field is HxWx2 float32 in pixels: `flow[y, x] = (dx, dy)`
  says that pixel (x, y) of the first frame shows what (x + dx, y + dy) of the second frame shows.
- Occlusion: the forward-backward consistency check and the motion-boundary check of Ruder et al. (2016), as in
  the evaluation code of Lai et al., "Learning Blind Video Temporal Consistency" (ECCV 2018); pixels whose
  motion leads out of the previous frame count as occluded too.
- Reliability: where frame t-1, warped, may stand in for frame t: not occluded, and the warped previous source
  frame matches the current one; a frame with too few reliable pixels follows a scene cut.
- Streaming: `with_motion` yields each frame of a video with its Motion, estimated in other threads a few frames
  ahead of the caller (`flow_workers` says how many).
"""

import collections
import itertools
import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from utils import UserError

FLOW_METHODS = ["dis", "farneback", "raft"]
DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
# OpenCV's DIS (5.0) refuses frames with both sides under 12 pixels, and crashes the process (a segmentation
# fault) on some thin ones, e.g. 12x64 or 16x100, whose coarsest pyramid level gets too small. Every shape whose
# shorter side is at least 32 ran (tried up to 32x4096 with each preset): a frame with a shorter side below that
# gets its flow computed on a copy enlarged by a whole factor (the flow is then scaled back exactly).
DIS_MIN_SIDE = 32

# Reliability of the motion; chosen from the measurements in benchmarks/flicker.py's records.
PHOTO_TOLERANCE = (20.0, 60.0)  # mean |warped previous source - source| (0-255) where reliability falls 1 -> 0
CUT_FRACTION = 0.3  # a frame with less than this share of reliable pixels follows a scene cut: no blending


class FlowEstimator:
    """Dense optical flow between two RGB uint8 HxWx3 frames; safe to call from several threads at once.

    `max_side`: estimate_motion() works on frames shrunk to that longer side, and scales the result back up
    (faster, coarser); the flow itself is always computed at the size it is given.
    """

    def __init__(self, method: str = "dis", preset: str = "medium", max_side: int | None = None,
                 device: torch.device | None = None):
        if method not in FLOW_METHODS:
            raise UserError(f"--flow: unknown method {method!r} (choose from {', '.join(FLOW_METHODS)})")
        self.method, self.preset, self.max_side = method, preset, max_side
        self._local = threading.local()  # OpenCV's DIS object keeps state: one per thread
        self._raft = RaftFlow(device or torch.device("cpu")) if method == "raft" else None

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        if self._raft is not None:
            return self._raft(first, second)
        height, width = first.shape[:2]
        if self.method == "dis" and min(height, width) < DIS_MIN_SIDE:  # e.g. a tiny frame of --resize 0.1
            factor = -(-DIS_MIN_SIDE // min(height, width))  # a whole factor: the flow maps back exactly
            enlarged = (cv2.resize(f, (width * factor, height * factor), interpolation=cv2.INTER_LINEAR)
                        for f in (first, second))
            flow = self(*enlarged)
            return cv2.resize(flow, (width, height), interpolation=cv2.INTER_AREA) / np.float32(factor)
        first, second = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (first, second))
        if self.method == "dis":
            if not hasattr(self._local, "dis"):
                self._local.dis = cv2.DISOpticalFlow_create(DIS_PRESETS[self.preset])
            return self._local.dis.calc(first, second, None)
        return cv2.calcOpticalFlowFarneback(first, second, None, 0.5, 4, 15, 3, 5, 1.2, 0)

    def describe(self) -> str:
        return self.method + (f" ({self.preset})" if self.method == "dis" else "")


class RaftFlow:
    """torchvision's RAFT (large), only from weights already in torch's cache: it never downloads them."""

    def __init__(self, device: torch.device, model: torch.nn.Module | None = None):
        from torchvision.models.optical_flow import Raft_Large_Weights, raft_large

        weights = Raft_Large_Weights.DEFAULT
        if model is None:
            path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
            if not path.is_file():
                raise UserError(f"--flow raft: torchvision's RAFT weights are not on this machine ({path}); "
                                "this option does not download them: use --flow dis or farneback")
            model = raft_large()
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self._model = model.to(device).eval()
        self._device = device
        self._lock = threading.Lock()  # one network, one call at a time

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        height, width = first.shape[:2]
        # RAFT needs sides that are multiples of 8, and at least 128 pixels for its correlation pyramid.
        pad = max(128, height + (-height) % 8) - height, max(128, width + (-width) % 8) - width
        pair = [torch.from_numpy(f).to(self._device).permute(2, 0, 1)[None].float() / 127.5 - 1
                for f in (first, second)]
        pair = [F.pad(f, (0, pad[1], 0, pad[0]), mode="replicate") for f in pair]
        with self._lock, torch.inference_mode():
            flow = self._model(*pair)[-1][0, :, :height, :width]
        return flow.permute(1, 2, 0).float().cpu().numpy()


def _grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The x and y coordinate of every pixel, HxW float32 each."""
    return np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """`image` (HxW or HxWxC, uint8 or float32) moved by `flow`: the result at x is `image` at x + flow[x]
    (bilinear; positions outside take the nearest edge pixel)."""
    grid_x, grid_y = _grid(*flow.shape[:2])
    flow_x, flow_y = cv2.split(flow)
    return cv2.remap(image, grid_x + flow_x, grid_y + flow_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def occlusion_mask(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """HxW bool, True where pixel x of frame t has no reliable counterpart in frame t-1.

    `forward` is the flow t-1 -> t, `backward` the flow t -> t-1. Occluded: forward-backward inconsistent
    (|f(x + b(x)) + b(x)|^2 > 0.01 (|f(x + b(x))|^2 + |b(x)|^2) + 0.5), on a motion boundary
    (|grad b|^2 > 0.01 |b|^2 + 0.002), or moved out of frame t-1.
    """
    height, width = backward.shape[:2]
    back_x, back_y = cv2.split(backward)  # contiguous planes: much faster than strided channels
    forward_x, forward_y = cv2.split(warp(forward, backward))
    backward_squared = back_x * back_x + back_y * back_y
    sum_x, sum_y = forward_x + back_x, forward_y + back_y
    inconsistent = sum_x * sum_x + sum_y * sum_y > 0.01 * (forward_x * forward_x + forward_y * forward_y
                                                          + backward_squared) + 0.5
    gradient = np.zeros((height, width), np.float32)
    for plane in (back_x, back_y):
        gradient[:, :-1] += np.square(plane[:, :-1] - plane[:, 1:])
        gradient[:-1, :] += np.square(plane[:-1, :] - plane[1:, :])
    boundary = gradient > 0.01 * backward_squared + 0.002
    grid_x, grid_y = _grid(height, width)
    target_x, target_y = grid_x + back_x, grid_y + back_y
    outside = (target_x < 0) | (target_x > width - 1) | (target_y < 0) | (target_y > height - 1)
    return inconsistent | boundary | outside


@dataclass
class Motion:
    """How frame t follows from frame t-1, measured on the source frames (all HxW at frame t)."""

    backward: np.ndarray  # HxWx2 float32: the flow t -> t-1
    occluded: np.ndarray  # HxW bool: see occlusion_mask
    reliability: np.ndarray  # HxW float32 in 0-1: how safely frame t-1, warped, may stand in for frame t
    cut: bool  # too few reliable pixels: a scene cut (or motion too fast to follow); reliability is all 0


def estimate_motion(previous: np.ndarray, current: np.ndarray, flow: FlowEstimator,
                    tolerance: tuple[float, float] = PHOTO_TOLERANCE) -> Motion:
    """The Motion from RGB uint8 source frame `previous` to `current`. With flow.max_side, it is estimated on
    frames shrunk to that longer side and then scaled up. `tolerance`: the photometric check's (see
    PHOTO_TOLERANCE)."""
    height, width = current.shape[:2]
    if not flow.max_side or max(height, width) <= flow.max_side:
        return _motion(previous, current, flow, tolerance)
    scale = flow.max_side / max(height, width)
    size = max(1, round(width * scale)), max(1, round(height * scale))
    small = _motion(*(cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in (previous, current)), flow,
                    tolerance)
    stretch = np.float32([width / size[0], height / size[1]])
    return Motion(cv2.resize(small.backward, (width, height), interpolation=cv2.INTER_LINEAR) * stretch,
                  cv2.resize(small.occluded.view(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0,
                  cv2.resize(small.reliability, (width, height), interpolation=cv2.INTER_LINEAR), small.cut)


def _motion(previous: np.ndarray, current: np.ndarray, flow: FlowEstimator,
            tolerance: tuple[float, float]) -> Motion:
    backward = flow(current, previous)
    occluded = occlusion_mask(flow(previous, current), backward)
    # The warped previous source frame must also look like the current one (catches flow errors, lighting).
    difference = cv2.transform(cv2.absdiff(warp(previous, backward), current), np.full((1, 3), 1 / 3))
    low, high = tolerance
    reliability = np.clip((high - difference.astype(np.float32)) / (high - low), 0, 1)
    reliability[occluded] = 0
    # A little softer at the edges of what is reliable, so that no seam shows where blending stops.
    reliability = cv2.GaussianBlur(cv2.erode(reliability, np.ones((3, 3), np.uint8)), (5, 5), 1)
    cut = float((reliability > 0.5).mean()) < CUT_FRACTION
    return Motion(backward, occluded, reliability * (not cut), cut)


def motions_of(frames: list[np.ndarray], flow: FlowEstimator,
               tolerance: tuple[float, float] = PHOTO_TOLERANCE) -> list[Motion | None]:
    """The Motion into each of a short list of frames held in memory (None for the first); with_motion() streams."""
    return [None] + [estimate_motion(a, b, flow, tolerance) for a, b in itertools.pairwise(frames)]



def with_motion(frames: Iterable[np.ndarray], flow: FlowEstimator, workers: int = 1,
                ahead: int = 2) -> Iterator[tuple[np.ndarray, Motion | None]]:
    """Each frame with its Motion from the frame before (None for the first).

    The motion is estimated by `workers` threads, `ahead` frames ahead of the caller: it runs alongside
    whatever the caller does with the frames (the network), and only `ahead` + 1 frames are held at a time.
    """
    pending: collections.deque[tuple[np.ndarray, Future | None]] = collections.deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flow") as pool:
        try:
            previous = None
            for frame in frames:
                job = pool.submit(estimate_motion, previous, frame, flow) if previous is not None else None
                pending.append((frame, job))
                previous = frame
                if len(pending) > ahead:
                    frame, job = pending.popleft()
                    yield frame, job.result() if job else None
            while pending:
                frame, job = pending.popleft()
                yield frame, job.result() if job else None
        finally:
            for _, job in pending:
                if job is not None:
                    job.cancel()


def flow_workers(device: torch.device) -> int:
    """Threads for the flow while rendering: on the CPU one, as the network needs the cores; beside a GPU,
    enough to keep up with it."""
    return 1 if device.type == "cpu" else max(1, min(8, (os.cpu_count() or 2) - 2))


def warp_tensor(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """warp() for a CxHxW tensor on any device, with an HxWx2 flow tensor on the same device."""
    height, width = flow.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(height, device=flow.device, dtype=flow.dtype),
                            torch.arange(width, device=flow.device, dtype=flow.dtype), indexing="ij")
    grid = torch.stack([(xs + flow[..., 0]) * (2 / max(width - 1, 1)) - 1,
                        (ys + flow[..., 1]) * (2 / max(height - 1, 1)) - 1], dim=-1)
    return F.grid_sample(image[None], grid[None], mode="bilinear", padding_mode="border", align_corners=True)[0]
