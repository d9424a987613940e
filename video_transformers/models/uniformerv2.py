"""UniFormerV2 (Li et al., "UniFormerV2: Unlocking the Potential of Image ViTs for Video Understanding",
ICCV 2023; arXiv 2211.09552), on a CLIP ViT (B/16, L/14, L/14@336).

Pipeline (section 3, Fig. 3), with the official code (OpenGVLab/UniFormerV2,
``slowfast/models/uniformerv2_model.py``, cited as ``official``) as the reference for every detail the paper
leaves open:

1. 3D-conv tokenizer (no bias), optionally down-sampling time (kernel 3, stride 2); a CLS token per frame,
   the image ViT's 2D position embedding and ``ln_pre`` (``norm_pre``), embeddings cast to the input's dtype
   (official lines 319-326).
2. ``depth`` CLIP blocks (QuickGELU, CLIP's LayerNorm, eps 1e-5) run on each frame's tokens; with
   ``local_mhra`` they are local UniBlocks (LT-MHRA before the MHSA, and before the FFN for ``"double"``,
   eqs. 2-4).
3. After each block in ``global_layers`` a global UniBlock (DPE + one-query cross-attention + FFN,
   eqs. 5-8) updates a single learnable query, passed sequentially from stage to stage (multi-stage fusion,
   "sequential" in section 3.2 / Table 9).
4. Output: ``fc_norm((1 - sigmoid(balance)) * query + sigmoid(balance) * mean_t CLS_t)`` -> dropout -> linear
   (the official ``proj = [LayerNorm, Dropout, Linear]``; ``balance`` starts at 0, so the mix is 1/2-1/2).
   ``frozen=True`` is the official ``FROZEN`` variant: ``fc_norm(query)`` alone, no ``balance`` (official
   lines 239-241, 269-270), and the CLIP backbone does not train (``slowfast/models/uniformerv2.py:88-103``).

Initial output (zero-initialised query, global output projections and LT-MHRA up-projections, as in the
official code): the query stays at 0 through every global block and the local branches are identity, so
pre-logits = ``fc_norm(0.5 * mean_t CLS_t)``, with ``CLS_t`` the image ViT's last-block CLS token of frame
``t`` (before CLIP's ``ln_post``, which UniFormerV2 does not use).

Recipes (official ``exp/*/config.yaml``, ``UNIFORMERV2`` section):

* Kinetics / MiT (``exp/k400/k400_b16_f8x224``, ...): no local MHRA, no temporal down-sampling, global
  UniBlocks on the last 4 layers (``RETURN_LIST`` [8..11] for B/16, [20..23] for L/14), no drop path; the
  defaults here. The released L/14@336 "frozen" models add ``frozen=True`` (registered:
  ``uniformerv2_l14_frozen_8x336``).
* Something-Something V1/V2 (``exp/sthv2/ssv2_b16_f16x224``, ``ssv2_l14_f32x224``, ...):
  ``local_mhra="double"``, ``temporal_downsample=True`` (16 or 32 input frames, 8 or 16 tokens in time),
  global UniBlocks on the last 8 layers of B/16 (``RETURN_LIST`` [4..11]) and the last 16 of L/14
  ([8..23]), ``drop_path_rate=0.2``, ``global_drop_path_rate=0.4`` (registered: ``uniformerv2_b16_ssv2_16x224``).

Stochastic depth follows the official code's masks, not timm's per-sample ones: see
:class:`~video_transformers.layers.uniblocks.SharedDropPath`.

Parameter names follow timm's ViT (``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``norm_pre``,
``blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``) so CLIP weights from timm load by name;
the UniFormerV2 parts keep the official names where they exist (``lmhra1/2.pos_embed.*``,
``temporal_cls_token``, ``balance``). :mod:`video_transformers.pretrained.uniformerv2` maps the official
checkpoint names onto these.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import torch
from einops import rearrange
from torch import nn

from video_transformers.layers import make_act_layer, prepend, run_seq
from video_transformers.layers.uniblocks import CastLayerNorm, GlobalUniBlock, ImageBlock, LocalUniBlock
from video_transformers.models.base import VideoTransformer, ViTArgs, init_weights
from video_transformers.models.registry import register_model

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's normalisation, pixels in [0, 1]
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
UNIFORMERV2_MEAN = (0.45, 0.45, 0.45)  # released UniFormerV2 checkpoints: 114.75 / 255 (mmaction2 configs)
UNIFORMERV2_STD = (0.225, 0.225, 0.225)  # 57.375 / 255

LocalMode = Literal["none", "single", "double"]
# the parts the official FROZEN recipe freezes (slowfast/models/uniformerv2.py:89-92: conv1, class_embedding,
# positional_embedding, ln_pre, transformer.resblocks)
BACKBONE_PARTS = ("patch_embed", "cls_token", "pos_embed", "norm_pre", "blocks")


def official_drop_path_rates(rate: float, n: int) -> list[float]:
    """Rates rising linearly from 0 to ``rate`` over ``n`` blocks, as the official code computes them (float32
    ``torch.linspace``, official lines 200 and 226), so keep probabilities match it bit for bit."""
    return torch.linspace(0, rate, n, device="cpu").tolist()  # cpu: also under a meta-device context


def resolve_global_layers(global_layers: list[int] | None, depth: int) -> list[int]:
    """The blocks followed by a global UniBlock: increasing indices below ``depth``; ``None`` = the last 4."""
    layers = list(range(max(0, depth - 4), depth)) if global_layers is None else list(global_layers)
    if not layers or sorted(set(layers)) != layers or not 0 <= layers[0]:
        raise ValueError(f"global_layers {layers}: expected increasing block indices")
    if layers[-1] >= depth:
        raise ValueError(f"global_layers {layers}: the backbone has only {depth} blocks")
    return layers


class UniFormerV2(VideoTransformer):
    """UniFormerV2 on a CLIP ViT: ``(B, C, T, H, W)`` -> ``(B, num_classes)``.

    Args:
        temporal_downsample: tokenizer kernel 3 / stride 2 in time (``t = T / 2``), else kernel 1.
        local_mhra: ``"none"`` (image blocks), ``"single"`` (LT-MHRA before MHSA) or ``"double"`` (also
            before the FFN; the official default when local MHRA is on).
        local_reduction: LT-MHRA width ``int(D // local_reduction)`` (official ``dw_reduction`` 1.5).
        global_layers: indices of the blocks followed by a global UniBlock (official ``return_list``);
            ``None`` = the last ``min(4, depth)`` blocks, as in the Kinetics recipes (SSv2 uses the last 8 of
            B/16's 12 and the last 16 of L/14's 24: module docstring).
        global_mlp_drop: dropout inside the global blocks' FFN (official ``mlp_dropout``, 0.5).
        drop_path_rate / global_drop_path_rate: stochastic depth of the backbone / the global blocks
            (official ``backbone_drop_path_rate`` / ``drop_path_rate``), rising linearly.
        head_drop_rate: dropout before the classifier (official ``cls_dropout``, 0.5).
        frozen: the official ``FROZEN`` variant: output ``fc_norm(query)`` without ``balance``, and the CLIP
            backbone (:data:`BACKBONE_PARTS`) gets ``requires_grad=False``.
    """

    vit_defaults = ViTArgs(head_drop_rate=0.5, act="quick_gelu")
    vit_omit = ("qkv_bias", "drop_rate", "attn_drop_rate", "norm_eps")  # fixed in CLIP's blocks

    def __init__(
        self,
        *,
        depth: int = 12,
        temporal_downsample: bool = False,
        local_mhra: LocalMode = "none",
        local_reduction: float = 1.5,
        local_kernel: int = 3,
        global_layers: list[int] | None = None,
        global_mlp_ratio: float = 4.0,
        global_mlp_drop: float = 0.5,
        global_drop_path_rate: float = 0.0,
        frozen: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        a = self.vit_args
        if local_mhra not in ("none", "single", "double"):
            raise ValueError(f"local_mhra {local_mhra!r}: expected 'none', 'single' or 'double'")
        global_layers = resolve_global_layers(global_layers, depth)
        if a.num_frames % (2 if temporal_downsample else 1):
            raise ValueError(f"num_frames {a.num_frames} must be even with temporal_downsample")
        self.mean, self.std = CLIP_MEAN, CLIP_STD
        self.temporal_downsample, self.local_mhra, self.global_layers = temporal_downsample, local_mhra, global_layers
        self.frozen = frozen
        self._init_embeddings()
        act_layer = make_act_layer(a.act)
        local = dict(double=local_mhra == "double", reduction=local_reduction, kernel_size=local_kernel)
        block_cls, block_kw = (ImageBlock, {}) if local_mhra == "none" else (LocalUniBlock, local)
        self.blocks = nn.ModuleList(
            block_cls(a.embed_dim, a.num_heads, drop_path=p, mlp_ratio=a.mlp_ratio, act_layer=act_layer, **block_kw)
            for p in official_drop_path_rates(a.drop_path_rate, depth)
        )
        self.temporal_cls_token = nn.Parameter(torch.zeros(1, 1, a.embed_dim))  # the global query, zero at init
        global_kw = dict(mlp_ratio=global_mlp_ratio, mlp_drop=global_mlp_drop, act_layer=act_layer)
        self.global_blocks = nn.ModuleList(
            GlobalUniBlock(a.embed_dim, a.num_heads, drop_path=p, **global_kw)
            for p in official_drop_path_rates(global_drop_path_rate, len(global_layers))
        )
        # sigmoid(0) = 1/2: query and CLS mean weigh equally; the frozen variant has no mix (official line 239)
        self.balance = None if frozen else nn.Parameter(torch.zeros(a.embed_dim))
        self.fc_norm = nn.LayerNorm(a.embed_dim)
        self._init_head(a.num_classes, a.head_drop_rate)
        self.grad_checkpointing = False
        self._init_weights()
        if frozen:
            self.freeze_backbone()

    @property
    def attention_pattern(self) -> str:
        local = {"none": "no local MHRA", "single": "local MHRA", "double": "double local MHRA"}[self.local_mhra]
        return (
            f"spatial MHSA per frame ({local}); global query cross-attends all tokens after blocks {self.global_layers}"
        )

    def _init_embeddings(self) -> None:
        """The 3D-conv tokenizer, the per-frame CLS token, the 2D position embedding and ``ln_pre``."""
        self.patch_embed = self.vit_args.patch_embed(
            tubelet_size=2 if self.temporal_downsample else 1,  # official conv1: kernel 3, stride 2, padding 1
            temporal_kernel=3 if self.temporal_downsample else 1,
            bias=False,
            strict_num_frames=False,
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.patch_embed.num_patches, self.embed_dim))
        self.norm_pre = CastLayerNorm(self.embed_dim, eps=1e-5)

    def _init_weights(self) -> None:
        init_weights(self)
        for g in self.global_blocks:
            g.reset_parameters()  # init_weights above re-drew their zero-initialised projections
        scale = self.embed_dim**-0.5  # CLIP's initialisation of class_embedding / positional_embedding
        nn.init.normal_(self.cls_token, std=scale)
        nn.init.normal_(self.pos_embed, std=scale)
        if self.num_classes > 0:
            self.head.reset_parameters()  # official proj.2 keeps nn.Linear's default init (line 237)

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        if num_classes > 0:
            self.head.reset_parameters()

    def freeze_backbone(self) -> None:
        """``requires_grad=False`` on the CLIP backbone (:data:`BACKBONE_PARTS`), as the official FROZEN recipe."""
        for name, p in self.named_parameters():
            if name.split(".")[0] in BACKBONE_PARTS:
                p.requires_grad_(False)

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """Embeddings (the query included), then the CLIP blocks; the global blocks, which read the tokens of
        several levels, sit with ``norm_pre``, ``balance``, ``fc_norm`` and the head in the top group."""
        stem = r"^(?:cls_token|pos_embed|patch_embed|temporal_cls_token)(?:\.|$)"
        return {"stem": stem, "blocks": r"^blocks\.(\d+)\."}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> ``(B, 1 + t, D)``: the global query, then each frame's CLS token."""
        x = self.patch_embed(x)  # b t n d
        b, t = x.shape[:2]
        grid = self.patch_embed.grid_size[1:]
        x = rearrange(x, "b t n d -> (b t) n d")
        x = self.norm_pre(prepend(self.cls_token.to(x.dtype), x) + self.pos_embed.to(x.dtype))
        query = self.temporal_cls_token.expand(b, -1, -1)
        start = 0
        for end, global_block in zip(self.global_layers, self.global_blocks, strict=True):
            x = self._run_blocks(self.blocks[start : end + 1], x, t, grid)
            query = global_block(query, x, t, grid)  # after block `end`, on its tokens
            start = end + 1
        x = self._run_blocks(self.blocks[start:], x, t, grid)
        cls = rearrange(x[:, 0], "(b t) d -> b t d", b=b)
        return torch.cat([query, cls], dim=1)

    def _run_blocks(self, blocks: nn.ModuleList, x: torch.Tensor, t: int, grid: tuple[int, int]) -> torch.Tensor:
        """``blocks`` in order, checkpointed while training unless they are frozen (then autograd keeps none of
        their activations anyway)."""
        stage = [partial(blk, num_frames=t, grid_size=grid) for blk in blocks]
        trains = any(p.requires_grad for p in blocks.parameters())
        return run_seq(stage, x, checkpointing=self.grad_checkpointing and self.training and trains)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Mix the query with the mean of the frames' CLS tokens through ``sigmoid(balance)``, then LayerNorm
        (frozen variant: the query alone)."""
        query = x[:, 0]
        if self.balance is None:
            return self.fc_norm(query)
        w = torch.sigmoid(self.balance)
        return self.fc_norm((1 - w) * query + w * x[:, 1:].mean(dim=1))

    def no_weight_decay(self) -> set[str]:
        """What the official optimizer exempts beyond 1-D parameters: nothing (``slowfast/models/optimizer.py:
        37-48`` with ``ZERO_WD_1D_PARAM``); our ``(1, 1, D)`` ``cls_token`` is its 1-D ``class_embedding``. The
        position embedding and the query (``temporal_cls_token``) are decayed there, so here too."""
        return {"cls_token"} | ({"balance"} if self.balance is not None else set())


# -- registered variants --------------------------------------------------------------------------------
# Parameter counts: mmaction2 configs/recognition/uniformerv2/README.md, "params" column (K400 models,
# 400 classes, no local MHRA): B/16 115M, L/14 and L/14@336 354M. GFLOPs per view from the same table, given
# there in TFLOPs to one decimal (L/14 8x224 "0.7T", L/14@336 32x336 "6.3T"), hence the tolerances; its B/16
# "0.1T" is too coarse to check against.
_TINY = dict(img_size=32, num_frames=4, patch_size=8, embed_dim=64, depth=2, num_heads=4)
_SOURCE = "mmaction2 configs/recognition/uniformerv2/README.md (K400 table, params)"
_B16 = dict(patch_size=16, embed_dim=768, depth=12, num_heads=12)  # CLIP ViT-B/16
_L14 = dict(patch_size=14, embed_dim=1024, depth=24, num_heads=16)  # CLIP ViT-L/14 (and L/14@336)


def _uniformerv2(name: str, clip: dict, frames: int, size: int, paper: dict, tiny: dict = _TINY, **recipe) -> None:
    register_model(name, UniFormerV2, tiny=tiny, paper=paper, num_frames=frames, img_size=size, **clip, **recipe)


_uniformerv2("uniformerv2_b16_8x224", _B16, 8, 224, dict(params_m=115.0, source=_SOURCE, views="4x3"))
_uniformerv2("uniformerv2_l14_8x224", _L14, 8, 224,
             dict(params_m=354.0, gflops=700.0, gflops_tol=0.08, source=_SOURCE, views="4x3"))  # fmt: skip
_uniformerv2("uniformerv2_l14_32x336", _L14, 32, 336,
             dict(params_m=354.0, gflops=6300.0, gflops_tol=0.01, source=_SOURCE, views="2x3"))  # fmt: skip
# Something-Something V2, B/16 at 16 frames: the official recipe exp/sthv2/ssv2_b16_f16x224/config.yaml (UNIFORMERV2:
# DOUBLE_LMHRA, TEMPORAL_DOWNSAMPLE, RETURN_LIST [4..11], DW_REDUCTION 1.5, BACKBONE_DROP_PATH_RATE 0.2,
# DROP_PATH_RATE 0.4, MLP_DROPOUT 0.5, CLS_DROPOUT 0.5; DATA.NUM_FRAMES 16, crop 224; MODEL.NUM_CLASSES 174). No
# per-view params/GFLOPs of this configuration are recorded here (mmaction2's table covers the Kinetics models).
_uniformerv2("uniformerv2_b16_ssv2_16x224", _B16, 16, 224,
             dict(source="OpenGVLab/UniFormerV2 exp/sthv2/ssv2_b16_f16x224/config.yaml (MODEL_ZOO.md: SSv2 69.5, "
                  "16x3x1)"), tiny=dict(_TINY, global_layers=[0, 1]),
             num_classes=174, local_mhra="double", local_reduction=1.5, temporal_downsample=True,
             global_layers=[4, 5, 6, 7, 8, 9, 10, 11], drop_path_rate=0.2, global_drop_path_rate=0.4)  # fmt: skip
# The released frozen-backbone L/14@336 at 8 frames: exp/k400/frozen_k400_l14_f8x336/config.yaml (UNIFORMERV2:
# FROZEN, NO_LMHRA, no temporal down-sampling, RETURN_LIST [20..23] = the default last 4, no drop path;
# DATA.NUM_FRAMES 8, crop 336).
_uniformerv2("uniformerv2_l14_frozen_8x336", _L14, 8, 336,
             dict(source="OpenGVLab/UniFormerV2 exp/k400/frozen_k400_l14_f8x336/config.yaml (MODEL_ZOO.md: K400 "
                  "86.7, 8x1x3)"), frozen=True)  # fmt: skip

__all__ = ["CLIP_MEAN", "CLIP_STD", "UNIFORMERV2_MEAN", "UNIFORMERV2_STD", "UniFormerV2"]
