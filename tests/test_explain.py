"""Attention rollout: the maps are probability distributions for every supported factorisation, rollout
composes layers as Abnar & Zuidema define it, and a ViViT-FE trained on embedded-dataset videos puts more
of its mass on the moving object than on the background (an untrained one does not)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.test_predict import make_checkpoint
from video_transformers.inference.rollout import explain, rollout
from video_transformers.layers import set_fused_attention
from video_transformers.models import create_model, get_entry

SUPPORTED = [
    "vivit_base_factorised_encoder_16x2",
    "vivit_base_spatio_temporal_16x2",
    "timesformer_base_divided_8x224",
    "timesformer_base_joint_8x224",
]


def test_rollout_by_hand():
    a1 = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    a2 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    maps = [torch.stack([a1, a1])[None], torch.stack([a2, 1 - a2])[None]]  # (1, heads=2, 2, 2)
    r1 = 0.5 * a1 + 0.5 * torch.eye(2)  # layer 1: heads agree, mixed with the residual
    r2 = 0.5 * torch.full((2, 2), 0.5) + 0.5 * torch.eye(2)  # layer 2: the heads average to 0.5 everywhere
    torch.testing.assert_close(rollout(maps)[0].float(), r2 @ r1)


@pytest.mark.parametrize("name", SUPPORTED)
def test_maps_are_probability_distributions(name):
    torch.manual_seed(0)
    model = create_model(name, **get_entry(name).tiny, num_classes=5)
    x = torch.randn(1, 3, model.num_frames, model.img_size, model.img_size)
    result, logits = explain(model, x)
    t, h, w = model.patch_embed.grid_size
    assert result.spatial.shape == (t, h, w) and result.temporal.shape == (t,)
    for m in (result.spatial, result.temporal, result.joint):
        assert (m >= 0).all()
    torch.testing.assert_close(result.spatial.sum((1, 2)), torch.ones(t))
    torch.testing.assert_close(result.temporal.sum(), torch.tensor(1.0))
    torch.testing.assert_close(result.joint.sum(), torch.tensor(1.0))
    set_fused_attention(model, True)
    with torch.no_grad():
        torch.testing.assert_close(logits, model.eval()(x), rtol=1e-5, atol=1e-5)  # manual path = SDPA path
    assert all(m.last_attn is None and not m.keep_attn for m in model.modules() if hasattr(m, "keep_attn"))


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time"])
def test_timesformer_rollout_follows_the_clip_size(attention_type):
    """TimeSformer runs at sizes other than its construction (vit.py:255-287): rollout uses the clip's grid."""
    torch.manual_seed(0)
    name = "timesformer_base_divided_8x224"
    model = create_model(name, **get_entry(name).tiny, num_classes=5, attention_type=attention_type)
    result, _ = explain(model, torch.randn(1, 3, 6, 48, 40))  # built for 4 frames at 32 px, patch 8
    assert result.spatial.shape == (6, 6, 5) and result.temporal.shape == (6,) and result.frames_per_index == 1
    torch.testing.assert_close(result.joint.sum(), torch.tensor(1.0))


def test_unsupported_variant_is_named():
    name = "uniformerv2_b16_8x224"
    model = create_model(name, **get_entry(name).tiny, num_classes=3)
    with pytest.raises(ValueError, match=name):
        explain(model, torch.randn(1, 3, 4, 32, 32))


