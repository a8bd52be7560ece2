"""Divergence: a training loss that becomes NaN or infinite (too high a learning rate, a broken image) ends the run
with one `error:` line naming the step, and nothing non-finite is ever saved, neither a checkpoint nor the model.

Reading the loss on the host every step would make every CUDA step wait for the GPU, so each step only updates a
flag on the device (the first step whose loss was not finite, and that loss); the flag is read at the log steps,
where the loss is read anyway, and before every save, which also checks the weights. With fp16 the gradient scaler
skips the steps whose gradients overflow, leaving the weights as they were, so there only the weights are checked.
"""

from pathlib import Path

import torch
import torch.distributed as dist

from utils import UserError

_NONE = torch.iinfo(torch.long).max  # no step yet: above every step, for a minimum over processes


class DivergenceGuard:
    """The device-side record of the first non-finite loss, and the checks that turn it into an error."""

    def __init__(self, device: torch.device, check_losses: bool = True, last_good: str | Path | None = None):
        self.check_losses = check_losses
        self.last_good = last_good  # the newest checkpoint known to be finite (set by the caller after each save)
        self._first_step = torch.full((), _NONE, dtype=torch.long, device=device)
        self._value = torch.zeros((), device=device)

    def observe(self, step: int, loss: torch.Tensor) -> None:
        """Record `loss`, the loss of `step`, if it is the first non-finite one; no host sync."""
        if not self.check_losses:
            return
        new = (self._first_step == _NONE) & ~torch.isfinite(loss.detach())
        self._first_step = torch.where(new, step, self._first_step)
        self._value = torch.where(new, loss.detach().float(), self._value)

    def check(self, step: int, model: torch.nn.Module | None = None) -> None:
        """Raise if a loss observed so far was not finite, or (given `model`) one of its weights is not; reads
        the device (a host sync). Under torchrun every process must call it at the same step."""
        first = self._first_step.clone()
        if dist.is_initialized():
            dist.all_reduce(first, op=dist.ReduceOp.MIN)
        weights_finite = model is None or bool(torch.stack([torch.isfinite(p).all() for p in model.parameters()])
                                               .all())
        if dist.is_initialized() and model is not None:
            flag = torch.tensor([float(weights_finite)], device=first.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            weights_finite = bool(flag.item())
        first_step = int(first.item())
        if first_step != _NONE:
            value = self._value.item() if int(self._first_step.item()) == first_step else float("nan")
            what = f"the loss was {value} at step {first_step}"
        elif not weights_finite:
            what = f"the weights became non-finite by step {step} (with a finite loss)"
        else:
            return
        kept = (f"the last good checkpoint is {self.last_good}" if self.last_good is not None
                else "no checkpoint was written before it")
        raise UserError(f"training diverged: {what}; nothing was saved from it ({kept}). Try a lower "
                        "--learning-rate, or check the training photos")
