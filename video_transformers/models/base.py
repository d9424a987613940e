"""What every video model here shares: the classification head, timm's model interface, and what code outside
``models/`` may ask a model instead of reading its submodules: the arguments it was built with
(``model_args``), its parameter groups for layer-wise lr decay (``group_matcher``), its token grid for an
input size (``token_grid``), how its attention groups tokens (``attention_layout``) and whether windows may
reuse its per-tubelet features (``supports_streaming``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from video_transformers.safety.limits import check_model_kwargs

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AttentionLayout:
    """Which attention modules mix which tokens: what attention rollout (``inference/rollout.py``) follows.

    ``kind``:

    * ``"joint"``: every module matching ``spatial`` attends over the ``num_prefix_tokens`` prefix (CLS) and
      all ``t*h*w`` patch tokens of the clip, ordered ``(t h w)``;
    * ``"divided"``: ``spatial`` modules attend within one temporal index (prefix + ``h*w``, ``(b t)``
      batches), ``temporal`` modules over the ``t`` patches at one position (``(b h w)`` batches, no prefix);
    * ``"factorised_encoder"``: ``spatial`` modules attend within one temporal index (its own prefix +
      ``h*w``), ``temporal`` modules over the prefix + one feature per temporal index.

    ``spatial`` / ``temporal`` are regular expressions that the module names fully match; ``label`` names the
    layout in rollout outputs.
    """

    kind: Literal["joint", "divided", "factorised_encoder"]
    label: str
    spatial: str
    temporal: str | None = None
    num_prefix_tokens: int = 1


class VideoTransformer(nn.Module):
    """Base class: ``forward(x) = forward_head(forward_features(x))`` on ``(B, C, T, H, W)`` input.

    Subclasses build ``self.head`` through :meth:`_init_head`, a ``patch_embed`` with a ``grid(T, H, W)``
    method, and implement ``forward_features`` (tokens), ``pool`` (tokens -> ``(B, D)`` pre-logits) and
    ``group_matcher``.
    """

    num_classes: int
    embed_dim: int
    num_frames: int
    img_size: int
    model_name: str = ""
    # Normalisation the weights expect (the data module reads it; issue: pretrained weights).
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    class_names: list[str] | None = None
    # True where forward_spatial(clip) -> (B, t, D) encodes each temporal index on its own and
    # forward_head(forward_temporal(features)) finishes: sliding windows then share the per-index features.
    supports_streaming: bool = False
    model_args: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> VideoTransformer:
        # Absurd sizes fail here, before any allocation, however the model is built (registry, loaders).
        check_model_kwargs(cls.__name__, kwargs)
        # nanoGPT's model_args: the keyword arguments of this construction, so that a checkpoint can record
        # them and a loader rebuild the same architecture (models take keyword arguments only).
        self = super().__new__(cls)
        self.model_args = dict(kwargs)
        return self

    def _init_head(self, num_classes: int, head_drop_rate: float) -> None:
        self.num_classes = num_classes
        self.head_drop = nn.Dropout(head_drop_rate)
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.pool(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.model_args["num_classes"] = num_classes
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        init_weights(self.head)

    def no_weight_decay(self) -> set[str]:
        """Parameter names exempt from weight decay: learned tokens and position embeddings."""
        keys = ("token", "pos_embed", "time_embed")
        return {n for n, _ in self.named_parameters() if any(k in n.rsplit(".", 1)[-1] for k in keys)}

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """timm's parameter grouping (``timm.models.group_parameters``), bottom to top: ``stem`` (embeddings,
        group 0), then one group per block of each stack in the order they run; parameters no pattern
        matches (final norms, head) form the top group."""
        raise NotImplementedError

    def token_grid(self, video_shape: Sequence[int] | None = None) -> tuple[int, int, int]:
        """Patch tokens per axis ``(t, h, w)`` for input of ``video_shape`` ``(B, C, T, H, W)`` (default: the
        nominal ``num_frames`` x ``img_size``), in ``(t h w)`` order."""
        shape = video_shape or (1, 3, self.num_frames, self.img_size, self.img_size)
        return self.patch_embed.grid(*shape[2:])

    def attention_layout(self) -> AttentionLayout | None:
        """How the attention modules group tokens (:class:`AttentionLayout`); ``None`` where attention rollout
        is not defined for this model."""
        return None

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass (saves memory, costs ~30% time)."""
        for m in self.modules():
            if hasattr(m, "grad_checkpointing"):
                m.grad_checkpointing = enable


def init_weights(module: nn.Module) -> None:
    """timm's ViT initialisation: truncated normal (std 0.02) linear weights, zero biases, unit norms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "AttentionLayout", "VideoTransformer", "init_weights"]
