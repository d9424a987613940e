"""ViViT (Arnab et al., "ViViT: A Video Vision Transformer", ICCV 2021).

Model 2, the factorised encoder (section 3.3, Fig. 4): tubelet embedding (eq. 8) -> a spatial
transformer run on each temporal index with its own CLS token -> a temporal transformer over the
per-index CLS tokens -> classification from the temporal CLS token. As in scenic's implementation both
encoders end with a LayerNorm and use learned 1D position embeddings.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from video_transformers.layers import Encoder, PatchEmbed3d, make_act_layer, prepend
from video_transformers.models.base import VideoTransformer, init_weights
from video_transformers.models.registry import register_model

VIVIT_MEAN = (0.5, 0.5, 0.5)  # ViViT's released models take pixels in [-1, 1]
VIVIT_STD = (0.5, 0.5, 0.5)


class ViViTFactorisedEncoder(VideoTransformer):
    """ViViT Model 2: ``L_s`` spatial blocks per temporal index, then ``L_t`` temporal blocks."""

    def __init__(
        self,
        *,
        num_classes: int = 400,
        img_size: int = 224,
        num_frames: int = 32,
        patch_size: int = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
        spatial_depth: int = 12,
        temporal_depth: int = 4,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        head_drop_rate: float = 0.0,
        act: str = "gelu",
    ) -> None:
        super().__init__()
        self.embed_dim, self.num_frames, self.img_size = embed_dim, num_frames, img_size
        self.mean, self.std = VIVIT_MEAN, VIVIT_STD
        self.patch_embed = PatchEmbed3d(
            img_size=img_size,
            num_frames=num_frames,
            patch_size=patch_size,
            tubelet_size=tubelet_size,
            in_chans=in_chans,
            embed_dim=embed_dim,
        )
        t, n = self.patch_embed.grid_size[0], self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + n, embed_dim))
        self.temporal_cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.temporal_pos_embed = nn.Parameter(torch.zeros(1, 1 + t, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        enc = dict(
            mlp_ratio=mlp_ratio,
            qkv_bias=qkv_bias,
            drop=drop_rate,
            attn_drop=attn_drop_rate,
            drop_path=drop_path_rate,
            act_layer=make_act_layer(act),
        )
        self.spatial = Encoder(embed_dim, spatial_depth, num_heads, **enc)
        self.temporal = Encoder(embed_dim, temporal_depth, num_heads, **enc)
        self._init_head(num_classes, head_drop_rate)
        init_weights(self)
        for p in (self.cls_token, self.pos_embed, self.temporal_cls_token, self.temporal_pos_embed):
            nn.init.trunc_normal_(p, std=0.02)

    def forward_spatial(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> per-temporal-index spatial CLS features ``(B, t, D)``."""
        x = self.patch_embed(x)  # b t n d
        b = x.shape[0]
        x = rearrange(x, "b t n d -> (b t) n d")
        x = self.pos_drop(prepend(self.cls_token, x) + self.pos_embed)
        x = self.spatial(x)[:, 0]  # (b t) d: each temporal index's CLS
        return rearrange(x, "(b t) d -> b t d", b=b)

    def forward_temporal(self, x: torch.Tensor) -> torch.Tensor:
        """Per-index features ``(B, t, D)`` -> temporal tokens ``(B, 1 + t, D)``."""
        x = self.pos_drop(prepend(self.temporal_cls_token, x) + self.temporal_pos_embed)
        return self.temporal(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_temporal(self.forward_spatial(x))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


_TINY_FE = dict(img_size=32, num_frames=4, patch_size=8, embed_dim=64, spatial_depth=2, temporal_depth=1, num_heads=4)

register_model(
    "vivit_base_factorised_encoder_16x2",
    ViViTFactorisedEncoder,
    tiny=_TINY_FE,
    # ViViT Table 4 (K400, 32x224, tubelet 16x16x2): Model 2 FE 284 GFLOPs per view (paper figure).
    paper=dict(gflops=284.0, source="Arnab et al. 2021, Table 4"),
    img_size=224,
    num_frames=32,
    patch_size=16,
    tubelet_size=2,
    embed_dim=768,
    spatial_depth=12,
    temporal_depth=4,
    num_heads=12,
)
