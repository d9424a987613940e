"""UniFormerV2 weights: CLIP init from a timm-layout file (documented initial output) and the official
checkpoint layout (published key list, every key consumed, outputs equal)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from video_transformers.models import create_model
from video_transformers.models.uniformerv2 import CLIP_MEAN, UNIFORMERV2_MEAN, UniFormerV2
from video_transformers.pretrained import PretrainedError, from_pretrained
from video_transformers.pretrained.uniformerv2 import (
    clip_filter_fn,
    infer_official_config,
    init_from_clip,
    load_official,
)

# Keys and shapes of an official-layout checkpoint for: width 96, 4 layers, 4 heads, patch 16, 64 px, 8 frames,
# temporal down-sampling, double local MHRA, global UniBlocks on layers [2, 3], 7 classes
# (copied from the project's reference file shared/reference/uniformerv2_official_keys.txt).
OFFICIAL_KEYS = """
backbone.class_embedding	(96,)
backbone.positional_embedding	(17, 96)
backbone.conv1.weight	(96, 3, 3, 16, 16)
backbone.ln_pre.weight	(96,)
backbone.ln_pre.bias	(96,)
backbone.transformer.temporal_cls_token	(1, 1, 96)
backbone.transformer.balance	(96,)
backbone.transformer.resblocks.0.lmhra1.pos_embed.0.weight	(96,)
backbone.transformer.resblocks.0.lmhra1.pos_embed.0.bias	(96,)
backbone.transformer.resblocks.0.lmhra1.pos_embed.0.running_mean	(96,)
backbone.transformer.resblocks.0.lmhra1.pos_embed.0.running_var	(96,)
backbone.transformer.resblocks.0.lmhra1.pos_embed.0.num_batches_tracked	()
backbone.transformer.resblocks.0.lmhra1.pos_embed.1.weight	(64, 96, 1, 1, 1)
backbone.transformer.resblocks.0.lmhra1.pos_embed.1.bias	(64,)
backbone.transformer.resblocks.0.lmhra1.pos_embed.2.weight	(64, 1, 3, 1, 1)
backbone.transformer.resblocks.0.lmhra1.pos_embed.2.bias	(64,)
backbone.transformer.resblocks.0.lmhra1.pos_embed.3.weight	(96, 64, 1, 1, 1)
backbone.transformer.resblocks.0.lmhra1.pos_embed.3.bias	(96,)
backbone.transformer.resblocks.0.lmhra2.pos_embed.0.weight	(96,)
backbone.transformer.resblocks.0.lmhra2.pos_embed.0.bias	(96,)
backbone.transformer.resblocks.0.lmhra2.pos_embed.0.running_mean	(96,)
backbone.transformer.resblocks.0.lmhra2.pos_embed.0.running_var	(96,)
backbone.transformer.resblocks.0.lmhra2.pos_embed.0.num_batches_tracked	()
backbone.transformer.resblocks.0.lmhra2.pos_embed.1.weight	(64, 96, 1, 1, 1)
backbone.transformer.resblocks.0.lmhra2.pos_embed.1.bias	(64,)
backbone.transformer.resblocks.0.lmhra2.pos_embed.2.weight	(64, 1, 3, 1, 1)
backbone.transformer.resblocks.0.lmhra2.pos_embed.2.bias	(64,)
backbone.transformer.resblocks.0.lmhra2.pos_embed.3.weight	(96, 64, 1, 1, 1)
backbone.transformer.resblocks.0.lmhra2.pos_embed.3.bias	(96,)
backbone.transformer.resblocks.0.attn.in_proj_weight	(288, 96)
backbone.transformer.resblocks.0.attn.in_proj_bias	(288,)
backbone.transformer.resblocks.0.attn.out_proj.weight	(96, 96)
backbone.transformer.resblocks.0.attn.out_proj.bias	(96,)
backbone.transformer.resblocks.0.ln_1.weight	(96,)
backbone.transformer.resblocks.0.ln_1.bias	(96,)
backbone.transformer.resblocks.0.mlp.c_fc.weight	(384, 96)
backbone.transformer.resblocks.0.mlp.c_fc.bias	(384,)
backbone.transformer.resblocks.0.mlp.c_proj.weight	(96, 384)
backbone.transformer.resblocks.0.mlp.c_proj.bias	(96,)
backbone.transformer.resblocks.0.ln_2.weight	(96,)
backbone.transformer.resblocks.0.ln_2.bias	(96,)
backbone.transformer.resblocks.1.lmhra1.pos_embed.0.weight	(96,)
backbone.transformer.resblocks.1.lmhra1.pos_embed.0.bias	(96,)
backbone.transformer.resblocks.1.lmhra1.pos_embed.0.running_mean	(96,)
backbone.transformer.resblocks.1.lmhra1.pos_embed.0.running_var	(96,)
backbone.transformer.resblocks.1.lmhra1.pos_embed.0.num_batches_tracked	()
backbone.transformer.resblocks.1.lmhra1.pos_embed.1.weight	(64, 96, 1, 1, 1)
backbone.transformer.resblocks.1.lmhra1.pos_embed.1.bias	(64,)
backbone.transformer.resblocks.1.lmhra1.pos_embed.2.weight	(64, 1, 3, 1, 1)
backbone.transformer.resblocks.1.lmhra1.pos_embed.2.bias	(64,)
backbone.transformer.resblocks.1.lmhra1.pos_embed.3.weight	(96, 64, 1, 1, 1)
backbone.transformer.resblocks.1.lmhra1.pos_embed.3.bias	(96,)
backbone.transformer.resblocks.1.lmhra2.pos_embed.0.weight	(96,)
backbone.transformer.resblocks.1.lmhra2.pos_embed.0.bias	(96,)
backbone.transformer.resblocks.1.lmhra2.pos_embed.0.running_mean	(96,)
backbone.transformer.resblocks.1.lmhra2.pos_embed.0.running_var	(96,)
backbone.transformer.resblocks.1.lmhra2.pos_embed.0.num_batches_tracked	()
backbone.transformer.resblocks.1.lmhra2.pos_embed.1.weight	(64, 96, 1, 1, 1)
backbone.transformer.resblocks.1.lmhra2.pos_embed.1.bias	(64,)
backbone.transformer.resblocks.1.lmhra2.pos_embed.2.weight	(64, 1, 3, 1, 1)
backbone.transformer.resblocks.1.lmhra2.pos_embed.2.bias	(64,)
backbone.transformer.resblocks.1.lmhra2.pos_embed.3.weight	(96, 64, 1, 1, 1)
backbone.transformer.resblocks.1.lmhra2.pos_embed.3.bias	(96,)
backbone.transformer.resblocks.1.attn.in_proj_weight	(288, 96)
backbone.transformer.resblocks.1.attn.in_proj_bias	(288,)
backbone.transformer.resblocks.1.attn.out_proj.weight	(96, 96)
backbone.transformer.resblocks.1.attn.out_proj.bias	(96,)
backbone.transformer.resblocks.1.ln_1.weight	(96,)
backbone.transformer.resblocks.1.ln_1.bias	(96,)
backbone.transformer.resblocks.1.mlp.c_fc.weight	(384, 96)
backbone.transformer.resblocks.1.mlp.c_fc.bias	(384,)
backbone.transformer.resblocks.1.mlp.c_proj.weight	(96, 384)
backbone.transformer.resblocks.1.mlp.c_proj.bias	(96,)
backbone.transformer.resblocks.1.ln_2.weight	(96,)
backbone.transformer.resblocks.1.ln_2.bias	(96,)
backbone.transformer.resblocks.2.lmhra1.pos_embed.0.weight	(96,)
backbone.transformer.resblocks.2.lmhra1.pos_embed.0.bias	(96,)
backbone.transformer.resblocks.2.lmhra1.pos_embed.0.running_mean	(96,)
backbone.transformer.resblocks.2.lmhra1.pos_embed.0.running_var	(96,)
backbone.transformer.resblocks.2.lmhra1.pos_embed.0.num_batches_tracked	()
backbone.transformer.resblocks.2.lmhra1.pos_embed.1.weight	(64, 96, 1, 1, 1)
backbone.transformer.resblocks.2.lmhra1.pos_embed.1.bias	(64,)
backbone.transformer.resblocks.2.lmhra1.pos_embed.2.weight	(64, 1, 3, 1, 1)
backbone.transformer.resblocks.2.lmhra1.pos_embed.2.bias	(64,)
backbone.transformer.resblocks.2.lmhra1.pos_embed.3.weight	(96, 64, 1, 1, 1)
backbone.transformer.resblocks.2.lmhra1.pos_embed.3.bias	(96,)
backbone.transformer.resblocks.2.lmhra2.pos_embed.0.weight	(96,)
backbone.transformer.resblocks.2.lmhra2.pos_embed.0.bias	(96,)
backbone.transformer.resblocks.2.lmhra2.pos_embed.0.running_mean	(96,)
backbone.transformer.resblocks.2.lmhra2.pos_embed.0.running_var	(96,)
backbone.transformer.resblocks.2.lmhra2.pos_embed.0.num_batches_tracked	()
backbone.transformer.resblocks.2.lmhra2.pos_embed.1.weight	(64, 96, 1, 1, 1)
backbone.transformer.resblocks.2.lmhra2.pos_embed.1.bias	(64,)
backbone.transformer.resblocks.2.lmhra2.pos_embed.2.weight	(64, 1, 3, 1, 1)
backbone.transformer.resblocks.2.lmhra2.pos_embed.2.bias	(64,)
backbone.transformer.resblocks.2.lmhra2.pos_embed.3.weight	(96, 64, 1, 1, 1)
backbone.transformer.resblocks.2.lmhra2.pos_embed.3.bias	(96,)
backbone.transformer.resblocks.2.attn.in_proj_weight	(288, 96)
backbone.transformer.resblocks.2.attn.in_proj_bias	(288,)
backbone.transformer.resblocks.2.attn.out_proj.weight	(96, 96)
backbone.transformer.resblocks.2.attn.out_proj.bias	(96,)
backbone.transformer.resblocks.2.ln_1.weight	(96,)
backbone.transformer.resblocks.2.ln_1.bias	(96,)
backbone.transformer.resblocks.2.mlp.c_fc.weight	(384, 96)
backbone.transformer.resblocks.2.mlp.c_fc.bias	(384,)
backbone.transformer.resblocks.2.mlp.c_proj.weight	(96, 384)
backbone.transformer.resblocks.2.mlp.c_proj.bias	(96,)
backbone.transformer.resblocks.2.ln_2.weight	(96,)
backbone.transformer.resblocks.2.ln_2.bias	(96,)
backbone.transformer.resblocks.3.lmhra1.pos_embed.0.weight	(96,)
backbone.transformer.resblocks.3.lmhra1.pos_embed.0.bias	(96,)
backbone.transformer.resblocks.3.lmhra1.pos_embed.0.running_mean	(96,)
backbone.transformer.resblocks.3.lmhra1.pos_embed.0.running_var	(96,)
backbone.transformer.resblocks.3.lmhra1.pos_embed.0.num_batches_tracked	()
backbone.transformer.resblocks.3.lmhra1.pos_embed.1.weight	(64, 96, 1, 1, 1)
backbone.transformer.resblocks.3.lmhra1.pos_embed.1.bias	(64,)
backbone.transformer.resblocks.3.lmhra1.pos_embed.2.weight	(64, 1, 3, 1, 1)
backbone.transformer.resblocks.3.lmhra1.pos_embed.2.bias	(64,)
backbone.transformer.resblocks.3.lmhra1.pos_embed.3.weight	(96, 64, 1, 1, 1)
backbone.transformer.resblocks.3.lmhra1.pos_embed.3.bias	(96,)
backbone.transformer.resblocks.3.lmhra2.pos_embed.0.weight	(96,)
backbone.transformer.resblocks.3.lmhra2.pos_embed.0.bias	(96,)
backbone.transformer.resblocks.3.lmhra2.pos_embed.0.running_mean	(96,)
backbone.transformer.resblocks.3.lmhra2.pos_embed.0.running_var	(96,)
backbone.transformer.resblocks.3.lmhra2.pos_embed.0.num_batches_tracked	()
backbone.transformer.resblocks.3.lmhra2.pos_embed.1.weight	(64, 96, 1, 1, 1)
backbone.transformer.resblocks.3.lmhra2.pos_embed.1.bias	(64,)
backbone.transformer.resblocks.3.lmhra2.pos_embed.2.weight	(64, 1, 3, 1, 1)
backbone.transformer.resblocks.3.lmhra2.pos_embed.2.bias	(64,)
backbone.transformer.resblocks.3.lmhra2.pos_embed.3.weight	(96, 64, 1, 1, 1)
backbone.transformer.resblocks.3.lmhra2.pos_embed.3.bias	(96,)
backbone.transformer.resblocks.3.attn.in_proj_weight	(288, 96)
backbone.transformer.resblocks.3.attn.in_proj_bias	(288,)
backbone.transformer.resblocks.3.attn.out_proj.weight	(96, 96)
backbone.transformer.resblocks.3.attn.out_proj.bias	(96,)
backbone.transformer.resblocks.3.ln_1.weight	(96,)
backbone.transformer.resblocks.3.ln_1.bias	(96,)
backbone.transformer.resblocks.3.mlp.c_fc.weight	(384, 96)
backbone.transformer.resblocks.3.mlp.c_fc.bias	(384,)
backbone.transformer.resblocks.3.mlp.c_proj.weight	(96, 384)
backbone.transformer.resblocks.3.mlp.c_proj.bias	(96,)
backbone.transformer.resblocks.3.ln_2.weight	(96,)
backbone.transformer.resblocks.3.ln_2.bias	(96,)
backbone.transformer.dpe.0.weight	(96, 1, 3, 3, 3)
backbone.transformer.dpe.0.bias	(96,)
backbone.transformer.dpe.1.weight	(96, 1, 3, 3, 3)
backbone.transformer.dpe.1.bias	(96,)
backbone.transformer.dec.0.attn.in_proj_weight	(288, 96)
backbone.transformer.dec.0.attn.in_proj_bias	(288,)
backbone.transformer.dec.0.attn.out_proj.weight	(96, 96)
backbone.transformer.dec.0.attn.out_proj.bias	(96,)
backbone.transformer.dec.0.ln_1.weight	(96,)
backbone.transformer.dec.0.ln_1.bias	(96,)
backbone.transformer.dec.0.mlp.c_fc.weight	(384, 96)
backbone.transformer.dec.0.mlp.c_fc.bias	(384,)
backbone.transformer.dec.0.mlp.c_proj.weight	(96, 384)
backbone.transformer.dec.0.mlp.c_proj.bias	(96,)
backbone.transformer.dec.0.ln_2.weight	(96,)
backbone.transformer.dec.0.ln_2.bias	(96,)
backbone.transformer.dec.0.ln_3.weight	(96,)
backbone.transformer.dec.0.ln_3.bias	(96,)
backbone.transformer.dec.1.attn.in_proj_weight	(288, 96)
backbone.transformer.dec.1.attn.in_proj_bias	(288,)
backbone.transformer.dec.1.attn.out_proj.weight	(96, 96)
backbone.transformer.dec.1.attn.out_proj.bias	(96,)
backbone.transformer.dec.1.ln_1.weight	(96,)
backbone.transformer.dec.1.ln_1.bias	(96,)
backbone.transformer.dec.1.mlp.c_fc.weight	(384, 96)
backbone.transformer.dec.1.mlp.c_fc.bias	(384,)
backbone.transformer.dec.1.mlp.c_proj.weight	(96, 384)
backbone.transformer.dec.1.mlp.c_proj.bias	(96,)
backbone.transformer.dec.1.ln_2.weight	(96,)
backbone.transformer.dec.1.ln_2.bias	(96,)
backbone.transformer.dec.1.ln_3.weight	(96,)
backbone.transformer.dec.1.ln_3.bias	(96,)
backbone.transformer.proj.0.weight	(96,)
backbone.transformer.proj.0.bias	(96,)
backbone.transformer.proj.2.weight	(7, 96)
backbone.transformer.proj.2.bias	(7,)
"""

TINY_CLIP = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=4)


def parse_keys(text: str) -> dict[str, tuple[int, ...]]:
    out = {}
    for line in text.strip().splitlines():
        key, shape = line.split("\t")
        out[key] = tuple(int(s) for s in re.findall(r"\d+", shape))
    return out


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    """A tiny CLIP-style timm ViT (QuickGELU, pre-norm, no patch bias), random weights, saved to a file."""
    torch.manual_seed(0)
    vit = timm.create_model("vit_base_patch16_clip_quickgelu_224", pretrained=False, num_classes=0, **TINY_CLIP)
    with torch.no_grad():  # non-trivial norms and biases, so a wrongly mapped key shows
        for name, p in vit.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    path = tmp_path_factory.mktemp("clip") / "tiny_clip.pth"
    torch.save(vit.state_dict(), path)
    vit.norm = nn.Identity()  # UniFormerV2 reads the last block's CLS before CLIP's ln_post
    return path, vit.eval()


def image_cls(vit: nn.Module, video: torch.Tensor) -> torch.Tensor:
    """Per-frame CLS features of the image ViT: (B, C, T, H, W) -> (B, T, D)."""
    b, _, t = video.shape[:3]
    frames = video.transpose(1, 2).flatten(0, 1)
    return vit.forward_features(frames)[:, 0].reshape(b, t, -1)


@pytest.mark.parametrize("local", ["none", "double"])
def test_clip_init_gives_documented_initial_output(clip_file, local: str) -> None:
    path, vit = clip_file
    torch.manual_seed(1)
    model = create_model("uniformerv2_b16_8x224", num_frames=4, num_classes=5, local_mhra=local, **TINY_CLIP)
    init_from_clip(model, str(path))
    model.eval()
    assert model.mean == CLIP_MEAN
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        feats = model.forward_features(x)
        cls = image_cls(vit, x)
        # CLS path == the image ViT's CLS per frame; the global query is still 0
        torch.testing.assert_close(feats[:, 1:], cls, rtol=1e-5, atol=1e-5)
        assert not feats[:, 0].any()
        expected = model.head(model.fc_norm(0.5 * cls.mean(1)))
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def test_clip_init_with_temporal_downsampling_uses_central_frames(clip_file) -> None:
    """Kernel-3 / stride-2 tokenizer, centrally inflated: token slice j embeds input frame 2j exactly."""
    path, vit = clip_file
    model = create_model("uniformerv2_b16_8x224", num_frames=4, temporal_downsample=True, num_classes=5, **TINY_CLIP)
    init_from_clip(model, str(path))
    w = model.patch_embed.proj.weight
    assert w.shape[2] == 3 and not w[:, :, [0, 2]].any()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            model.eval().forward_features(x)[:, 1:], image_cls(vit, x[:, :, 0::2]), rtol=1e-5, atol=1e-5
        )


def test_clip_filter_fn_exact_keys(clip_file) -> None:
    path, _ = clip_file
    model = create_model("uniformerv2_b16_8x224", num_frames=4, local_mhra="single", num_classes=5, **TINY_CLIP)
    sd = torch.load(path, weights_only=True)
    out = clip_filter_fn(sd, model)
    assert "norm.weight" not in out and out["patch_embed.proj.weight"].shape == (48, 3, 1, 8, 8)
    missing = set(model.state_dict()) - set(out)
    assert missing and all(
        k.split(".")[0] in {"temporal_cls_token", "balance", "global_blocks", "fc_norm", "head"} or ".lmhra1." in k
        for k in missing
    )
    assert set(out) <= set(model.state_dict())
    # a key the image tower does not provide is reported by name
    del sd["blocks.1.mlp.fc2.weight"]
    with pytest.raises(PretrainedError, match=r"blocks\.1\.mlp\.fc2\.weight"):
        init_from_clip(model, _save(sd, path.with_name("broken.pth")))
    with pytest.raises(PretrainedError, match="visual.proj"):
        clip_filter_fn({"visual.proj": torch.zeros(1)}, model)


def test_clip_init_resamples_position_embedding(clip_file) -> None:
    path, vit = clip_file
    model = create_model("uniformerv2_b16_8x224", num_frames=2, num_classes=5, **{**TINY_CLIP, "img_size": 48})
    init_from_clip(model, str(path))
    assert model.pos_embed.shape == (1, 1 + 36, 48)
    torch.testing.assert_close(model.pos_embed[:, 0], vit.pos_embed[:, 0])


def _save(sd: dict, path: Path) -> str:
    torch.save(sd, path)
    return str(path)


# -- official layout ---------------------------------------------------------------------------------------
def to_official(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our names -> the official ones, written independently of the loader (inverse of its table)."""
    swaps = [
        ("global_blocks.", "transformer.dec."),
        ("blocks.", "transformer.resblocks."),
        ("attn.qkv.", "attn.in_proj_"),
        ("attn.proj.", "attn.out_proj."),
        ("norm_ctx.", "ln_3."),
        ("norm1.", "ln_1."),
        ("norm2.", "ln_2."),
        ("mlp.fc1.", "mlp.c_fc."),
        ("mlp.fc2.", "mlp.c_proj."),
        ("patch_embed.proj.", "conv1."),
        ("norm_pre.", "ln_pre."),
        ("fc_norm.", "transformer.proj.0."),
        ("head.", "transformer.proj.2."),
    ]
    out = {}
    for k, v in sd.items():
        if k == "cls_token":
            k, v = "class_embedding", v.reshape(-1)
        elif k == "pos_embed":
            k, v = "positional_embedding", v[0]
        elif k in ("temporal_cls_token", "balance"):
            k = "transformer." + k
        else:
            m = re.fullmatch(r"global_blocks\.(\d+)\.dpe\.(.+)", k)
            if m:
                k = f"transformer.dpe.{m.group(1)}.{m.group(2)}"
            else:
                for a, b in swaps:
                    k = k.replace(a, b, 1) if k.startswith(a) or f".{a}" in k else k
        out["backbone." + k] = v
    return out


