"""The warping error of a stylised video (Lai et al., "Learning Blind Video Temporal Consistency", ECCV 2018),
what evaluate_video.py reports: the mean over consecutive pairs of the mean squared difference, over the pixels
that are not occluded, between stylised frame t and stylised frame t-1 warped to t (RGB in 0-1, times 1000),
along the motion of the *source* frames (optical_flow.py)."""

import numpy as np

from style_transfer.optical_flow import Motion, warp


def warping_error_of(video: np.ndarray, motions: list[Motion | None]) -> "WarpingError":
    """The WarpingError of NxHxWx3 uint8 stylised frames along the source's motions_of()."""
    metric = WarpingError()
    for i in range(1, len(video)):
        metric.add(video[i - 1], video[i], motions[i])
    return metric


class WarpingError:
    """The warping error of a stylised video (Lai et al. 2018), accumulated pair by pair."""

    def __init__(self):
        self.pair_errors: list[float] = []
        self.skipped = 0  # pairs without a single pixel that is not occluded
        self.masked = 0.0  # sum over pairs of the occluded share of the pixels

    def add(self, previous: np.ndarray, current: np.ndarray, motion: Motion) -> None:
        """Stylised frames t-1 and t, RGB uint8 HxWx3, and the source's Motion from t-1 to t."""
        visible = ~motion.occluded
        self.masked += 1 - float(visible.mean())
        if not visible.any():
            self.skipped += 1
            return
        warped = warp(previous.astype(np.float32) / 255, motion.backward)
        squared = ((current.astype(np.float32) / 255 - warped) ** 2).sum(axis=-1)
        self.pair_errors.append(1000 * float(squared[visible].sum()) / (3 * int(visible.sum())))

    @property
    def value(self) -> float:
        return float(np.mean(self.pair_errors)) if self.pair_errors else 0.0

    @property
    def pairs(self) -> int:
        return len(self.pair_errors) + self.skipped
