"""TimeSformer (Bertasius et al. 2021): every scheme runs, each scheme's attention pattern (which tokens can
see which), the divided block against a transcription of the official block, and Table 1 parameter counts."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
import yaml
from einops import rearrange
from torch import nn

from video_transformers.cli import read_config
from video_transformers.data import VideoDataModule
from video_transformers.layers import set_fused_attention
from video_transformers.models import create_model, get_entry, list_models
from video_transformers.models.timesformer import (
    SCHEMES,
    AxialBlock,
    DividedSpaceTimeBlock,
    LocalGlobalBlock,
    TimeSformer,
    resample_pos_embed_nearest,
    resample_time_embed_nearest,
)

TINY = dict(img_size=32, num_frames=4, patch_size=8, embed_dim=32, depth=2, num_heads=4, num_classes=5)
GRID = (4, 4, 4)  # (t, h, w) tokens of a 4 x 32 x 32 clip with 8 px patches


def tiny(attention_type: str, **kw) -> TimeSformer:  # noqa: ANN003
    return TimeSformer(**{**TINY, "attention_type": attention_type, **kw})


def randomise_fc(block: nn.Module) -> None:
    """Give the zero-initialised ``*_fc`` layers random weights so their steps are not identities."""
    for name, m in block.named_children():
        if name.endswith("_fc"):
            nn.init.normal_(m.weight, std=0.2)


def changed_positions(block_step, x: torch.Tensor, pos: tuple[int, int, int]) -> torch.Tensor:  # noqa: ANN001
    """Boolean ``(t, h, w)`` grid of patch outputs that change when the patch at ``pos`` is perturbed."""
    t, h, w = GRID
    idx = (pos[0] * h + pos[1]) * w + pos[2]
    x2 = x.clone()
    x2[:, idx] += torch.randn_like(x2[:, idx])
    with torch.no_grad():
        delta = (block_step(x2) - block_step(x)).abs().amax(dim=(0, 2))
    return rearrange(delta > 1e-6, "(t h w) -> t h w", t=t, h=h, w=w)


# -- every registered variant runs ---------------------------------------------------------------------
@pytest.mark.parametrize("name", list_models("timesformer*"))
def test_forward_backward_finite(name: str) -> None:
    torch.manual_seed(0)
    entry = get_entry(name)
    model = create_model(name, num_classes=5, drop_path_rate=0.1, attn_drop_rate=0.1, drop_rate=0.1, **entry.tiny)
    model.train()
    x = torch.randn(2, 3, model.num_frames, model.img_size, model.img_size)
    logits = model(x)
    assert logits.shape == (2, 5)
    logits.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert torch.isfinite(logits).all()


def test_eval_deterministic_and_grad_checkpointing_equal() -> None:
    torch.manual_seed(0)
    model = tiny("divided_space_time", drop_path_rate=0.2, attn_drop_rate=0.2)
    x = torch.randn(2, 3, 4, 32, 32)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(1)
    ref = model(x)
    model.set_grad_checkpointing(True)
    torch.manual_seed(1)
    torch.testing.assert_close(model(x), ref)


def test_manual_attention_path_matches_sdpa() -> None:
    torch.manual_seed(0)
    model = tiny("divided_space_time").eval()
    x = torch.randn(2, 3, 4, 32, 32)
    fused = model(x)
    set_fused_attention(model, False)
    torch.testing.assert_close(model(x), fused, atol=1e-5, rtol=1e-5)


def test_token_grid_follows_the_input_size() -> None:
    """The model runs at any size (vit.py:255-287): its grid is the input's, not the embeddings' nominal one."""
    model = tiny("divided_space_time")
    assert model.token_grid() == (4, 4, 4)
    assert model.token_grid((1, 3, 6, 48, 40)) == (6, 6, 5)


def test_drop_path_rises_linearly() -> None:
    model = tiny("divided_space_time", depth=3, drop_path_rate=0.3)
    for drop_path in ("drop_path1", "drop_path2"):  # after the attention steps, after the MLP
        assert [getattr(blk, drop_path).p for blk in model.blocks] == pytest.approx([0.0, 0.15, 0.3])


def test_unknown_scheme_and_odd_grid_are_rejected() -> None:
    with pytest.raises(ValueError, match="attention_type 'spacetime'"):
        tiny("spacetime")
    with pytest.raises(ValueError, match="even token grid"):
        tiny("local_global", num_frames=3)


# -- other frame counts and sizes (official forward, vit.py:255-287) -----------------------------------
@pytest.mark.parametrize("attention_type", sorted(SCHEMES))
def test_runs_at_other_frame_counts_and_sizes(attention_type: str) -> None:
    """Like the official model, any T and any frame size (the official-code logits at other sizes are in
    test_timesformer_pretrained.py); at the construction size nothing is resampled."""
    torch.manual_seed(0)
    model = tiny(attention_type).eval()
    shapes = [(8, 32, 32), (2, 48, 48), (6, 32, 48)]
    if attention_type != "local_global":  # L+G needs an even token grid
        shapes += [(3, 32, 32), (4, 24, 40)]
    with torch.no_grad():
        for t, h, w in shapes:
            out = model(torch.randn(1, 3, t, h, w))
            assert out.shape == (1, 5) and torch.isfinite(out).all(), (t, h, w)
    assert resample_pos_embed_nearest(model.pos_embed, (4, 4)) is model.pos_embed
    if model.time_embed is not None:
        assert resample_time_embed_nearest(model.time_embed, 4) is model.time_embed
    if attention_type == "local_global":
        with pytest.raises(ValueError, match="even token grid"):
            model(torch.randn(1, 3, 3, 32, 32))


def test_nearest_resampling_is_the_official_one() -> None:
    """torch's ``mode="nearest"`` (index ``floor(i * in / out)``), as vit.py:263 and 281, with the CLS
    position kept: 4 -> 3 frames keeps frames 0, 1, 2 (``nearest-exact`` would keep 0, 2, 3)."""
    time_embed = torch.arange(4.0).reshape(1, 4, 1).expand(1, 4, 2)
    assert resample_time_embed_nearest(time_embed, 3)[0, :, 0].tolist() == [0.0, 1.0, 2.0]
    assert resample_time_embed_nearest(time_embed, 8)[0, :, 0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    pos_embed = torch.arange(5.0).reshape(1, 5, 1)  # CLS, then a 2x2 grid
    out = resample_pos_embed_nearest(pos_embed, (2, 4))[0, :, 0]
    assert out.tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4]


# -- attention patterns: which tokens each step lets a token see ---------------------------------------
def test_space_only_never_mixes_frames() -> None:
    torch.manual_seed(0)
    model = tiny("space_only").eval()
    assert model.time_embed is None
    x = torch.randn(2, 3, 4, 32, 32)
    x2 = x.clone()
    x2[:, :, 1] += torch.randn_like(x2[:, :, 1])
    with torch.no_grad():
        a, b = (rearrange(model.forward_tokens(v), "(b t) n d -> b t n d", b=2) for v in (x, x2))
    changed = (a - b).abs().amax(dim=(0, 2, 3)) > 1e-6
    assert changed.tolist() == [False, True, False, False]
    # ... and the clip features are the frame average (before the final norm), as the official model.
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), model.norm(a.mean(1)))


def test_joint_attention_mixes_all_tokens() -> None:
    torch.manual_seed(0)
    blk = tiny("joint_space_time").blocks[0].eval()
    x = torch.randn(2, 1 + 64, 32)
    changed = changed_positions(lambda v: blk(torch.cat([x[:, :1], v], 1), GRID)[:, 1:], x[:, 1:], (1, 2, 3))
    assert changed.all()


def test_divided_temporal_step_never_mixes_spatial_positions() -> None:
    torch.manual_seed(0)
    blk = tiny("divided_space_time").blocks[0].eval()
    assert isinstance(blk, DividedSpaceTimeBlock)
    randomise_fc(blk)
    x = torch.randn(2, 64, 32)
    changed = changed_positions(lambda v: blk.temporal(v, GRID), x, (1, 2, 3))
    expected = torch.zeros(GRID, dtype=torch.bool)
    expected[:, 2, 3] = True  # the same spatial position in every frame, nothing else
    assert torch.equal(changed, expected)


def test_divided_block_spatial_step_stays_within_frame() -> None:
    """Without the temporal step (zero temporal_fc), a divided block only mixes patches of one frame."""
    torch.manual_seed(0)
    blk = tiny("divided_space_time").blocks[0].eval()
    cls = torch.randn(2, 1, 32)
    x = torch.randn(2, 64, 32)
    changed = changed_positions(lambda v: blk(torch.cat([cls, v], 1), GRID)[:, 1:], x, (1, 2, 3))
    expected = torch.zeros(GRID, dtype=torch.bool)
    expected[1] = True
    assert torch.equal(changed, expected)


@pytest.mark.parametrize(
    ("step", "axis"),
    [("temporal", "t"), ("width", "w"), ("height", "h")],
)
def test_axial_steps_mix_only_along_their_axis(step: str, axis: str) -> None:
    torch.manual_seed(0)
    blk = tiny("axial").blocks[0].eval()
    assert isinstance(blk, AxialBlock)
    randomise_fc(blk)
    cls = torch.randn(2, 1, 32)
    fns = {
        "temporal": lambda v: blk.temporal(v, GRID),
        "width": lambda v: blk.width(v, GRID),
        "height": lambda v: blk.height(cls, v, GRID)[:, 1:],
    }
    pos = (1, 2, 3)
    changed = changed_positions(fns[step], torch.randn(2, 64, 32), pos)
    expected = torch.zeros(GRID, dtype=torch.bool)
    index = list(pos)
    index["thw".index(axis)] = slice(None)
    expected[tuple(index)] = True
    assert torch.equal(changed, expected)


def test_local_global_local_step_sees_only_its_neighbourhood() -> None:
    torch.manual_seed(0)
    blk = tiny("local_global").blocks[0].eval()
    assert isinstance(blk, LocalGlobalBlock)
    randomise_fc(blk)
    changed = changed_positions(lambda v: blk.local(v, GRID), torch.randn(2, 64, 32), (1, 2, 3))
    expected = torch.zeros(GRID, dtype=torch.bool)
    expected[:, 2:4, 2:4] = True  # the F x H/2 x W/2 quadrant holding (h=2, w=3), every frame
    assert torch.equal(changed, expected)


def test_local_global_global_step_is_stride_two_over_the_clip() -> None:
    torch.manual_seed(0)
    blk = tiny("local_global").blocks[0].eval()
    cls = torch.randn(2, 1, 32)
    changed = changed_positions(lambda v: blk.glob(cls, v, GRID)[:, 1:], torch.randn(2, 64, 32), (1, 2, 3))
    expected = torch.zeros(GRID, dtype=torch.bool)
    expected[1::2, 0::2, 1::2] = True  # same (t, h, w) parity as (1, 2, 3), anywhere in the clip
    assert torch.equal(changed, expected)


# -- initialisation -------------------------------------------------------------------------------------
@pytest.mark.parametrize("attention_type", ["divided_space_time", "axial", "local_global"])
def test_new_branches_are_zero_initialised_identities(attention_type: str) -> None:
    torch.manual_seed(0)
    model = tiny(attention_type)
    x = torch.randn(2, 64, 32)
    for blk in model.blocks:
        fcs = [m for n, m in blk.named_children() if n.endswith("_fc")]
        assert fcs and all(not m.weight.any() and not m.bias.any() for m in fcs)
        for name in ("temporal", "width", "local"):
            if hasattr(blk, name):
                torch.testing.assert_close(getattr(blk, name)(x, GRID), x, atol=0, rtol=0)


@pytest.mark.parametrize("attention_type", ["joint_space_time", "divided_space_time", "axial"])
def test_official_init_is_blind_to_frame_order_and_embed_init_std_is_not(attention_type: str) -> None:
    """Official init: zero ``time_embed``, so at step 0 a clip and its time reversal give the same logits
    (why from-scratch runs need ``embed_init_std``); with it, both embeddings are drawn at that std."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 32, 32)
    official = tiny(attention_type, drop_path_rate=0.0).eval()
    assert not official.time_embed.any() and 0.01 < official.pos_embed.std() < 0.03
    cls = lambda m, v: m.pool(m.forward_features(v))  # the pooled features the head reads
    with torch.no_grad():
        torch.testing.assert_close(cls(official, x), cls(official, x.flip(2)), atol=1e-5, rtol=0)
    scratch = tiny(attention_type, drop_path_rate=0.0, embed_init_std=0.3).eval()
    assert 0.2 < scratch.time_embed.std() < 0.4 and 0.2 < scratch.pos_embed.std() < 0.4
    assert scratch.time_embed.abs().max() <= 0.9 + 1e-6  # truncated at 3 std
    with torch.no_grad():
        assert (cls(scratch, x) - cls(scratch, x.flip(2))).abs().max() > 1e-3  # >= 1.8e-3 measured, 100x the tolerance


