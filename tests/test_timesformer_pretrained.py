"""TimeSformer weights: image-ViT initialisation (static clip = image model), official ``.pyth`` checkpoints
(every key consumed; logits of checkpoints written and run by the official code, at their own and at other
sizes), Hugging Face folders of any width (config.json read, parity with transformers)."""

from __future__ import annotations

import functools
import json
import logging
import re
from pathlib import Path

import pytest
import torch
from einops import rearrange

from tests.test_timesformer import official_divided_block
from video_transformers.layers import DropPath
from video_transformers.models.base import IMAGENET_MEAN, IMAGENET_STD
from video_transformers.models.timesformer import TimeSformer
from video_transformers.pretrained import PretrainedError, from_pretrained
from video_transformers.pretrained.timesformer import convert_official, load_image_weights, timm_filter_fn

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "timesformer"  # tests/fixtures/make_timesformer_fixtures.py
OFFICIAL_KEYS = FIXTURES / "official_keys.txt"
TINY = dict(img_size=32, num_frames=4, patch_size=8, embed_dim=64, depth=2, num_heads=4, num_classes=7)


def jitter_(model: torch.nn.Module, std: float = 0.05) -> torch.nn.Module:
    """Perturb every parameter so no LayerNorm is the identity and no zero-initialised layer stays zero."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * std)
    return model


# -- image initialisation --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_vit(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    vit = timm.create_model(
        "vit_base_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        embed_dim=64,
        depth=2,
        num_heads=4,
        num_classes=0,
    )
    jitter_(vit).eval()
    path = tmp_path_factory.mktemp("vit") / "tiny_vit.pth"
    torch.save(vit.state_dict(), path)
    return vit, path


def test_image_init_on_static_clip_gives_the_image_model(image_vit: tuple[torch.nn.Module, Path]) -> None:
    vit, path = image_vit
    torch.manual_seed(1)
    model = TimeSformer(**TINY, attention_type="divided_space_time").eval()
    frame = torch.randn(2, 3, 32, 32)
    clip = frame.unsqueeze(2).repeat(1, 1, 4, 1, 1)  # b c t h w, one frame repeated
    with torch.no_grad():
        expected = vit.forward_head(vit.forward_features(frame), pre_logits=True)
        before = model.forward_head(model.forward_features(clip), pre_logits=True)
        load_image_weights(model, str(path))
        after = model.forward_head(model.forward_features(clip), pre_logits=True)
    assert (before - expected).abs().max() > 1e-2  # the invariant comes from the loaded weights
    torch.testing.assert_close(after, expected, atol=1e-5, rtol=1e-5)
    blk = model.blocks[1]
    assert not model.time_embed.any() and not blk.temporal_fc.weight.any() and not blk.temporal_fc.bias.any()
    torch.testing.assert_close(blk.temporal_attn.qkv.weight, vit.blocks[1].attn.qkv.weight)
    torch.testing.assert_close(blk.temporal_norm1.bias, vit.blocks[1].norm1.bias)


@pytest.mark.parametrize("attention_type", ["space_only", "joint_space_time", "axial", "local_global"])
def test_image_init_fills_every_scheme_and_resamples_pos_embed(
    image_vit: tuple[torch.nn.Module, Path], attention_type: str
) -> None:
    vit, path = image_vit
    model = TimeSformer(**{**TINY, "img_size": 48}, attention_type=attention_type)  # 6x6 grid from a 4x4 one
    load_image_weights(model, str(path))  # exact key accounting: only the head may be missing
    assert model.pos_embed.shape == (1, 37, 64)
    torch.testing.assert_close(model.pos_embed[:, :1], vit.pos_embed[:, :1])
    for name, m in model.blocks[0].named_children():
        if name.endswith("_fc"):
            assert not m.weight.any(), name


def test_timm_filter_fn_names_missing_image_weights(image_vit: tuple[torch.nn.Module, Path]) -> None:
    vit, _ = image_vit
    sd = {k: v for k, v in vit.state_dict().items() if not k.startswith("blocks.1.attn.")}
    with pytest.raises(PretrainedError, match=r"blocks\.1\.attn\.qkv\.weight"):
        timm_filter_fn(sd, TimeSformer(**TINY))


# -- official checkpoints --------------------------------------------------------------------------------
def to_official(model: TimeSformer) -> dict:
    """Our weights in the official release's layout: ``model_state``, ``model.`` prefix, Conv2d kernel."""
    sd = {f"model.{k}": v.clone() for k, v in model.state_dict().items()}
    sd["model.patch_embed.proj.weight"] = sd["model.patch_embed.proj.weight"].squeeze(2)
    cfg = f"DATA:\n  NUM_FRAMES: {model.num_frames}\nTIMESFORMER:\n  ATTENTION_TYPE: {model.attention_type}\n"
    return {"model_state": sd, "epoch": 15, "cfg": cfg}


