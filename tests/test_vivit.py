"""ViViT Models 1-4 (Arnab et al. 2021, section 3.3): shapes and gradients at tiny size for both tokenisers,
which tokens each factorised step can see, and parameter / FLOP counts at paper size (Table 2)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from video_transformers.cli import read_config
from video_transformers.layers import DropPath, checkpoint_seq, set_fused_attention
from video_transformers.models import create_model, get_entry, list_models
from video_transformers.models.vivit import (
    FactorisedDotProductAttention,
    FactorisedSelfAttentionBlock,
    ViViTFactorisedDotProduct,
    ViViTFactorisedSelfAttention,
    _ViViT,
)

VIVIT = list_models("vivit_*")
TABLE2 = [n for n in VIVIT if get_entry(n).paper.get("params_m")]


def tiny(name: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=5, **{**get_entry(name).tiny, **overrides})


def test_all_four_models_registered():
    assert {
        "vivit_base_spatio_temporal_16x2",
        "vivit_base_factorised_encoder_16x2",
        "vivit_base_factorised_self_attention_16x2",
        "vivit_base_factorised_dot_product_16x2",
        "vivit_large_spatio_temporal_16x2",
        "vivit_large_factorised_encoder_16x2",
    } <= set(VIVIT)


@pytest.mark.parametrize("tubelet", [1, 2], ids=["uniform_frames", "tubelet2"])
@pytest.mark.parametrize("name", VIVIT)
def test_forward_backward_finite(name, tubelet):
    model = tiny(name, tubelet_size=tubelet, drop_path_rate=0.1, drop_rate=0.1, attn_drop_rate=0.1)
    t = 4 // tubelet
    assert model.patch_embed.grid_size == (t, 4, 4)
    x = torch.randn(2, 3, 4, 32, 32)
    out = model.train()(x)
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.patch_embed.proj.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():  # no dropout of any kind left on at eval
        assert torch.equal(model(x), model(x))


def test_stochastic_depth_rises_linearly_and_activation_is_selectable():
    model = tiny("vivit_base_factorised_self_attention_16x2", depth=3, drop_path_rate=0.2, act="gelu")
    for block, rate in zip(model.encoder.blocks, (0.0, 0.1, 0.2), strict=True):
        assert [block.drop_path1.p, block.temporal_drop_path1.p, block.drop_path2.p] == pytest.approx([rate] * 3)
    assert model.encoder.blocks[0].mlp.act.approximate == "none"
    with pytest.raises(ValueError, match="unknown activation"):
        tiny("vivit_base_spatio_temporal_16x2", act="relu6")


def _blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    return (
        list(model.spatial.blocks) + list(model.temporal.blocks)
        if hasattr(model, "spatial")
        else list(model.encoder.blocks)
    )


@pytest.mark.parametrize("name", VIVIT)
def test_defaults_follow_scenic(name):
    """scenic/projects/vivit/model.py: flax nn.gelu (tanh approximation, :255, :335), zero CLS tokens (:521,
    :599), stochastic depth without 1/keep rescaling (:246-247); its zero output projection (:556-559) is
    head_init="zeros" (the default stays timm's truncated normal, see the module docstring)."""
    with torch.device("meta"):
        model = create_model(name)
    assert all(b.mlp.act.approximate == "tanh" for b in _blocks(model))
    assert not any(m.scale_by_keep for m in model.modules() if isinstance(m, DropPath))
    model = tiny(name)
    for token in ("cls_token", "temporal_cls_token"):
        assert getattr(model, token, None) is None or not getattr(model, token).any()
    assert model.head.weight.std().item() == pytest.approx(0.02, rel=0.3)
    scenic_head = tiny(name, head_init="zeros")
    assert not scenic_head.head.weight.any() and not scenic_head.head.bias.any()
    scenic_head.reset_classifier(7)
    assert scenic_head.head.out_features == 7 and not scenic_head.head.weight.any()
    with pytest.raises(ValueError, match="head_init"):
        tiny(name, head_init="xavier")


def test_drop_path_without_rescaling_keeps_the_branch_or_drops_it():
    x = torch.rand(64, 3, 5) + 1.0
    torch.manual_seed(0)
    out = DropPath(0.5, scale_by_keep=False).train()(x)
    kept = out.flatten(1).any(1)
    assert 0 < kept.sum() < 64 and torch.equal(out[kept], x[kept])  # scenic: x * (1 - drop), no 1/keep
    torch.manual_seed(0)
    timm_style = DropPath(0.5).train()(x)  # the same mask; kept samples divided by keep = 0.5
    assert torch.allclose(timm_style[kept], 2 * x[kept]) and not timm_style[~kept].any()


@pytest.mark.parametrize("name", ["vivit_base_spatio_temporal_16x2", "vivit_base_factorised_encoder_16x2"])
def test_global_pool_avg_is_scenics_gap_classifier(name):
    """scenic's classifier='gap' (model.py:541-545, 616-620): no CLS parameters, the mean of the tokens."""
    model = tiny(name, global_pool="avg").eval()
    keys = model.state_dict().keys()
    assert not any("cls_token" in k for k in keys) and model.num_prefix_tokens == 0
    assert model.pos_embed.shape[1] == (16 if "encoder" in name else 2 * 16)
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        tokens = model.forward_features(x)
        torch.testing.assert_close(model.forward_head(tokens, pre_logits=True), tokens.mean(1))
    with pytest.raises(ValueError, match="global_pool"):
        tiny(name, global_pool="max")


def test_shared_arguments_are_in_every_signature_and_checked():
    """The models write the shared arguments once (_ViViT); each public signature still lists them all."""
    shared = set(inspect.signature(_ViViT.__init__).parameters) - {"self"}
    for name in VIVIT:
        params = inspect.signature(get_entry(name).cls.__init__).parameters
        assert shared <= set(params)
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for n, p in params.items() if n != "self")
    with pytest.raises(TypeError, match="did you mean 'embed_dim'"):
        create_model("vivit_base_factorised_dot_product_16x2", embed_dimm=64)


