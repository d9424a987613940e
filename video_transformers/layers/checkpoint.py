"""Gradient checkpointing over a sequence of blocks, after timm's ``checkpoint_seq``
(``timm/models/_manipulate.py``): one helper instead of a loop in every model."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch.utils.checkpoint import checkpoint

Layer = Callable[[torch.Tensor], torch.Tensor]


def checkpoint_seq(functions: Iterable[Layer], x: torch.Tensor, every: int = 1) -> torch.Tensor:
    """Apply ``functions`` in order; the activations inside each run of ``every`` consecutive functions are
    recomputed in the backward pass instead of kept (non-reentrant ``torch.utils.checkpoint``)."""
    if every < 1:
        raise ValueError(f"checkpoint_seq: every must be >= 1, got {every}")
    functions = list(functions)
    for start in range(0, len(functions), every):
        x = checkpoint(_run, x, functions[start : start + every], use_reentrant=False)
    return x


def run_seq(functions: Iterable[Layer], x: torch.Tensor, *, checkpointing: bool = False) -> torch.Tensor:
    """Apply ``functions`` in order, through :func:`checkpoint_seq` when ``checkpointing`` (a model's
    ``grad_checkpointing and training``): the one loop over blocks that every model and stack runs."""
    return checkpoint_seq(functions, x) if checkpointing else _run(x, functions)


def _run(x: torch.Tensor, functions: Iterable[Layer]) -> torch.Tensor:
    for f in functions:
        x = f(x)
    return x
