"""UniFormerV2: shapes and gradients at tiny size, zero-initialised branches, locality of LT-MHRA, parameter
counts at paper size (meta device), and the official code's details (drop-path masks, dtype flow, frozen
variant). Parity with the official forward itself: tests/test_uniformerv2_pretrained.py (oracle fixtures)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from video_transformers.layers.mlp import ACTIVATIONS, QuickGELU, make_act_layer
from video_transformers.layers.uniblocks import (
    CastLayerNorm,
    GlobalUniBlock,
    ImageBlock,
    LocalMHRA,
    LocalUniBlock,
    SharedDropPath,
)
from video_transformers.models import create_model, get_entry, list_models
from video_transformers.models.uniformerv2 import UniFormerV2, official_drop_path_rates

NAMES = list_models("uniformerv2_*")


def tiny(**overrides) -> UniFormerV2:
    kw = dict(img_size=32, num_frames=4, patch_size=8, embed_dim=48, depth=3, num_heads=4, num_classes=5)
    torch.manual_seed(0)
    return create_model("uniformerv2_b16_8x224", **{**kw, **overrides})


def randomise_(module: nn.Module) -> None:
    """Overwrite every parameter and BatchNorm statistic (zero-initialised ones included) with noise."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def test_registered_variants() -> None:
    assert NAMES == [
        "uniformerv2_b16_8x224",
        "uniformerv2_b16_ssv2_16x224",
        "uniformerv2_l14_32x336",
        "uniformerv2_l14_8x224",
        "uniformerv2_l14_frozen_8x336",
    ]
    # the official SSv2 recipe (exp/sthv2/ssv2_b16_f16x224/config.yaml) and the frozen L/14@336 release
    ssv2 = get_entry("uniformerv2_b16_ssv2_16x224").defaults
    assert (ssv2["local_mhra"], ssv2["temporal_downsample"], ssv2["global_layers"]) == ("double", True, [*range(4, 12)])
    assert (ssv2["drop_path_rate"], ssv2["global_drop_path_rate"], ssv2["num_frames"]) == (0.2, 0.4, 16)
    with torch.device("meta"):
        frozen = create_model("uniformerv2_l14_frozen_8x336")
    assert frozen.balance is None and frozen.global_layers == [20, 21, 22, 23]
    assert not any(p.requires_grad for n, p in frozen.named_parameters() if n.startswith("blocks."))


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(local_mhra="double"),
        dict(local_mhra="single", temporal_downsample=True),
        dict(local_mhra="double", temporal_downsample=True, global_layers=[0, 2], drop_path_rate=0.1),
    ],
    ids=["k400", "double", "single-tds", "double-tds-layers"],
)
def test_forward_backward_finite(overrides: dict) -> None:
    model = tiny(**overrides).train()
    x = torch.randn(2, 3, 4, 32, 32)
    feats = model.forward_features(x)
    t = 2 if overrides.get("temporal_downsample") else 4
    assert feats.shape == (2, 1 + t, 48)
    logits = model(x)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    logits.logsumexp(-1).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    # the zero-initialised output projections still get gradient, so the new branches can learn
    assert grads["global_blocks.0.attn.proj.weight"].abs().sum() > 0
    if overrides.get("local_mhra"):
        assert grads["blocks.0.lmhra1.pos_embed.3.weight"].abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_tiny_registry_entry(name: str) -> None:
    model = create_model(name, **get_entry(name).tiny, num_classes=3).eval()
    assert model(torch.randn(1, 3, model.num_frames, model.img_size, model.img_size)).shape == (1, 3)


def test_local_branches_identity_at_init() -> None:
    """With the up-projections at zero, a local UniBlock is exactly its image block (eqs. 2-3)."""
    local = tiny(local_mhra="double", temporal_downsample=True).eval()
    plain = tiny(temporal_downsample=True).eval()
    plain.load_state_dict(local.state_dict(), strict=False)
    with torch.no_grad():
        for m in local.modules():  # BN statistics must not matter either
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.normal_()
    x = torch.randn(2, 3, 4, 32, 32)
    torch.testing.assert_close(local(x), plain(x), rtol=0, atol=0)
    for blk in local.blocks:
        assert isinstance(blk, LocalUniBlock) and blk.lmhra2 is not None
        assert not blk.lmhra1.pos_embed[3].weight.any() and not blk.lmhra2.pos_embed[3].bias.any()