def test_cli_writes_png_gif_and_maps(embedded_root, tmp_path_factory, tmp_path, capsys):
    from video_transformers.commands.explain import main

    ckpt = make_checkpoint(embedded_root, tmp_path_factory.mktemp("ckpt"))
    video = embedded_root / "videos/test/move_down_000.mp4"
    out = tmp_path / "explain"
    assert main(["--ckpt_path", str(ckpt), "--video", str(video), "--out", str(out), "--class", "move_down"]) == 0
    assert (out / "attention.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "attention.gif").read_bytes()[:6] == b"GIF89a"
    maps = np.load(out / "attention.npz")
    assert maps["spatial"].shape == (4, 4, 4) and maps["temporal"].shape == (4,)
    np.testing.assert_allclose(maps["joint"].sum(), 1.0, atol=1e-5)
    summary = json.loads((out / "attention.json").read_text())
    assert summary["class"] == "move_down" and summary["layout"] == "ViViT factorised encoder"
    assert main(["--ckpt_path", str(ckpt), "--video", str(video), "--out", str(out), "--class", "jump"]) == 2
    assert "'jump' is not one of the model's classes" in capsys.readouterr().err


def test_explain_uses_predicts_single_view_and_says_which(embedded_root, tmp_path_factory, tmp_path, capsys):
    """The clip explained is the one `vt predict --views 1x1` scores (here u8: the centre of 8 segments)."""
    from video_transformers.commands.explain import load_clip, main
    from video_transformers.data.sampling import uniform_eval_indices
    from video_transformers.inference import load_model, view_clips

    ckpt = make_checkpoint(embedded_root, tmp_path_factory.mktemp("ckpt"), "uniformerv2")
    lm = load_model(ckpt)
    video = embedded_root / "videos/test/grow_000.mp4"
    clip, times, which = load_clip(lm, video, None, "pad")
    x, views, info = view_clips(video, lm.spec, clips=1, crops=1)
    assert torch.equal(clip, x[0]) and "u8 sampling, clip 1 of 1, centre crop" in which
    assert times == [s / info.fps for s in uniform_eval_indices(info.frames, 8)]  # not the first 8 frames
    assert main(["--ckpt_path", str(ckpt), "--video", str(video), "--out", str(tmp_path)]) == 0
    assert f"clip: {which}; frames at {' '.join(f'{t:.2f}' for t in times)} s" in capsys.readouterr().out
    summary = json.loads((tmp_path / "attention.json").read_text())
    assert summary["clip"] == which and summary["frame_times"] == [round(t, 4) for t in times]


# -- does the rollout find the object? ---------------------------------------------------------------------
# Cheap setup (CI has 2 shared CPU cores): embedded-dataset videos rendered in memory by the dataset's own
# generator (all 12 classes, 4 frames at sampling rate 4, 40 px with random 32 px crops), a tiny ViViT-FE
# (width 48, one spatial and one temporal block) trained with AdamW for 400 steps (a few seconds). At this budget the
# model is still near chance accuracy, yet its spatial rollout already moves onto the object; the object mask
# comes from rendering the same video's background alone (same seed) and comparing pixels.
CLIP_FRAMES, STEP = 4, 4


def _render(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from video_transformers.data import synthetic

    videos, labels, masks = [], [], []
    for i in range(n):
        cls = i % len(synthetic.CLASS_NAMES)
        frames = synthetic.render(synthetic.CLASS_NAMES[cls], np.random.default_rng([seed, i]), num_frames=16)
        frames = frames[::STEP][:CLIP_FRAMES]
        background = synthetic._background(np.random.default_rng([seed, i]), 40)  # render draws it first
        masks.append(np.abs(frames.astype(np.float32) - background[None]).max(-1) > 40)  # noise sd is 4
        videos.append(frames)
        labels.append(cls)
    x = torch.from_numpy(np.stack(videos)).permute(0, 4, 1, 2, 3).float() / 255  # b c t h w
    return (x - 0.45) / 0.225, torch.tensor(labels), torch.from_numpy(np.stack(masks))


def _object_ratio(model, videos: torch.Tensor, masks: torch.Tensor, flip: bool = False) -> float:
    """Mean over clips and temporal indices of (rollout mass on object pixels) / (object area fraction):
    1 for a map blind to the object, > 1 when the map concentrates on it."""
    ratios = []
    for video, mask in zip(videos, masks, strict=True):
        result, _ = explain(model, video[None, :, :, 4:36, 4:36])  # the evaluation centre crop
        spatial = result.spatial.flip(1, 2) if flip else result.spatial
        cover = mask[:, 4:36, 4:36].float().reshape(CLIP_FRAMES // 2, 2, 4, 8, 4, 8).mean((1, 3, 5))  # t h w
        area = cover.mean((1, 2))
        seen = area > 0  # appear / vanish / blink clips have indices without the object
        ratios += ((spatial * cover).sum((1, 2))[seen] / area[seen]).tolist()
    return float(np.mean(ratios))


@pytest.fixture(scope="module")
def object_models():
    torch.manual_seed(0)
    kwargs = dict(
        img_size=32,
        num_frames=CLIP_FRAMES,
        patch_size=8,
        tubelet_size=2,
        embed_dim=48,
        spatial_depth=1,
        temporal_depth=1,
        num_heads=4,
        num_classes=12,
    )
    untrained = create_model("vivit_base_factorised_encoder_16x2", **kwargs)
    model = create_model("vivit_base_factorised_encoder_16x2", **kwargs)
    model.load_state_dict(untrained.state_dict())
    x, y, _ = _render(192, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 30))
    g = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: a second thread only spins on a shared CPU
    model.train()
    for _ in range(400):
        idx = torch.randint(0, len(x), (16,), generator=g)
        top, left = torch.randint(0, 9, (2,), generator=g).tolist()
        loss = F.cross_entropy(model(x[idx, :, :, top : top + 32, left : left + 32]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        warmup.step()
    torch.set_num_threads(threads)
    return untrained.eval(), model.eval()


def test_trained_rollout_concentrates_on_the_object(object_models):
    untrained, trained = object_models
    videos, _, masks = _render(24, 2)  # unseen videos
    before = _object_ratio(untrained, videos, masks)
    after = _object_ratio(trained, videos, masks)
    flipped = _object_ratio(trained, videos, masks, flip=True)
    assert 0.9 < before < 1.1  # untrained: about uniform over patches
    assert after > 1.3, after  # trained: more mass per object pixel than per background pixel
    assert after > flipped + 0.2, (after, flipped)  # the map is where the object is, not just peaked
