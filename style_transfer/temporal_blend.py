"""render_video.py --temporal: the blending that takes flicker out, and the threaded streaming of frames with
their motion that feeds it (the flow runs in other threads while the network stylises).

The previous *output* frame, warped to t along the source's motion (optical_flow.py), is mixed into the fresh
stylisation of frame t where the motion is reliable (not occluded, and the warped previous source frame matches
the current one), and not at all after a scene cut. Output t is then a running average along the motion, so what
flickers from frame to frame averages out, while what is new (occlusions, cuts, fast motion) comes from frame t
alone.
"""

import collections
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from style_transfer.optical_flow import FlowEstimator, Motion, estimate_motion, warp_tensor

# Blending; chosen from the measurements in benchmarks/flicker.py's records.
BLEND = 0.8  # at most this much of the warped previous output goes into a frame
RENDER_FLOW = "dis", "fast"  # flow method and DIS preset while rendering (evaluation uses DIS medium)
RENDER_FLOW_SIDE = 640  # while rendering, the flow is computed with the longer side at most this many pixels


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


class TemporalBlender:
    """render_video.py --temporal: blends each stylised frame with the previous output, warped along the motion
    of the source, where that motion is reliable (see the module's docstring). Frames must come in order."""

    def __init__(self, blend: float = BLEND):
        self.blend = blend
        self._previous: torch.Tensor | None = None  # the last output frame, 3xHxW, 0-255

    def __call__(self, stylised: torch.Tensor, motions: list[Motion | None]) -> torch.Tensor:
        """An Nx3xHxW batch of consecutive stylised frames (0-255, on any device) and the source's Motion into
        each one; returns the blended batch."""
        outputs = []
        for frame, motion in zip(stylised, motions, strict=True):
            if motion is not None and not motion.cut and self._previous is not None:
                flow = torch.from_numpy(motion.backward).to(frame.device)
                weight = torch.from_numpy(motion.reliability).to(frame.device) * self.blend
                frame = torch.lerp(frame, warp_tensor(self._previous, flow), weight)
            outputs.append(frame)
            self._previous = frame
        return torch.stack(outputs)