# -- the divided block equals the official one (transcribed from TimeSformer/timesformer/models/vit.py) ----
def official_divided_block(blk: DividedSpaceTimeBlock, x: torch.Tensor, b: int, t: int, w: int) -> torch.Tensor:
    """``Block.forward`` of the official code (tokens in ``(h w t)`` order), on ``blk``'s weights, eval mode."""
    h = (x.size(1) - 1) // t // w
    xt = x[:, 1:, :]
    xt = rearrange(xt, "b (h w t) m -> (b h w) t m", b=b, h=h, w=w, t=t)
    res_temporal = blk.temporal_attn(blk.temporal_norm1(xt))
    res_temporal = rearrange(res_temporal, "(b h w) t m -> b (h w t) m", b=b, h=h, w=w, t=t)
    res_temporal = blk.temporal_fc(res_temporal)
    xt = x[:, 1:, :] + res_temporal
    init_cls_token = x[:, 0, :].unsqueeze(1)
    cls_token = init_cls_token.repeat(1, t, 1)
    cls_token = rearrange(cls_token, "b t m -> (b t) m", b=b, t=t).unsqueeze(1)
    xs = rearrange(xt, "b (h w t) m -> (b t) (h w) m", b=b, h=h, w=w, t=t)
    xs = torch.cat((cls_token, xs), 1)
    res_spatial = blk.attn(blk.norm1(xs))
    cls_token = res_spatial[:, 0, :]
    cls_token = rearrange(cls_token, "(b t) m -> b t m", b=b, t=t)
    cls_token = torch.mean(cls_token, 1, True)
    res_spatial = res_spatial[:, 1:, :]
    res_spatial = rearrange(res_spatial, "(b t) (h w) m -> b (h w t) m", b=b, h=h, w=w, t=t)
    x = torch.cat((init_cls_token, xt), 1) + torch.cat((cls_token, res_spatial), 1)
    return x + blk.mlp(blk.norm2(x))


