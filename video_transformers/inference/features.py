"""Embeddings from any layer of a video model: what ``vt features`` writes.

Layers are asked of the model through its public interface (timm's): ``pre_logits`` is
``forward_head(forward_features(x), pre_logits=True)``, the vector the classifier reads; ``features`` is
``forward_features(x)``, the tokens after the final norm, reduced to one vector by ``token``. Any other layer is
a module of the model, read with a forward hook: an integer ``i`` is the ``i``-th transformer block (modules
named ``blocks.<n>`` in :meth:`~torch.nn.Module.named_modules` order, e.g. ViViT's ``spatial.blocks.*`` then
``temporal.blocks.*``; negative counts from the top), a name is that module (``blocks.3``, ``temporal.norm``).

A token layer's output ``(B*k, N, D)`` is reduced per row to its CLS token (``cls``, position 0) or the mean of
its other tokens (``mean``, timm's ``avg`` pool: prefix tokens excluded); blocks that run per frame
(``B*k`` rows for ``B`` clips, as TimeSformer's space-only blocks or ViViT's spatial encoder) are then
averaged over their ``k`` frames, as TimeSformer's space-only model averages its frames.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import torch
from einops import reduce
from torch import nn

Token = Literal["cls", "mean"]
PRE_LOGITS, FEATURES = "pre_logits", "features"
_BLOCK = re.compile(r"(^|\.)blocks\.\d+$")


def block_names(model: nn.Module) -> list[str]:
    """The model's transformer blocks, bottom to top: modules named ``blocks.<n>`` (any parent)."""
    return [name for name, _ in model.named_modules() if _BLOCK.search(name)]


def num_prefix_tokens(model: nn.Module) -> int:
    """CLS-like tokens before the patch tokens: timm's ``num_prefix_tokens`` where the model states it, else
    one when it has a ``cls_token``."""
    n = getattr(model, "num_prefix_tokens", None)
    if n is not None:
        return int(n)
    return int(getattr(model, "cls_token", None) is not None)


@dataclass(frozen=True)
class Layer:
    """A resolved ``--layer``: ``pre_logits``, ``features`` or a module name, and the token reduction."""

    name: str
    token: Token | None

    @property
    def is_module(self) -> bool:
        return self.name not in (PRE_LOGITS, FEATURES)

    def describe(self) -> str:
        return self.name if self.token is None else f"{self.name} ({self.token} token)"


def resolve_layer(model: nn.Module, layer: str | int = PRE_LOGITS, token: Token | None = None) -> Layer:
    """``layer`` (``pre_logits``, ``features``, a block index or a module name) and ``token`` checked against
    ``model``; ``token`` defaults to ``cls`` where the model has a CLS token, else ``mean``."""
    name = str(layer)
    if name == PRE_LOGITS:
        if token is not None:
            raise ValueError("--token applies to token layers (features, blocks, modules), not to pre_logits")
        return Layer(name, None)
    if re.fullmatch(r"-?\d+", name):
        blocks = block_names(model)
        i = int(name)
        if not -len(blocks) <= i < len(blocks):
            raise ValueError(f"--layer {i}: the model has {len(blocks)} blocks ({', '.join(blocks) or 'none'})")
        name = blocks[i]
    elif name != FEATURES and name not in dict(model.named_modules()):
        blocks = block_names(model)
        shown = f"{blocks[0]} ... {blocks[-1]}" if blocks else "none"
        raise ValueError(
            f"--layer {name!r}: not a module of {type(model).__name__}; expected pre_logits, features, a block "
            f"index (0..{len(blocks) - 1}, negative from the top) or a module name (blocks: {shown})"
        )
    prefix = num_prefix_tokens(model)
    if token is None:
        token = "cls" if prefix else "mean"
    if token not in ("cls", "mean"):
        raise ValueError(f"--token {token!r}: expected cls or mean")
    if token == "cls" and not prefix:
        raise ValueError(f"--token cls: {type(model).__name__} has no CLS token here; use --token mean")
    return Layer(name, token)


def reduce_tokens(x: torch.Tensor, batch: int, token: Token, prefix: int) -> torch.Tensor:
    """``(B*k, N, D)`` tokens -> ``(B, D)``: CLS or mean of the non-prefix tokens per row, then the mean over
    the ``k`` rows of each clip."""
    if x.ndim != 3 or x.shape[0] % batch:
        raise ValueError(f"expected (B*k, tokens, dim) tokens for a batch of {batch}; got {tuple(x.shape)}")
    v = x[:, 0] if token == "cls" else x[:, prefix:].mean(dim=1)
    return reduce(v, "(b k) d -> b d", "mean", b=batch)


class Embedder(nn.Module):
    """``(B, C, T, H, W)`` -> ``(B, D)`` embeddings of ``layer`` (see the module docstring)."""

    def __init__(self, model: nn.Module, layer: Layer) -> None:
        super().__init__()
        self.model, self.layer = model, layer
        self.prefix = num_prefix_tokens(model)
        self._captured: torch.Tensor | None = None
        if layer.is_module:
            module = dict(model.named_modules())[layer.name]
            module.register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, args: tuple, output: torch.Tensor | tuple) -> None:
        self._captured = output[0] if isinstance(output, tuple) else output

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        tokens = self.model.forward_features(video)
        if self.layer.name == PRE_LOGITS:
            return self.model.forward_head(tokens, pre_logits=True)
        if self.layer.name == FEATURES:
            return reduce_tokens(tokens, len(video), self.layer.token, self.prefix)
        x, self._captured = self._captured, None
        if x is None:
            raise RuntimeError(f"--layer {self.layer.name}: the module did not run in forward_features")
        return reduce_tokens(x, len(video), self.layer.token, self.prefix)


__all__ = ["FEATURES", "PRE_LOGITS", "Embedder", "Layer", "block_names", "num_prefix_tokens", "resolve_layer"]
