"""Exact resume: the RNG states travel in the checkpoint."""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


class ResumeState(Callback):
    """Stores Python/NumPy/torch RNG states in each checkpoint and restores them on resume.

    Lightning restores weights, optimizer, scheduler, loops and epoch; the shuffling order and the random
    clips/crops/drop-path of the following epochs come from the global RNGs, which it does not save. The
    states are restored on load and again after the sanity check (whose loader draws a seed), so an
    epoch-boundary resume draws exactly what an uninterrupted run draws.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        # Plain types and tensors only, so the checkpoint still loads with torch.load(weights_only=True).
        name, keys, pos, has_gauss, gauss = np.random.get_state()
        numpy_state = [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]
        return {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict
        self._apply()

    def _apply(self) -> None:
        if self._pending is not None:
            random.setstate(self._pending["python"])
            name, keys, pos, has_gauss, gauss = self._pending["numpy"]
            np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
            torch.set_rng_state(self._pending["torch"])

    def on_sanity_check_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._apply()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pending = None