def test_divided_block_equals_official_block() -> None:
    torch.manual_seed(0)
    blk = tiny("divided_space_time").blocks[1].eval()
    randomise_fc(blk)
    t, h, w = GRID
    ours = torch.randn(2, 1 + t * h * w, 32)
    cls, patches = ours[:, :1], ours[:, 1:]
    official = torch.cat([cls, rearrange(patches, "b (t h w) d -> b (h w t) d", t=t, h=h, w=w)], 1)
    with torch.no_grad():
        out = blk(ours, GRID)
        ref = official_divided_block(blk, official, b=2, t=t, w=w)
    torch.testing.assert_close(out[:, :1], ref[:, :1], atol=1e-5, rtol=1e-5)
    ref_patches = rearrange(ref[:, 1:], "b (h w t) d -> b (t h w) d", t=t, h=h, w=w)
    torch.testing.assert_close(out[:, 1:], ref_patches, atol=1e-5, rtol=1e-5)


# -- paper sizes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list_models("timesformer*"))
def test_parameter_count_matches_paper(name: str) -> None:
    """Table 1 (8x224, K400 head): S 85.9M, ST 85.9M, T+S 121.4M, L+G 121.4M within 0.5%; T+W+H 156.3M
    within 1% (our reading has 157.0M). HR and L keep the T+S backbone (Table 3: 121.4M for both); HR's
    28x28 pos_embed adds 0.46M (0.51%) that the paper's figure leaves out, so it gets 1%."""
    entry = get_entry(name)
    with torch.device("meta"):
        model = create_model(name)
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    tol = 0.01 if "axial" in name or name.startswith("timesformer_hr") else 0.005
    assert params_m == pytest.approx(entry.paper["params_m"], rel=tol), params_m


# -- configs --------------------------------------------------------------------------------------------
CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("timesformer_*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_is_the_registered_paper_model(path: Path) -> None:
    """Each config builds its registered paper-size model from the data sizes it links into the model."""
    written = yaml.safe_load(path.read_text())
    assert not {"num_frames", "img_size"} & (set(written["model"]) | set(written["model"].get("backbone_kwargs") or {}))
    cfg = read_config(["--config", str(path)]).as_dict()  # as vt fit reads it: the recipe it builds on included
    model_cfg, data = cfg["model"], cfg["data"]
    entry = get_entry(model_cfg["backbone"])
    assert (data["num_frames"], data["crop_size"]) == (entry.defaults["num_frames"], entry.defaults["img_size"])
    assert model_cfg["optimizer"]["class_path"] == "torch.optim.SGD"
    assert set(data) <= set(inspect.signature(VideoDataModule.__init__).parameters)  # no dataset at hand here
    with torch.device("meta"):
        create_model(model_cfg["backbone"], num_classes=400, **(model_cfg["backbone_kwargs"] or {}))