def test_checkpoint_seq_matches_plain_application():
    torch.manual_seed(0)
    blocks = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU()) for _ in range(5))
    x = torch.randn(3, 8, requires_grad=True)
    plain = x
    for blk in blocks:
        plain = blk(plain)
    (grad,) = torch.autograd.grad(plain.sum(), x)
    for every in (1, 2, 5):
        out = checkpoint_seq(blocks, x, every=every)
        torch.testing.assert_close(out, plain)
        torch.testing.assert_close(torch.autograd.grad(out.sum(), x)[0], grad)
    with pytest.raises(ValueError, match="every"):
        checkpoint_seq(blocks, x, every=0)


def test_no_cls_and_average_pooling_in_models_3_and_4():
    for name in ("vivit_base_factorised_self_attention_16x2", "vivit_base_factorised_dot_product_16x2"):
        model = tiny(name).eval()
        assert not hasattr(model, "cls_token") and model.pos_embed.shape == (1, 2 * 16, 64)
        x = torch.randn(1, 3, 4, 32, 32)
        with torch.no_grad():
            tokens = model.forward_features(x)
            assert torch.allclose(model.forward_head(tokens, pre_logits=True), tokens.mean(1))
    m1 = tiny("vivit_base_spatio_temporal_16x2")
    assert m1.pos_embed.shape == (1, 1 + 2 * 16, 64)  # spatio-temporal embedding over (t h w) + CLS


# -- which tokens can see which ----------------------------------------------------------------------
def _changed(a: torch.Tensor, b: torch.Tensor, dim: int) -> list[bool]:
    """Per index along ``dim``: whether ``a`` and ``b`` differ there."""
    diff = (a - b).abs().movedim(dim, 0).flatten(1).amax(1)
    return (diff > 1e-6).tolist()


def test_factorised_encoder_spatial_encoder_never_mixes_time():
    model = tiny("vivit_base_factorised_encoder_16x2").eval()
    x = torch.randn(1, 3, 4, 32, 32)
    y = x.clone()
    y[:, :, 2:4] += torch.randn_like(y[:, :, 2:4])  # frames 2-3 = temporal index 1 (tubelet 2)
    with torch.no_grad():
        fx, fy = model.forward_spatial(x), model.forward_spatial(y)  # b t d
        assert _changed(fx, fy, dim=1) == [False, True]
        # ...while the temporal encoder does mix: the CLS output moves
        assert _changed(model.forward_temporal(fx), model.forward_temporal(fy), dim=1)[0]


