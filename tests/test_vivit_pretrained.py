"""ViViT weights: image-ViT initialisation (Arnab et al. 2021, section 3.4) and the Hugging Face
``VivitForVideoClassification`` converter, on tiny random models (no downloads)."""

from __future__ import annotations

import json

import pytest
import timm
import torch

from video_transformers.layers import inflate_patch_weight
from video_transformers.models import create_model, get_entry
from video_transformers.pretrained.common import PretrainedError, from_pretrained
from video_transformers.pretrained.vivit import (
    expected_missing,
    factorised_self_attention_filter_fn,
    filter_fn,
    hf_normalisation,
    load_hf_vivit,
    load_image_weights,
)

TINY_VIT = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=0)


def image_vit(**kwargs) -> torch.nn.Module:
    torch.manual_seed(1)
    vit = timm.create_model("vit_base_patch16_224", pretrained=False, **{**TINY_VIT, **kwargs}).eval()
    with torch.no_grad():  # timm zero-inits some tensors; make every one informative
        for p in vit.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return vit


def video(name: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=5, **{**get_entry(name).tiny, **overrides}).eval()


def static_clip(frame: torch.Tensor, frames: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, T, H, W)``: the same frame ``frames`` times."""
    return frame.unsqueeze(2).expand(-1, -1, frames, -1, -1).contiguous()


# -- image initialisation -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, options",
    [
        ("vivit_base_spatio_temporal_16x2", {}),
        ("vivit_base_factorised_encoder_16x2", {"temporal_init": "random"}),
        ("vivit_base_factorised_encoder_16x2", {"temporal_init": "image", "cls_init": "image"}),
        ("vivit_base_factorised_self_attention_16x2", {"temporal_init": "spatial"}),
        ("vivit_base_factorised_self_attention_16x2", {"temporal_init": "identity", "inflation": "average"}),
        ("vivit_base_factorised_dot_product_16x2", {}),
    ],
)
def test_image_init_loads_with_exactly_the_expected_missing_keys(name, options):
    vit = image_vit()
    model = video(name)
    load_image_weights(model, vit.state_dict(), **options)  # asserts the exact missing / unexpected sets
    sd = model.state_dict()
    block = "spatial.blocks.1" if "encoder" in name else "encoder.blocks.1"
    assert torch.equal(sd[f"{block}.mlp.fc1.weight"], vit.blocks[1].mlp.fc1.weight)
    assert torch.equal(
        sd["patch_embed.proj.weight"],
        inflate_patch_weight(vit.patch_embed.proj.weight, 2, options.get("inflation", "central_frame")),
    )
    t = model.patch_embed.grid_size[0]
    if "cls_token" in sd and "encoder" not in name:  # Model 1: [cls, spatial repeated over time]
        assert torch.equal(sd["pos_embed"][:, 1:], vit.pos_embed[:, 1:].repeat(1, t, 1))
    elif "encoder" not in name:  # Models 3, 4: no CLS, spatial embedding repeated over time
        assert torch.equal(sd["pos_embed"], vit.pos_embed[:, 1:].repeat(1, t, 1))
    if name.endswith("self_attention_16x2"):  # scenic/projects/vivit/model_utils.py:509-534
        block = vit.blocks[0]
        assert torch.equal(sd["encoder.blocks.0.temporal_attn.qkv.weight"], block.attn.qkv.weight)
        proj = sd["encoder.blocks.0.temporal_attn.proj.weight"]
        assert torch.equal(proj, block.attn.proj.weight) if options["temporal_init"] == "spatial" else not proj.any()
        norm = sd["encoder.blocks.0.temporal_norm1.weight"]  # fresh, not the spatial norm
        assert torch.equal(norm, torch.ones(64)) and not torch.equal(norm, block.norm1.weight)
    if "encoder" in name:  # Model 2's spatial CLS: fresh (zero) as in scenic unless cls_init="image"
        image_cls = options.get("cls_init") == "image"
        assert torch.equal(sd["cls_token"], vit.cls_token) if image_cls else not sd["cls_token"].any()
    if "encoder" in name and options["temporal_init"] == "image":
        assert torch.equal(sd["temporal.blocks.0.attn.qkv.weight"], vit.blocks[0].attn.qkv.weight)


@pytest.mark.parametrize("temporal_init", ["spatial", "identity"])
def test_model3_every_temporal_weight_learns_from_image_init(temporal_init):
    """Image-initialised Model 3 must learn temporal attention: after a few AdamW steps (no weight decay, so
    only gradients move weights) every temporal parameter has changed. With an all-zero temporal MHSA (the
    former default) qkv and proj.weight got exactly zero gradient and never moved."""
    model = video("vivit_base_factorised_self_attention_16x2", head_init="zeros")  # scenic's recipe
    load_image_weights(model, image_vit().state_dict(), temporal_init=temporal_init)
    temporal = {n: p.detach().clone() for n, p in model.named_parameters() if ".temporal_" in n}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 3, 4, 32, 32, generator=g), torch.randint(0, 5, (4,), generator=g)
    model.train()
    for _ in range(4):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    moved = {n: (p - temporal[n]).abs().max().item() for n, p in model.named_parameters() if n in temporal}
    assert len(moved) == 2 * 6 and min(moved.values()) > 1e-4, moved


def test_filter_is_pure_and_resamples_position_embeddings_to_a_new_grid():
    vit = image_vit()
    sd = vit.state_dict()
    before = {k: v.clone() for k, v in sd.items()}
    model = video("vivit_base_spatio_temporal_16x2", img_size=48)  # 6x6 grid from the image's 4x4
    out = filter_fn(sd, model)
    assert all(torch.equal(sd[k], before[k]) for k in sd)  # input untouched
    assert out["pos_embed"].shape == (1, 1 + 2 * 36, 64)
    assert torch.equal(out["pos_embed"][:, 1:37], out["pos_embed"][:, 37:])  # repeated over time
    load_image_weights(model, sd)


def test_unknown_image_keys_and_mismatched_depth_are_named():
    vit = image_vit(depth=3)
    with pytest.raises(PretrainedError, match=r"encoder\.blocks\.2\."):
        load_image_weights(video("vivit_base_spatio_temporal_16x2"), vit.state_dict())
    sd = {**image_vit().state_dict(), "blocks.0.ls1.gamma": torch.ones(64)}
    with pytest.raises(PretrainedError, match=r"ls1\.gamma"):
        load_image_weights(video("vivit_base_factorised_dot_product_16x2"), sd)
    with pytest.raises(PretrainedError, match="pos_embed"):
        filter_fn({"cls_token": torch.zeros(1, 1, 64)}, video("vivit_base_spatio_temporal_16x2"))
    with pytest.raises(ValueError, match="temporal_init"):
        factorised_self_attention_filter_fn(
            image_vit().state_dict(), video("vivit_base_factorised_self_attention_16x2"), temporal_init="copy"
        )
    assert expected_missing(video("vivit_base_factorised_encoder_16x2")) == [
        "head.*",
        "cls_token",
        "temporal_cls_token",
        "temporal_pos_embed",
        "temporal.*",
    ]
    assert expected_missing(video("vivit_base_factorised_self_attention_16x2")) == [
        "head.*",
        "encoder.blocks.*.temporal_norm1.*",
    ]


# -- static-clip invariants ---------------------------------------------------------------------------
# (With timm's exact GELU, act="gelu": the ViViT default is scenic's tanh approximation.)
# A clip of one repeated frame, tubelet-embedded with central-frame (eq. 8) or average (eq. 7) inflation,
# gives every temporal index exactly the image's patch embedding of that frame (the kernel slices sum to
# the image kernel). Whether the whole model then equals the image ViT depends on how tokens mix:
#  * Model 2's spatial encoder sees one temporal index at a time, so its per-index CLS output is the image
#    ViT's CLS feature of the frame, for any t.
#  * Model 1 does so only when t = 1: for t > 1 every patch key appears t times in the joint attention while
#    the CLS key appears once, which reweights the softmax, so no exact equality holds there.
#  * Model 3 with temporal_init="identity" (zero temporal output projection): eq. 5 is the identity and the
#    spatial step is the image block on each frame; with no CLS token its tokens equal a CLS-free image ViT's.
@pytest.mark.parametrize("inflation", ["central_frame", "average"])
def test_static_clip_factorised_encoder_equals_image_vit(inflation):
    vit = image_vit()
    model = load_image_weights(
        video("vivit_base_factorised_encoder_16x2", num_frames=6, act="gelu"),  # timm's ViT: exact GELU
        vit.state_dict(),
        inflation=inflation,
        cls_init="image",
    )
    frame = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        image_cls = vit.forward_features(frame)[:, 0]
        per_index = model.forward_spatial(static_clip(frame, 6))  # b t d, t = 3
    assert per_index.shape == (2, 3, 64)
    for i in range(3):
        torch.testing.assert_close(per_index[:, i], image_cls, atol=1e-5, rtol=1e-5)


def test_static_clip_spatio_temporal_equals_image_vit_for_one_tubelet():
    vit = image_vit()
    model = load_image_weights(video("vivit_base_spatio_temporal_16x2", num_frames=2, act="gelu"), vit.state_dict())
    frame = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            model.forward_features(static_clip(frame, 2)), vit.forward_features(frame), atol=1e-5, rtol=1e-5
        )
        # ...and with two temporal indices it does not (CLS is not duplicated; see above)
        model4 = load_image_weights(video("vivit_base_spatio_temporal_16x2", act="gelu"), vit.state_dict())
        cls4 = model4.forward_features(static_clip(frame, 4))[:, 0]
    assert not torch.allclose(cls4, vit.forward_features(frame)[:, 0], atol=1e-4)


def test_static_clip_factorised_self_attention_identity_init_equals_clsfree_image_vit():
    vit = image_vit(class_token=False, global_pool="avg", fc_norm=False)
    model = load_image_weights(
        video("vivit_base_factorised_self_attention_16x2", act="gelu"), vit.state_dict(), temporal_init="identity"
    )
    frame = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = model.forward_features(static_clip(frame, 4)).unflatten(1, (2, 16))  # b t n d
        image = vit.forward_features(frame)
        pooled = model.forward_head(model.forward_features(static_clip(frame, 4)), pre_logits=True)
    for i in range(2):
        torch.testing.assert_close(tokens[:, i], image, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pooled, vit.forward_head(image, pre_logits=True), atol=1e-5, rtol=1e-5)


# -- Hugging Face ViViT -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    from transformers import VivitConfig, VivitForVideoClassification

    config = VivitConfig(
        image_size=32,
        num_frames=4,
        tubelet_size=[2, 8, 8],
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        num_labels=7,
    )
    torch.manual_seed(0)
    hf = VivitForVideoClassification(config).eval()
    with torch.no_grad():  # HF zero-inits CLS and position embeddings: randomise everything
        for p in hf.parameters():
            p.copy_(0.2 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("hf_vivit")
    hf.save_pretrained(folder)
    return folder, hf


def _hf_input() -> torch.Tensor:
    torch.manual_seed(3)
    return torch.randn(2, 4, 3, 32, 32)  # HF input: (B, T, C, H, W)


def test_hf_parity(hf_folder):
    folder, hf = hf_folder
    assert hf.config.hidden_act == "gelu_fast" and hf.config.layer_norm_eps == 1e-6
    model = load_hf_vivit(folder)
    assert model.encoder.blocks[0].mlp.act.approximate == "tanh" and model.encoder.norm.eps == 1e-6
    x = _hf_input()
    with torch.no_grad():
        ref = hf(pixel_values=x, output_hidden_states=False)
        ref_feats = hf.vivit(pixel_values=x).last_hidden_state
        ours = model(x.permute(0, 2, 1, 3, 4))  # ours: (B, C, T, H, W)
        feats = model.forward_features(x.permute(0, 2, 1, 3, 4))
    diff = (ours - ref.logits).abs().max().item()
    assert diff <= 1e-4, f"logits max abs diff {diff:.2e}"
    assert (feats - ref_feats).abs().max().item() <= 1e-4
    assert model.class_names == [hf.config.id2label[i] for i in range(7)]
    assert (model.mean, model.std) == ((0.5,) * 3, (0.5,) * 3)  # no preprocessor config: [-1, 1]


def test_hf_old_key_layout_and_from_pretrained(hf_folder, tmp_path):
    """The hub checkpoints use transformers-4 names (encoder.layer.i.attention.attention.query, ...)."""
    from safetensors.torch import load_file, save_file

    folder, hf = hf_folder
    sd = load_file(str(folder / "model.safetensors"))
    old = {}
    for k, v in sd.items():
        k = k.replace("vivit.layers.", "vivit.encoder.layer.")
        for new, was in [("q_proj", "attention.query"), ("k_proj", "attention.key"), ("v_proj", "attention.value")]:
            k = k.replace(f"attention.{new}", f"attention.{was}")
        k = k.replace("attention.o_proj", "attention.output.dense").replace("mlp.fc1", "intermediate.dense")
        old[k.replace("mlp.fc2", "output.dense")] = v.contiguous()
    assert "vivit.encoder.layer.0.attention.attention.query.weight" in old
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    save_file(old, str(tmp_path / "model.safetensors"))
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"do_rescale": True, "rescale_factor": 1 / 127.5, "offset": True, "do_normalize": False})
    )
    model = from_pretrained(tmp_path)  # format detected from config.json's model_type
    x = _hf_input()
    with torch.no_grad():
        diff = (model(x.permute(0, 2, 1, 3, 4)) - hf(pixel_values=x).logits).abs().max().item()
    assert diff <= 1e-4 and not model.training
    assert model.mean == pytest.approx((0.5,) * 3) and model.std == pytest.approx((0.5,) * 3)
    # fine-tuning on another label set: only the classifier is new
    new = load_hf_vivit(tmp_path, num_classes=3)
    assert new.head.out_features == 3 and new.class_names is None


def test_hf_preprocessor_config_sets_the_normalisation(tmp_path):
    # rescale 1/127.5 with offset, then normalize by 0.5/0.5: [-1, 1] -> [-3, 1], i.e. mean 0.75, std 0.25 on [0, 1]
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "rescale_factor": 1 / 127.5,
                "offset": True,
                "do_normalize": True,
                "image_mean": [0.5] * 3,
                "image_std": [0.5] * 3,
            }
        )
    )
    mean, std = hf_normalisation(tmp_path)
    assert mean == pytest.approx((0.75,) * 3) and std == pytest.approx((0.25,) * 3)
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"rescale_factor": 1 / 255, "offset": False, "image_mean": [0.45] * 3, "image_std": [0.225] * 3})
    )
    mean, std = hf_normalisation(tmp_path)
    assert mean == pytest.approx((0.45,) * 3) and std == pytest.approx((0.225,) * 3)
