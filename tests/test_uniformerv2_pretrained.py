"""UniFormerV2 weights: CLIP init from a timm-layout file (documented initial output), the official
checkpoint layout (published key list, every key consumed), and the official model's own outputs
(fixtures written by tests/fixtures/make_uniformerv2_fixtures.py running the official code)."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pytest
import timm
import torch
from torch import nn

from video_transformers.layers.uniblocks import LocalMHRA, SharedDropPath
from video_transformers.lit.classifier import VideoClassifier
from video_transformers.models import create_model
from video_transformers.models.uniformerv2 import CLIP_MEAN, UNIFORMERV2_MEAN, UniFormerV2
from video_transformers.pretrained import PretrainedError, from_pretrained
from video_transformers.pretrained.uniformerv2 import (
    _local_reduction,
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


# -- oracle: the official model's own outputs ----------------------------------------------------------------
# Written by tests/fixtures/make_uniformerv2_fixtures.py, which runs OpenGVLab/UniFormerV2
# slowfast/models/uniformerv2_model.py (VisionTransformer) on tiny random-weight models: K400 recipe (no local
# MHRA), SSv2 recipe (double local MHRA, temporal down-sampling, global blocks on every layer) and the FROZEN
# variant (query-only output, lines 269-270). Width 16 / 2 heads (heads are not in the shapes), drop path 0.2 / 0.4.
FIXTURES = Path(__file__).parent / "fixtures" / "uniformerv2"
ORACLE = {
    "k400": ("k400_uniformerv2_tiny_4x24.pyth", dict(local_mhra="none", temporal_downsample=False, frozen=False)),
    "ssv2": ("ssv2_uniformerv2_tiny_8x24.pyth", dict(local_mhra="double", temporal_downsample=True, frozen=False)),
    "frozen": ("frozen_uniformerv2_tiny_4x24.pyth", dict(local_mhra="none", temporal_downsample=False, frozen=True)),
}


def load_oracle(name: str, **overrides) -> tuple[UniFormerV2, dict]:
    file, _ = ORACLE[name]
    io = torch.load(FIXTURES / f"{name}_io.pt", weights_only=True)
    cfg = io["config"]
    drop = dict(drop_path_rate=cfg["backbone_drop_path_rate"], global_drop_path_rate=cfg["drop_path_rate"])
    model = from_pretrained(FIXTURES / file, num_heads=cfg["heads"], **drop, **overrides)
    return model, io


@pytest.mark.parametrize("name", list(ORACLE))
def test_official_fixture_loads_with_the_official_logits(name: str) -> None:
    """Eval-mode logits of the official forward (uniformerv2_model.py:319-330, 243-274) within 1e-5."""
    model, io = load_oracle(name)
    cfg, expected = io["config"], ORACLE[name][1]
    assert {k: getattr(model, k) for k in expected} == expected
    assert model.global_layers == cfg["return_list"] and model.num_frames == cfg["t_size"]
    assert (model.balance is None) == cfg["frozen"]
    with torch.no_grad():
        diff = (model(io["input"].float()) - io["logits"]).abs().max().item()
    print(f"uniformerv2 official {name}: eval max |logit diff| {diff:.2g}")  # pytest -s: docs/pretrained.md
    assert diff <= 1e-5, diff


@pytest.mark.parametrize("name", list(ORACLE))
def test_official_fixture_train_mode_drop_path_matches_under_one_seed(name: str) -> None:
    """Train mode, same torch seed: drop path (official masks, lines 70/106/114/119/127/138/180-181), the
    global FFN dropout and the classifier dropout draw what the official model drew, in the same order."""
    model, io = load_oracle(name)
    x = io["input"].float()
    model.train()
    torch.manual_seed(io["train_seed"])
    with torch.no_grad():
        diff = (model(x) - io["train_logits"]).abs().max().item()
    print(f"uniformerv2 official {name}: train-mode max |logit diff| {diff:.2g}")
    assert diff <= 1e-5, diff
    # the fixture does exercise the masks: timm's per-sample masks on our layouts (per frame, per clip, per
    # sample) give other logits under the same seed
    for m in model.modules():
        if isinstance(m, SharedDropPath):
            m.dims = (0,)
    torch.manual_seed(io["train_seed"])
    with torch.no_grad():
        assert (model(x) - io["train_logits"]).abs().max().item() > 1e-2


def test_frozen_checkpoint_is_the_query_only_variant() -> None:
    """No ``transformer.balance`` in the file -> ``frozen``: logits = head(fc_norm(query)), and fine-tuning
    trains only the UniFormerV2 parts (official slowfast/models/uniformerv2.py:88-103)."""
    model, io = load_oracle("frozen")
    assert model.frozen and "balance" not in model.state_dict() and "balance" not in model.no_weight_decay()
    x = io["input"].float()
    with torch.no_grad():
        feats = model.forward_features(x)
        torch.testing.assert_close(model(x), model.head(model.fc_norm(feats[:, 0])), rtol=0, atol=0)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n.split(".")[0] for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"patch_embed", "cls_token", "pos_embed", "norm_pre", "blocks"}
    assert trainable == {"temporal_cls_token", "global_blocks", "fc_norm", "head"}
    # the same weights with the balance mix (non-frozen) compute something else
    mixed = load_official(
        {
            **torch.load(FIXTURES / ORACLE["frozen"][0], weights_only=True),
            "backbone.transformer.balance": torch.zeros(16),
        },
        num_heads=2,
        num_frames=4,
    ).eval()
    assert not mixed.frozen
    with torch.no_grad():
        assert not torch.allclose(mixed(x), io["logits"], atol=1e-3)


def test_clip_init_of_a_frozen_model(clip_file) -> None:
    path, _ = clip_file
    model = create_model("uniformerv2_b16_8x224", num_frames=4, num_classes=5, frozen=True, **TINY_CLIP)
    init_from_clip(model, str(path))  # no `balance` to leave unfilled
    assert model.balance is None and not model.blocks[0].attn.qkv.weight.requires_grad


@pytest.mark.parametrize(
    ("name", "depth", "return_list"),
    [("uniformerv2_b16_8x224", 12, list(range(4, 12))), ("uniformerv2_l14_8x224", 24, list(range(8, 24)))],
)
def test_ssv2_layouts_read_with_the_official_return_list(name: str, depth: int, return_list: list[int]) -> None:
    """Official SSv2 configs (exp/sthv2/ssv2_{b16,l14}_*/config.yaml): RETURN_LIST [4..11] of B/16 and [8..23] of
    L/14, double local MHRA (dw_reduction 1.5), temporal down-sampling; the loader reads them off the shapes."""
    with torch.device("meta"):
        model = create_model(
            name, local_mhra="double", temporal_downsample=True, global_layers=return_list, num_classes=174
        )
    cfg = infer_official_config(to_official(model.state_dict()))
    assert cfg["global_layers"] == return_list and cfg["depth"] == depth and cfg["num_classes"] == 174
    assert cfg["local_mhra"] == "double" and cfg["temporal_downsample"] and not cfg["frozen"]
    assert cfg["local_reduction"] == 1.5


@pytest.mark.parametrize(("width", "inner"), [(768, 512), (1024, 682), (16, 10), (96, 64), (40, 26)])
def test_local_reduction_inferred_from_any_width(width: int, inner: int) -> None:
    r = _local_reduction(width, inner)
    assert int(width // r) == inner
    assert LocalMHRA(width, reduction=r).pos_embed[1].out_channels == inner


def test_weight_decay_exemptions_are_the_official_optimizers() -> None:
    """slowfast/models/optimizer.py:37-48 with ZERO_WD_1D_PARAM (every UniFormerV2 recipe): exactly the 1-D
    parameters of the official layout (and BatchNorm's) get no weight decay; positional_embedding (L, D) and
    temporal_cls_token (1, 1, D) are decayed. Checked on the optimizer our LightningModule builds."""
    lit = VideoClassifier(
        backbone="uniformerv2_b16_8x224",
        backbone_kwargs=dict(TINY_CLIP, num_frames=4, local_mhra="double"),
        num_classes=5,
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05),
    )
    trainer = SimpleNamespace(estimated_stepping_batches=10, max_epochs=1)
    with mock.patch.object(VideoClassifier, "trainer", new_callable=mock.PropertyMock, return_value=trainer):
        optimizer = lit.configure_optimizers()["optimizer"]
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    params = dict(lit.model.named_parameters())
    official = to_official(params)  # same order, official names and shapes
    exempt = {k for (k, v), p in zip(official.items(), params.values(), strict=True) if decay[id(p)] == 0.0}
    assert exempt == {k for k, v in official.items() if v.ndim <= 1}
    assert decay[id(params["pos_embed"])] == decay[id(params["temporal_cls_token"])] == 0.05