def test_global_path_at_init_gives_documented_output() -> None:
    """Zero-initialised query and output projections: the query stays 0 through every global block, so
    pre-logits = fc_norm(sigmoid(0) * mean_t CLS_t) whatever the DPE / q, k, v weights are."""
    model = tiny(local_mhra="double").eval()
    x = torch.randn(2, 3, 4, 32, 32)
    feats = model.forward_features(x)
    assert not feats[:, 0].any()
    expected = model.head(model.fc_norm(0.5 * feats[:, 1:].mean(1)))
    torch.testing.assert_close(model(x), expected)
    before = model(x)
    with torch.no_grad():
        for g in model.global_blocks:
            g.dpe.weight.normal_()
            g.attn.qkv.weight.normal_()
            g.mlp.fc1.weight.normal_()
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)
    # ... and once the output projection learns, the query does contribute
    with torch.no_grad():
        model.global_blocks[-1].attn.proj.weight.normal_()
    assert not torch.allclose(model(x), before)


def test_local_mhra_mixes_only_along_time() -> None:
    """Perturb one frame at one spatial position: the LT-MHRA branch changes only at that position, at
    the neighbouring frames within the temporal kernel (3)."""
    torch.manual_seed(0)
    lmhra = LocalMHRA(16, reduction=1.5, kernel_size=3)
    randomise_(lmhra)
    lmhra.eval()
    b, t, (h, w) = 2, 6, (3, 4)
    x = torch.randn(b * t, h * w, 16)
    y = lmhra(x, t, (h, w))
    frame, pos = 2, 5
    x2 = x.clone()
    x2.view(b, t, h * w, 16)[1, frame, pos] += 1.0
    diff = (lmhra(x2, t, (h, w)) - y).view(b, t, h * w, 16).abs().sum(-1)
    changed = {tuple(i) for i in diff.nonzero().tolist()}
    assert changed == {(1, frame - 1, pos), (1, frame, pos), (1, frame + 1, pos)}


def test_local_block_branch_is_temporal_and_skips_cls() -> None:
    blk = LocalUniBlock(16, 2, double=True)
    randomise_(blk)
    blk.eval()
    t, grid = 4, (2, 2)
    x = torch.randn(t, 1 + 4, 16)
    y = blk.local(x, blk.lmhra1, t, grid)
    x2 = x.clone()
    x2[0, 1 + 3] += 1.0  # frame 0, patch 3
    diff = (blk.local(x2, blk.lmhra1, t, grid) - y).abs().sum(-1)
    assert {tuple(i) for i in diff.nonzero().tolist()} == {(0, 4), (1, 4)}
    x3 = x.clone()
    x3[:, 0] += 1.0  # CLS tokens bypass the local branch
    torch.testing.assert_close(blk.local(x3, blk.lmhra1, t, grid)[:, 1:], y[:, 1:])


def test_global_block_query_sees_every_token() -> None:
    """The one query attends to all t * (1 + h*w) tokens of the stage (CLS tokens included)."""
    blk = GlobalUniBlock(16, 2, mlp_drop=0.0)
    randomise_(blk)
    blk.eval()
    t, grid = 3, (2, 2)
    tokens = torch.randn(2 * t, 5, 16, requires_grad=True)
    query = torch.randn(2, 1, 16)
    out = blk(query, tokens, t, grid)
    out[0].sum().backward()
    seen = tokens.grad.view(2, t, 5, 16).abs().sum(-1)
    assert (seen[0] > 0).all() and not seen[1].any()
    assert blk.context(tokens, t, grid).shape == (2, t * 5, 16)


def test_temporal_downsampling_tokenizer() -> None:
    model = tiny(temporal_downsample=True)
    assert model.patch_embed.proj.kernel_size == (3, 8, 8) and model.patch_embed.proj.stride == (2, 8, 8)
    assert model.patch_embed.proj.bias is None
    with pytest.raises(ValueError, match="multiple of 2"):
        model(torch.randn(1, 3, 3, 32, 32))
    with pytest.raises(ValueError, match="only 3 blocks"):
        tiny(global_layers=[1, 3])


def test_copy_keeps_behaviour() -> None:
    model = tiny().eval()
    x = torch.randn(1, 3, 4, 32, 32)
    torch.testing.assert_close(copy.deepcopy(model)(x), model(x))


