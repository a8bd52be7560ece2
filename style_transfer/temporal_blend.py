"""render_video.py --temporal: the blending that takes flicker out, fed by optical_flow.with_motion (the frames with
their motion, estimated in other threads while the network stylises).

The previous *output* frame, warped to t along the source's motion (optical_flow.py), is mixed into the fresh
stylisation of frame t where the motion is reliable (not occluded, and the warped previous source frame matches
the current one), and not at all after a scene cut. Output t is then a running average along the motion, so what
flickers from frame to frame averages out, while what is new (occlusions, cuts, fast motion) comes from frame t
alone.
"""

import torch

from style_transfer.optical_flow import Motion, warp_tensor

# Blending; chosen from the measurements in benchmarks/flicker.py's records.
BLEND = 0.8  # at most this much of the warped previous output goes into a frame
RENDER_FLOW = "dis", "fast"  # flow method and DIS preset while rendering (evaluation uses DIS medium)
RENDER_FLOW_SIDE = 640  # while rendering, the flow is computed with the longer side at most this many pixels


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