def official_forward(model: TimeSformer, x: torch.Tensor) -> torch.Tensor:
    """The official ``VisionTransformer.forward`` (divided space-time, tokens ``(h w t)``, eval), transcribed
    from TimeSformer/timesformer/models/vit.py, on ``model``'s weights."""
    b, t = x.shape[0], x.shape[2]
    x = rearrange(x, "b c t h w -> (b t) c h w")
    x = model.patch_embed.proj(x.unsqueeze(2)).squeeze(2)
    w = x.size(-1)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat((model.cls_token.expand(x.size(0), -1, -1), x), dim=1) + model.pos_embed
    cls_tokens = x[:b, 0, :].unsqueeze(1)
    x = rearrange(x[:, 1:], "(b t) n m -> (b n) t m", b=b, t=t) + model.time_embed
    x = torch.cat((cls_tokens, rearrange(x, "(b n) t m -> b (n t) m", b=b, t=t)), dim=1)
    for blk in model.blocks:
        x = official_divided_block(blk, x, b=b, t=t, w=w)
    return model.head(model.norm(x)[:, 0])


def test_official_checkpoint_loads_and_matches_the_official_forward(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ours = jitter_(TimeSformer(**{**TINY, "embed_dim": 128, "num_heads": 2})).eval()  # width 128 -> 2 heads of 64
    path = tmp_path / "TimeSformer_divST_8x32_224.pyth"
    torch.save(to_official(ours), path)
    model = from_pretrained(path)  # detected by its pickled key names; all keys consumed (load_checked)
    assert (model.attention_type, model.embed_dim, len(model.blocks), model.blocks[0].attn.num_heads) == (
        "divided_space_time",
        128,
        2,
        2,
    )
    assert (model.num_frames, model.img_size, model.num_classes) == (4, 32, 7)
    assert (model.mean, model.std) == ((0.45,) * 3, (0.225,) * 3)
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        out, ref, official = model(x), ours(x), official_forward(model, x)
    torch.testing.assert_close(out, ref, atol=0, rtol=0)
    torch.testing.assert_close(out, official, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention_type", ["space_only", "joint_space_time"])
def test_official_scheme_is_inferred_from_the_keys(tmp_path: Path, attention_type: str) -> None:
    torch.manual_seed(0)
    ours = jitter_(TimeSformer(**TINY, attention_type=attention_type)).eval()
    path = tmp_path / "ckpt.pyth"
    torch.save(to_official(ours), path)
    model = from_pretrained(path, format="timesformer_official", num_heads=4)
    assert model.attention_type == attention_type
    assert model.num_frames == 4  # from time_embed, or (space-only) the saved cfg's DATA.NUM_FRAMES
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ours(x), atol=0, rtol=0)


def test_official_reference_key_layout_is_consumed(tmp_path: Path) -> None:
    """A checkpoint with exactly the published keys and shapes (reference file) loads with no key left over."""
    state = {}
    for line in OFFICIAL_KEYS.read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split("\t")
            state[key] = torch.randn(tuple(int(s) for s in re.findall(r"\d+", shape)))
    written_by_official_code = torch.load(FIXTURES / "divided_space_time.pyth", weights_only=True)["model_state"]
    assert set(written_by_official_code) == set(state)  # same depth and scheme, other widths
    path = tmp_path / "official.pyth"
    torch.save({"model_state": state}, path)
    with pytest.raises(PretrainedError, match="width 96 .* num_heads"):
        from_pretrained(path)  # 96 is no multiple of 64: the head count must be given
    model = from_pretrained(path, num_heads=4)
    assert (model.embed_dim, len(model.blocks), model.patch_embed.patch_size) == (96, 2, 16)
    assert (model.img_size, model.num_frames, model.num_classes, model.attention_type) == (
        64,
        4,
        7,
        "divided_space_time",
    )
    own = model.state_dict()
    assert set(own) == {k.removeprefix("model.") for k in state}
    for k, v in convert_official({"model_state": state}).items():
        assert torch.equal(own[k].reshape(v.shape), v), k


def test_official_checkpoint_errors_name_the_key(tmp_path: Path) -> None:
    ckpt = to_official(TimeSformer(**TINY))
    del ckpt["model_state"]["model.blocks.1.mlp.fc2.bias"]
    path = tmp_path / "broken.pyth"
    torch.save(ckpt, path)
    with pytest.raises(PretrainedError, match=r"blocks\.1\.mlp\.fc2\.bias"):
        from_pretrained(path, num_heads=4)


def test_official_checkpoint_with_new_class_count_gets_a_fresh_head(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pyth"
    torch.save(to_official(TimeSformer(**TINY)), path)
    model = from_pretrained(path, num_heads=4, num_classes=3, num_frames=8)  # time_embed resampled 4 -> 8
    assert model.head.out_features == 3 and model.time_embed.shape == (1, 8, 64)


# -- official code's own checkpoints and logits (tests/fixtures/make_timesformer_fixtures.py) --------------
OFFICIAL_SCHEMES = ("space_only", "joint_space_time", "divided_space_time")


@functools.cache
def official_outputs() -> dict:
    """Inputs and the official ``VisionTransformer``'s logits (vit.py:249-305) for each fixture checkpoint."""
    return torch.load(FIXTURES / "outputs.pt", weights_only=True)


@functools.cache
def official_model(scheme: str) -> TimeSformer:
    return from_pretrained(FIXTURES / f"{scheme}.pyth", num_heads=4)  # width 32: heads are not 32 // 64


def official_input(size: str) -> torch.Tensor:
    return (official_outputs()["inputs"][size].float() - 128) / 64  # as make_timesformer_fixtures.to_input


SIZES = list(official_outputs()["inputs"])  # "TxHxW": the native 4x16x16 first, then other frames and sizes


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("scheme", OFFICIAL_SCHEMES)
def test_official_checkpoint_matches_the_official_code_at_any_size(
    scheme: str, size: str, capsys: pytest.CaptureFixture
) -> None:
    """A checkpoint written by the official code, run at its own size and at other frame counts and sizes
    (nearest resampling of time_embed / pos_embed at forward time, vit.py:255-287; 1 frame, 3 of 4, a 16x24
    frame included), gives the official logits."""
    with torch.no_grad():
        out = official_model(scheme)(official_input(size))
    diff = (out - official_outputs()["logits"][scheme][size]).abs().max().item()
    with capsys.disabled():  # the figures docs/pretrained.md reports
        print(f"\n[parity] timesformer_official {scheme} {size}: max |logits - official| = {diff:.2e}")
    assert diff <= 1e-5, diff  # measured <= 2.4e-7; linear / bicubic resampling gave 3e-3 .. 0.28


@pytest.mark.parametrize("size", ["8x24x24", "3x16x16", "6x20x20", "2x12x12"])
@pytest.mark.parametrize("scheme", OFFICIAL_SCHEMES)
def test_official_checkpoint_loaded_at_another_size_gives_the_official_logits(scheme: str, size: str) -> None:
    """``num_frames=`` / ``img_size=`` resample by nearest at load time, so the model built at that size
    equals the official native model fed that size (vit.py:255-287)."""
    t, h, _ = (int(n) for n in size.split("x"))
    model = from_pretrained(FIXTURES / f"{scheme}.pyth", num_heads=4, num_frames=t, img_size=h)
    assert (model.num_frames, model.img_size, model.pos_embed.shape[1]) == (t, h, 1 + (h // 4) ** 2)
    with torch.no_grad():
        diff = (model(official_input(size)) - official_outputs()["logits"][scheme][size]).abs().max().item()
    assert diff <= 1e-5, diff


@pytest.mark.parametrize("scheme", OFFICIAL_SCHEMES)
def test_drop_path_acts_where_the_official_one_does(scheme: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Training mode with stochastic depth replaced, in the official model and here, by the same fixed
    pattern over the batch that each block folds at that point (clips, frames, spatial positions): equal
    logits mean the same placement and grouping (vit.py:109, 120-121, 127, 139, 152)."""
    from tests.fixtures.make_timesformer_fixtures import pattern_drop_path

    model = from_pretrained(FIXTURES / f"{scheme}.pyth", num_heads=4, drop_path_rate=0.1)
    for m in model.modules():
        if isinstance(m, DropPath) and m.p > 0:  # the official code has nn.Identity where the rate is 0
            monkeypatch.setattr(m, "forward", pattern_drop_path)
    model.train()
    with torch.no_grad():
        out = model(official_input("4x16x16"))
    ref = official_outputs()["train_pattern_drop_path"][scheme]
    assert (official_outputs()["logits"][scheme]["4x16x16"] - ref).abs().max() > 1e-2  # the pattern matters
    assert (out - ref).abs().max().item() <= 1e-5


def test_space_only_official_checkpoint_needs_no_frame_count(caplog: pytest.LogCaptureFixture) -> None:
    """No time_embed and no saved cfg: it loads without a warning and runs at any frame count (above);
    num_frames is the official default 8 (vit.py:183), only the nominal clip length."""
    with caplog.at_level(logging.INFO):
        model = from_pretrained(FIXTURES / "space_only.pyth", num_heads=4)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("runs at any frame count" in r.getMessage() for r in caplog.records)
    assert model.time_embed is None and model.num_frames == 8
    assert from_pretrained(FIXTURES / "space_only.pyth", num_heads=4, num_frames=16).num_frames == 16


# -- Hugging Face ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.TimesformerConfig(
        image_size=32,
        patch_size=8,
        num_frames=4,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        num_labels=7,
        attention_type="divided_space_time",
    )
    hf = jitter_(transformers.TimesformerForVideoClassification(config)).eval()
    folder = tmp_path_factory.mktemp("hf") / "timesformer-tiny"
    hf.save_pretrained(folder)
    return hf, folder


def test_hf_parity(hf_folder: tuple[torch.nn.Module, Path]) -> None:
    hf, folder = hf_folder
    model = from_pretrained(folder)  # detected from config.json's model_type
    assert model.blocks[0].norm1.eps == hf.config.layer_norm_eps
    assert type(model.blocks[0].mlp.act) is torch.nn.GELU and model.blocks[0].mlp.act.approximate == "none"
    torch.manual_seed(1)
    video = torch.randn(2, 4, 3, 32, 32)  # HF layout: b t c h w
    with torch.no_grad():
        ref = hf(pixel_values=video).logits
        out = model(video.transpose(1, 2))
    assert (out - ref).abs().max().item() <= 1e-5  # measured 3e-7; tanh-GELU would give ~1e-4
    assert (model.mean, model.std) == (IMAGENET_MEAN, IMAGENET_STD)  # no preprocessor_config.json
    assert model.class_names is None  # transformers' placeholder LABEL_i names are not kept


def test_hf_preprocessor_and_labels_are_read(hf_folder: tuple[torch.nn.Module, Path], tmp_path: Path) -> None:
    _, folder = hf_folder
    local = tmp_path / "copy"
    local.mkdir()
    for f in folder.iterdir():
        (local / f.name).write_bytes(f.read_bytes())
    config = json.loads((local / "config.json").read_text())
    config["id2label"] = {str(i): f"action {i}" for i in range(7)}
    (local / "config.json").write_text(json.dumps(config))
    (local / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.45] * 3, "image_std": [0.225] * 3}))
    model = from_pretrained(local)
    assert model.class_names == [f"action {i}" for i in range(7)]
    assert (model.mean, model.std) == ((0.45,) * 3, (0.225,) * 3)


def save_hf(folder: Path, **config: object) -> torch.nn.Module:
    """A jittered ``TimesformerForVideoClassification`` built and saved by transformers itself."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = dict(image_size=32, patch_size=8, num_frames=4, num_hidden_layers=2, num_labels=7, **config)
    hf = jitter_(transformers.TimesformerForVideoClassification(transformers.TimesformerConfig(**cfg))).eval()
    hf.save_pretrained(folder)
    return hf


def hf_diff(hf: torch.nn.Module, model: TimeSformer) -> float:
    torch.manual_seed(1)
    video = torch.randn(2, 4, 3, 32, 32)  # HF layout: b t c h w
    with torch.no_grad():
        return (model(video.transpose(1, 2)) - hf(pixel_values=video).logits).abs().max().item()


@pytest.mark.parametrize("attention_type", ["joint_space_time", "divided_space_time"])
def test_hf_config_architecture_is_read_at_any_width(
    tmp_path: Path, attention_type: str, capsys: pytest.CaptureFixture
) -> None:
    """Width 96 with 4 heads (not 96 // 64), no qkv bias, eps 1e-5, tanh GELU, MLP 1.5x: all from config.json.
    (transformers' space-only port returns one row of logits per frame, so it has no parity to test.)"""
    hf = save_hf(
        tmp_path,
        hidden_size=96,
        num_attention_heads=4,
        intermediate_size=144,
        qkv_bias=False,
        layer_norm_eps=1e-5,
        hidden_act="gelu_new",
        attention_type=attention_type,
    )
    model = from_pretrained(tmp_path)
    blk = model.blocks[0]
    assert (blk.attn.num_heads, blk.norm1.eps, blk.attn.qkv.bias, blk.mlp.fc1.out_features) == (4, 1e-5, None, 144)
    assert blk.mlp.act.approximate == "tanh"
    diff = hf_diff(hf, model)
    with capsys.disabled():
        print(f"\n[parity] hf_timesformer width 96, 4 heads, {attention_type}: max |logits - HF| = {diff:.2e}")
    assert diff <= 1e-5  # measured 3e-7; before: "width 96 is not a multiple of 64 ... num_heads="


def test_hf_config_without_some_fields(tmp_path: Path) -> None:
    """Absent fields no shape holds take transformers' defaults (12 heads, eps 1e-6, exact GELU), the same
    folder loaded by transformers itself being the reference; absent shape fields come from the weights."""
    transformers = pytest.importorskip("transformers")
    hf = save_hf(tmp_path, hidden_size=96, intermediate_size=192)  # transformers' defaults: 12 heads, eps 1e-6
    config = json.loads((tmp_path / "config.json").read_text())
    for field in ("num_attention_heads", "layer_norm_eps", "hidden_act"):
        del config[field]
    (tmp_path / "config.json").write_text(json.dumps(config))
    theirs = transformers.TimesformerForVideoClassification.from_pretrained(tmp_path).eval()
    model = from_pretrained(tmp_path)
    assert (model.blocks[0].attn.num_heads, model.blocks[0].norm1.eps) == (12, 1e-6)
    assert hf_diff(theirs, model) <= 1e-5
    for field in ("hidden_size", "intermediate_size", "num_hidden_layers", "image_size", "patch_size", "num_frames"):
        del config[field]
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = from_pretrained(tmp_path)
    assert (model.embed_dim, len(model.blocks), model.img_size, model.num_frames) == (96, 2, 32, 4)
    assert hf_diff(hf, model) <= 1e-5


def test_hf_config_contradicting_the_weights_names_the_field(tmp_path: Path) -> None:
    save_hf(tmp_path, hidden_size=96, num_attention_heads=4, intermediate_size=192)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "hidden_size": 64}))
    with pytest.raises(PretrainedError, match=r"config\.json: hidden_size gives embed_dim=64 but the weights have 96"):
        from_pretrained(tmp_path)
