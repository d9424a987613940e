"""Learning-rate schedules as the official code computes them: a factor of the base lr for each optimizer step,
read at the fractional epoch ``e = step / steps_per_epoch`` the step starts at. SlowFast (TimeSformer,
UniFormerV2) calls ``get_lr_at_epoch(cfg, cur_epoch + cur_iter / data_size)`` before every iteration
(slowfast/utils/lr_policy.py); scenic (ViViT) calls ``lr_fn(step)`` with the 0-based step
(scenic/train_lib/lr_schedules.py). A config names one with ``model.lr_schedule``; the classifier turns it
into a per-step ``LambdaLR``.
"""

from __future__ import annotations

import math

import torch


class Schedule:
    """Base: :meth:`factor` of the base lr at fractional epoch ``epoch`` of ``max_epochs``."""

    warmup_epochs: float = 0.0
    warmup_start_ratio: float = 0.0

    def factor(self, epoch: float, max_epochs: float) -> float:
        raise NotImplementedError

    def scheduler(
        self, optimizer: torch.optim.Optimizer, *, steps_per_epoch: float, max_epochs: float
    ) -> torch.optim.lr_scheduler.LambdaLR:
        """A ``LambdaLR`` stepped after every optimizer step."""
        steps_per_epoch = max(steps_per_epoch, 1e-9)

        def factor(step: int) -> float:  # a plain function: LambdaLR does not pickle it into checkpoints
            return self.factor(step / steps_per_epoch, max_epochs)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def _warmup(self, epoch: float, end_factor: float) -> float | None:
        """Linear warm-up from ``warmup_start_ratio`` to ``end_factor`` over ``warmup_epochs``, or ``None`` after."""
        if epoch >= self.warmup_epochs:
            return None
        return self.warmup_start_ratio + (end_factor - self.warmup_start_ratio) * epoch / self.warmup_epochs


class WarmupCosine(Schedule):
    """Linear warm-up, then a half cosine from the base lr at ``warmup_epochs`` to ``min_lr_ratio`` x base lr at
    the last epoch (Loshchilov & Hutter 2017). SlowFast's ``cosine`` policy with ``COSINE_AFTER_WARMUP``
    (``COSINE_END_LR`` = ``min_lr_ratio`` x ``BASE_LR``, ``WARMUP_START_LR`` = ``warmup_start_ratio`` x
    ``BASE_LR``); scenic's ``constant * cosine_decay * linear_warmup`` with ``min_lr_ratio = warmup_start_ratio
    = 0``.
    """

    def __init__(self, *, warmup_epochs: float = 0.0, min_lr_ratio: float = 0.0, warmup_start_ratio: float = 0.0):
        if warmup_epochs < 0 or not 0 <= min_lr_ratio <= 1 or not 0 <= warmup_start_ratio <= 1:
            raise ValueError(
                "lr_schedule: need warmup_epochs >= 0 and ratios in [0, 1]; got"
                f" warmup_epochs={warmup_epochs}, min_lr_ratio={min_lr_ratio}, warmup_start_ratio={warmup_start_ratio}"
            )
        self.warmup_epochs, self.min_lr_ratio, self.warmup_start_ratio = warmup_epochs, min_lr_ratio, warmup_start_ratio

    def factor(self, epoch: float, max_epochs: float) -> float:
        warm = self._warmup(epoch, 1.0)
        if warm is not None:
            return warm
        progress = min(1.0, (epoch - self.warmup_epochs) / max(max_epochs - self.warmup_epochs, 1e-9))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class MultiStep(Schedule):
    """The base lr times ``gamma`` per milestone epoch passed, after an optional linear warm-up: SlowFast's
    ``steps_with_relative_lrs`` with ``LRS = [1, gamma, gamma**2, ...]`` (the lr changes when the fractional
    epoch reaches a milestone, as ``get_step_index`` finds it).
    """

    def __init__(
        self,
        *,
        milestones: list[float],
        gamma: float = 0.1,
        warmup_epochs: float = 0.0,
        warmup_start_ratio: float = 0.0,
    ):
        if sorted(milestones) != list(milestones) or gamma <= 0:
            raise ValueError(f"lr_schedule: milestones must be increasing and gamma > 0; got {milestones}, {gamma}")
        self.milestones, self.gamma = list(milestones), gamma
        self.warmup_epochs, self.warmup_start_ratio = warmup_epochs, warmup_start_ratio

    def factor(self, epoch: float, max_epochs: float) -> float:
        steps = self.gamma ** sum(epoch >= m for m in self.milestones)
        warm = self._warmup(epoch, self.gamma ** sum(self.warmup_epochs >= m for m in self.milestones))
        return steps if warm is None else warm