@pytest.mark.parametrize(
    "name, local, expected_m",
    [
        ("uniformerv2_b16_8x224", "none", 115.0),
        ("uniformerv2_l14_8x224", "none", 354.0),
        ("uniformerv2_l14_32x336", "none", 354.0),
    ],
)
def test_parameter_counts_at_paper_size(name: str, local: str, expected_m: float) -> None:
    """Against the mmaction2 UniFormerV2 model zoo (K400, 400 classes): B/16 115M, L/14 354M."""
    assert get_entry(name).paper["params_m"] == expected_m
    with torch.device("meta"):
        model = create_model(name, local_mhra=local)
    count = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(count - expected_m) / expected_m < 0.01, count
    assert len(model.global_blocks) == 4 and model.global_layers == list(
        range(len(model.blocks) - 4, len(model.blocks))
    )


def test_local_mhra_parameter_count() -> None:
    """LT-MHRA adds per block: BN (2D) + down (D*d + d) + depthwise (3d + d) + up (d*D + D), d = D // 1.5."""
    with torch.device("meta"):
        plain = create_model("uniformerv2_b16_8x224")
        double = create_model("uniformerv2_b16_8x224", local_mhra="double")
    d, inner = 768, 512
    per = 2 * d + (d * inner + inner) + (3 * inner + inner) + (inner * d + d)
    extra = sum(p.numel() for p in double.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == 12 * 2 * per


# -- details of the official code (OpenGVLab/UniFormerV2 slowfast/models/uniformerv2_model.py) ----------------
def keep_pattern(drop: SharedDropPath, shape: tuple[int, ...]) -> torch.Tensor:
    """The mask a drop-path module applies to a tensor of ``shape``: 0 (dropped) or 1 / keep (kept)."""
    return drop.train()(torch.ones(shape))


def test_drop_path_masks_follow_the_official_layouts() -> None:
    """timm's per-sample DropPath on the official layouts (lines 70, 106, 114, 119, 127, 138, 180-181):
    CLIP blocks on (1 + h*w, B*t, D) -> one draw per token position shared by all clips and frames; local MHRA
    on (B, D, t, h, w) -> one per clip; global blocks on the (1, B, D) query -> one for the whole batch."""
    torch.manual_seed(0)
    b, t, n, d, p = 3, 4, 64, 8, 0.5
    blk = LocalUniBlock(d, 2, double=True, drop_path=p)
    for drop in (blk.drop_path1, blk.drop_path2):
        mask = keep_pattern(drop, (b * t, n, d))
        assert (mask == mask[:1, :, :1]).all()  # shared over clips, frames and channels
        assert set(mask[0, :, 0].tolist()) == {0.0, 1 / (1 - p)}  # but not over token positions
    mask = keep_pattern(blk.drop_path_local, (64, t, n, d))  # (B, t, n, D) in LocalUniBlock.local
    assert (mask == mask[:, :1, :1, :1]).all() and set(mask[:, 0, 0, 0].tolist()) == {0.0, 2.0}
    assert isinstance(ImageBlock(d, 2, drop_path=p).drop_path1, SharedDropPath)
    glob = GlobalUniBlock(d, 2, drop_path=p).drop_path
    masks = torch.stack([keep_pattern(glob, (b, 1, d)) for _ in range(32)])
    assert all(len(set(m.flatten().tolist())) == 1 for m in masks)  # one draw per call
    assert set(masks[:, 0, 0, 0].tolist()) == {0.0, 2.0}
    # eval mode, or rate 0: identity
    x = torch.randn(b * t, n, d)
    assert blk.eval().drop_path1(x) is x and SharedDropPath(0.0).train()(x) is x


def test_drop_path_rates_are_the_official_float32_linspace() -> None:
    """Official lines 200 and 226: ``[x.item() for x in torch.linspace(0, rate, n)]`` (float32 values)."""
    model = tiny(drop_path_rate=0.2, global_drop_path_rate=0.4, global_layers=[0, 1, 2])
    assert [b.drop_path1.p for b in model.blocks] == [x.item() for x in torch.linspace(0, 0.2, 3)]
    assert [g.drop_path.p for g in model.global_blocks] == [x.item() for x in torch.linspace(0, 0.4, 3)]
    assert official_drop_path_rates(0.3, 1) == [0.0]


def test_autocast_keeps_the_clip_stream_in_half_precision() -> None:
    """CLIP's LayerNorm computes in float32 and returns the input dtype (official lines 26-32) and the
    embeddings are cast to the input dtype (lines 324-325), so under autocast the backbone's tokens stay
    bfloat16; the global blocks' plain nn.LayerNorm (lines 141, 149-150) keeps the query in float32."""
    model = tiny(local_mhra="double", temporal_downsample=True).eval()
    dtypes = {}
    for i, blk in enumerate(model.blocks):
        blk.register_forward_hook(lambda m, args, out, i=i: dtypes.__setitem__(("block", i), out.dtype))
    for j, g in enumerate(model.global_blocks):
        g.register_forward_hook(lambda m, args, out, j=j: dtypes.__setitem__(("global", j), out.dtype))
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    assert {dtypes[("block", i)] for i in range(3)} == {torch.bfloat16}
    assert {dtypes[("global", j)] for j in range(len(model.global_blocks))} == {torch.float32}
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
    # in float32 the cast is a no-op: CastLayerNorm is nn.LayerNorm
    norm, plain = CastLayerNorm(48), nn.LayerNorm(48)
    randomise_(norm)
    plain.load_state_dict(norm.state_dict())
    h = torch.randn(5, 48)
    torch.testing.assert_close(norm(h), plain(h), rtol=0, atol=0)
    assert norm(h.bfloat16()).dtype == torch.bfloat16


def test_global_ffn_width_rounds_as_the_official() -> None:
    """Official line 142: ``d_mlp = round(mlp_factor * d_model)`` (int() would truncate 25.7 to 25)."""
    assert GlobalUniBlock(10, 2, mlp_ratio=2.57).mlp.fc1.out_features == 26


def test_activation_comes_from_the_shared_table() -> None:
    assert make_act_layer("quick_gelu") is QuickGELU and ACTIVATIONS["quick_gelu"] is QuickGELU
    model = tiny()
    assert isinstance(model.blocks[0].mlp.act, QuickGELU) and isinstance(model.global_blocks[0].mlp.act, QuickGELU)
    assert isinstance(tiny(act="gelu").blocks[0].mlp.act, nn.GELU)
    x = torch.linspace(-4, 4, 9)
    torch.testing.assert_close(QuickGELU()(x), x * torch.sigmoid(1.702 * x))
    with pytest.raises(ValueError, match="unknown activation 'relu'"):
        tiny(act="relu")


def test_frozen_variant_output_and_trainable_parts() -> None:
    """``frozen=True`` (official FROZEN): logits = head(fc_norm(query)), no ``balance``, backbone frozen."""
    model = tiny(frozen=True).train()
    assert model.balance is None and "balance" not in dict(model.named_parameters())
    x = torch.randn(2, 3, 4, 32, 32)
    model(x).logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        backbone = name.split(".")[0] in ("patch_embed", "cls_token", "pos_embed", "norm_pre", "blocks")
        assert p.requires_grad is not backbone, name
        assert (p.grad is None) is backbone, name
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        torch.testing.assert_close(model(x), model.head(model.fc_norm(feats[:, 0])), rtol=0, atol=0)


def test_new_parts_start_as_the_official_initialises_them() -> None:
    """Official: classifier ``proj.2`` = nn.Linear's default (line 237, U(-1/sqrt(D), 1/sqrt(D))); Extractor
    (lines 153-159): xavier in_proj with zero bias, c_fc xavier with nn.Linear's default bias, zero out_proj /
    c_proj; DPE zero bias (line 225); LT-MHRA up-projection zero (lines 55-56); query and balance zero."""
    d = 48
    model = tiny(local_mhra="double", num_classes=7)
    bound = d**-0.5
    for p in (model.head.weight, model.head.bias, model.global_blocks[0].mlp.fc1.bias):
        assert p.abs().max() <= bound and p.std() > bound / 3  # uniform, not trunc_normal(0.02) or zeros
    g = model.global_blocks[0]
    assert not g.attn.qkv.bias.any() and not g.attn.proj.weight.any() and not g.mlp.fc2.weight.any()
    assert not g.dpe.bias.any() and g.dpe.weight.std() > 0.05  # nn.Conv3d default: U(+-1/sqrt(27))
    assert not model.blocks[0].lmhra1.pos_embed[3].weight.any()
    assert not model.temporal_cls_token.any() and not model.balance.any()
    model.reset_classifier(3)
    assert model.head.weight.shape == (3, d) and model.head.bias.abs().max() > 0