@pytest.fixture
def fsa_block() -> FactorisedSelfAttentionBlock:
    torch.manual_seed(0)
    return FactorisedSelfAttentionBlock(32, 4, temporal_tokens=3).eval()


def test_model3_spatial_step_never_mixes_time(fsa_block):
    t, n = 3, 5
    x = torch.randn(2, t * n, 32)
    y = x.clone()
    y[:, 1 * n + 2] += torch.randn(32)  # one token at temporal index 1
    with torch.no_grad():
        a = fsa_block.forward_spatial(x).unflatten(1, (t, n))
        b = fsa_block.forward_spatial(y).unflatten(1, (t, n))
    assert _changed(a, b, dim=1) == [False, True, False]
    assert all(_changed(a[:, 1], b[:, 1], dim=1))  # every token of that frame saw the change


def test_model3_temporal_step_never_mixes_space(fsa_block):
    t, n = 3, 5
    x = torch.randn(2, t * n, 32)
    y = x.clone()
    y[:, 0 * n + 4] += torch.randn(32)  # spatial position 4 at temporal index 0
    with torch.no_grad():
        a = fsa_block.forward_temporal(x).unflatten(1, (t, n))
        b = fsa_block.forward_temporal(y).unflatten(1, (t, n))
    assert _changed(a, b, dim=2) == [False] * 4 + [True]
    assert all(_changed(a[:, :, 4], b[:, :, 4], dim=1))  # every time step at that position saw it


def test_model3_attention_order_is_configurable():
    """scenic's attention_order: "time_space" runs the temporal step first (model.py:302-307)."""
    spatial_first = tiny("vivit_base_factorised_self_attention_16x2").eval()
    temporal_first = tiny("vivit_base_factorised_self_attention_16x2", order="temporal_first").eval()
    temporal_first.load_state_dict(spatial_first.state_dict())  # same names, same weights
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(spatial_first(x), temporal_first(x), atol=1e-5)
    with pytest.raises(ValueError, match="attention order"):
        tiny("vivit_base_factorised_self_attention_16x2", order="joint")


def _fdp_heads(attn: FactorisedDotProductAttention, q, k, v, t: int, n: int):
    """(space heads, time heads): scenic gives the first half of the heads to time (model_utils.py:120-166)."""
    with torch.no_grad():
        out = attn.attend(q, k, v)  # b heads (t n) d
    h = attn.num_heads // 2
    return out[:, h:].unflatten(2, (t, n)), out[:, :h].unflatten(2, (t, n))


def test_model4_time_heads_first_never_see_other_positions_and_space_heads_other_frames():
    t, n, heads = 3, 5, 4
    attn = FactorisedDotProductAttention(32, heads, temporal_tokens=t).eval()
    q, k, v = (torch.randn(2, heads, t * n, 8) for _ in range(3))
    space, time = _fdp_heads(attn, q, k, v, t, n)

    k2, v2 = k.clone(), v.clone()  # change the keys/values of one token: temporal index 1, position 2
    k2[:, :, 1 * n + 2] += 1.0
    v2[:, :, 1 * n + 2] += 1.0
    space2, time2 = _fdp_heads(attn, q, k2, v2, t, n)
    assert _changed(space, space2, dim=2) == [False, True, False]  # space heads: only that frame
    assert _changed(time, time2, dim=3) == [False, False, True, False, False]  # time heads: only that position
    assert all(_changed(time[:, :, :, 2], time2[:, :, :, 2], dim=2))  # ...at every time step


def test_model4_manual_attention_path_matches_sdpa():
    model = tiny("vivit_base_factorised_dot_product_16x2").eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        fused = model(x)
        set_fused_attention(model, False)
        manual = model(x)
    assert torch.allclose(fused, manual, atol=1e-5)