def reference_model() -> UniFormerV2:
    torch.manual_seed(0)
    model = UniFormerV2(
        img_size=64,
        num_frames=8,
        patch_size=16,
        embed_dim=96,
        depth=4,
        num_heads=4,
        temporal_downsample=True,
        local_mhra="double",
        global_layers=[2, 3],
        num_classes=7,
    )
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # fill the zero-initialised parts too, so every key matters
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.num_batches_tracked.fill_(3)
    return model.eval()


def test_tiny_model_produces_the_published_official_layout() -> None:
    official = to_official(reference_model().state_dict())
    assert {k: tuple(v.shape) for k, v in official.items()} == parse_keys(OFFICIAL_KEYS)


def test_official_checkpoint_loads_with_parity(tmp_path: Path) -> None:
    ref = reference_model()
    path = tmp_path / "k400_uniformerv2_tiny_8x64.pyth"
    torch.save(to_official(ref.state_dict()), path)
    cfg = infer_official_config(torch.load(path, weights_only=True))
    assert cfg["local_mhra"] == "double" and cfg["temporal_downsample"] and cfg["global_layers"] == [2, 3]
    assert (cfg["embed_dim"], cfg["depth"], cfg["patch_size"], cfg["img_size"], cfg["num_classes"]) == (
        96,
        4,
        16,
        64,
        7,
    )
    model = from_pretrained(path, num_heads=4)  # format detected from the file; heads are not in the shapes
    assert isinstance(model, UniFormerV2) and not model.training
    assert model.num_frames == 8 and model.mean == UNIFORMERV2_MEAN
    own, theirs = model.state_dict(), ref.state_dict()
    assert set(own) == set(theirs)
    for k in own:
        torch.testing.assert_close(own[k], theirs[k], rtol=0, atol=0, msg=k)
    x = torch.randn(2, 3, 8, 64, 64)
    with torch.no_grad():
        diff = (model(x) - ref(x)).abs().max().item()
        assert diff == 0.0, diff
        # a wrong head count loads (same shapes) but computes something else: why num_heads is an override
        wrong = load_official(path)
        assert wrong.blocks[0].attn.num_heads == 1
        assert not torch.allclose(wrong(x), ref(x))


def test_official_checkpoint_new_classes_and_errors(tmp_path: Path) -> None:
    sd = to_official(reference_model().state_dict())
    model = load_official(sd, num_heads=4, num_frames=8, num_classes=3)
    assert model.head.weight.shape == (3, 96)
    torch.testing.assert_close(model.state_dict()["balance"], sd["backbone.transformer.balance"])
    with pytest.raises(PretrainedError, match="backbone.transformer.extra"):
        load_official({**sd, "backbone.transformer.extra": torch.zeros(1)}, num_heads=4)
    with pytest.raises(PretrainedError, match="prefixed 'backbone.'"):
        load_official({k.removeprefix("backbone."): v for k, v in sd.items()})
    del sd["backbone.transformer.resblocks.3.ln_2.bias"]
    with pytest.raises(PretrainedError, match=r"blocks\.3\.norm2\.bias"):
        load_official(sd, num_heads=4)
