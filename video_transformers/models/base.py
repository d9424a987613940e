"""What every video model here shares: the classification head and timm's model interface."""

from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VideoTransformer(nn.Module):
    """Base class: ``forward(x) = forward_head(forward_features(x))`` on ``(B, C, T, H, W)`` input.

    Subclasses build ``self.head`` through :meth:`_init_head` and implement ``forward_features``
    (tokens) and ``pool`` (tokens -> ``(B, D)`` pre-logits).
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
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        init_weights(self.head)

    def no_weight_decay(self) -> set[str]:
        """Parameter names exempt from weight decay: learned tokens and position embeddings."""
        keys = ("token", "pos_embed", "time_embed")
        return {n for n, _ in self.named_parameters() if any(k in n.rsplit(".", 1)[-1] for k in keys)}

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


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "VideoTransformer", "init_weights"]