def test_model4_odd_head_count_is_an_error():
    with pytest.raises(ValueError, match="num_heads must be even, got 3"):
        tiny("vivit_base_factorised_dot_product_16x2", embed_dim=48, num_heads=3)
    assert isinstance(tiny("vivit_base_factorised_dot_product_16x2"), ViViTFactorisedDotProduct)


# -- paper sizes (meta device) ------------------------------------------------------------------------
@pytest.mark.parametrize("name", TABLE2)
def test_parameter_count_matches_table2(name):
    with torch.device("meta"):
        model = create_model(name)
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    # Table 2 gives one decimal (e.g. 88.9); heads for 400 classes are included
    assert params_m == pytest.approx(get_entry(name).paper["params_m"], abs=0.06)


@pytest.mark.parametrize("name", TABLE2)
def test_gflops_per_view_match_table2(name):
    """Multiply-adds of matmuls, convolutions and attention (what the paper counts as FLOPs) within 1%;
    element-wise ops (softmax, LayerNorm, GELU) are not counted, hence slightly below the paper."""
    with torch.device("meta"):
        model = create_model(name).eval()
        x = torch.empty(1, 3, 32, 224, 224)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    gmacs = counter.get_total_flops() / 2 / 1e9
    assert gmacs == pytest.approx(get_entry(name).paper["gflops"], rel=0.01)


def test_large_is_vit_large_sized():
    with torch.device("meta"):
        model = create_model("vivit_large_spatio_temporal_16x2")
    assert (model.embed_dim, len(model.encoder.blocks), model.encoder.blocks[0].attn.num_heads) == (1024, 24, 16)
    assert model.patch_embed.proj.weight.shape == (1024, 3, 2, 16, 16) and model.num_frames == 32


def test_large_factorised_encoder_is_scenics_kinetics_config():
    """scenic/projects/vivit/configs/kinetics400/vivit_large_factorised_encoder.py:87-109."""
    with torch.device("meta"):
        model = create_model("vivit_large_factorised_encoder_16x2")
    assert (model.embed_dim, len(model.spatial.blocks), len(model.temporal.blocks)) == (1024, 24, 24)
    assert model.spatial.blocks[0].attn.num_heads == 16 and model.spatial.blocks[0].mlp.fc1.out_features == 4096
    assert model.patch_embed.proj.weight.shape == (1024, 3, 2, 16, 16) and (model.num_frames, model.img_size) == (
        32,
        224,
    )


def test_model3_at_paper_size_has_temporal_attention_in_every_block():
    with torch.device("meta"):
        model = create_model("vivit_base_factorised_self_attention_16x2")
    assert isinstance(model, ViViTFactorisedSelfAttention)
    keys = model.state_dict().keys()
    assert sum(k.endswith("temporal_attn.qkv.weight") for k in keys) == 12


@pytest.mark.parametrize(
    "config",
    [
        "vivit_spatio_temporal",
        "vivit_factorised_b16x2",
        "vivit_factorised_self_attention",
        "vivit_factorised_dot_product",
    ],
)
def test_paper_configs_build_the_paper_models(config):
    path = Path(__file__).resolve().parents[1] / "configs" / f"{config}.yaml"
    written = yaml.safe_load(path.read_text())["model"]
    assert not {"num_frames", "img_size"} & set(written.get("backbone_kwargs") or {})  # linked from data
    cfg = read_config(["--config", str(path)]).as_dict()  # as vt fit reads it: the recipe it builds on included
    model_cfg, data = cfg["model"], cfg["data"]
    assert (data["num_frames"], data["crop_size"], data["dataset"]) == (32, 224, "csv")
    assert model_cfg["optimizer"]["class_path"] == "torch.optim.SGD"
    assert model_cfg["optimizer"]["init_args"]["momentum"] == 0.9
    with torch.device("meta"):
        built = create_model(
            model_cfg["backbone"],
            num_frames=data["num_frames"],
            img_size=data["crop_size"],
            **(model_cfg["backbone_kwargs"] or {}),
        )
        paper = create_model(model_cfg["backbone"])
    assert [(k, v.shape) for k, v in built.state_dict().items()] == [
        (k, v.shape) for k, v in paper.state_dict().items()
    ]
