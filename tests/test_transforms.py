"""Training transforms: shapes, dtypes, and that every frame of a clip is treated alike."""

from __future__ import annotations

import random

import pytest
import torch

from video_transformers.data.transforms import (
    RANDAUG_OPS,
    MixupCutmix,
    RandAugment,
    RandomErasing,
    TrainTransform,
    _apply_op,
    label_swap_map,
    random_resized_box,
    scale_jitter_box,
)

MEAN, STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)


def static_clip(t=4, h=40, w=56, seed=0):
    """A clip whose frames are all the same image: any per-clip transform must keep them equal."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, 1, h, w), generator=g, dtype=torch.uint8).expand(3, t, h, w).contiguous()


def frames_alike(x: torch.Tensor) -> bool:
    return bool((x == x[:, :1]).all())


@pytest.mark.parametrize("name", list(RANDAUG_OPS))
def test_each_randaugment_op_keeps_frames_alike(name):
    x = static_clip().transpose(0, 1)  # T C H W
    random.seed(0)
    y = _apply_op(x, name, level=9.0, fill=[128.0] * 3)
    assert y.shape == x.shape and y.dtype == torch.uint8
    assert bool((y == y[:1]).all()), name
    if name not in ("AutoContrast", "Equalize"):  # these may be identities on some images
        assert not torch.equal(y, x), f"{name} at level 9 changed nothing"


def test_randaugment_strings():
    ra = RandAugment.from_string("rand-m7-n4-mstd0.5-inc1")
    assert (ra.magnitude, ra.num_ops, ra.mstd, ra.prob) == (7, 4, 0.5, 0.5)
    ra = RandAugment.from_string("rand-m9-n2")
    assert (ra.magnitude, ra.num_ops, ra.mstd) == (9, 2, 0.5)
    for bad, msg in [
        ("auto-m9", "start with 'rand-'"),
        ("rand-m9-q2", "cannot parse 'q2'"),
        ("rand-m11-n2", "0 <= m <= 10"),
        ("rand-m9-n2-inc0", "inc1"),
    ]:
        with pytest.raises(ValueError, match=msg):
            RandAugment.from_string(bad)
    with pytest.raises(TypeError, match="uint8"):
        RandAugment()(torch.zeros(2, 3, 8, 8))


@pytest.mark.parametrize("crop", ["scale_jitter", "random_resized"])
def test_train_transform_shape_dtype_and_consistency(crop):
    t = TrainTransform(
        crop_size=32,
        short_side=(32, 48),
        hflip=True,
        mean=MEAN,
        std=STD,
        crop=crop,
        rand_augment="rand-m9-n4-mstd0.5-p1.0",
        random_erasing=0.5,
    )
    random.seed(1)
    torch.manual_seed(1)
    outs = []
    for _ in range(12):
        y, label = t(static_clip(), 3)
        assert y.shape == (3, 4, 32, 32) and y.dtype == torch.float32 and label == 3
        assert frames_alike(y)
        outs.append(y)
    assert len({o.sum().item() for o in outs}) > 6  # random per clip


def test_boxes_stay_inside_the_frame():
    random.seed(0)
    for _ in range(200):
        top, left, h, w = random_resized_box(45, 80)
        assert 0 <= top and top + h <= 45 and 0 <= left and left + w <= 80 and h > 0 and w > 0
        top, left, h, w = scale_jitter_box(240, 320, 224, (256, 320))
        assert h == w and 224 * 240 / 320 - 1 <= h <= 224 * 240 / 256 + 1 and top + h <= 240 and left + w <= 320


def test_hflip_swaps_mirrored_labels():
    names = ["left_to_right", "right_to_left", "static"]
    swap = label_swap_map([["left_to_right", "right_to_left"]], names)
    assert swap == {0: 1, 1: 0}
    with pytest.raises(ValueError, match=r"\['up'\] not among"):
        label_swap_map([["up", "static"]], names)
    x = static_clip(h=32, w=32)
    t = TrainTransform(crop_size=32, short_side=(32, 32), hflip=True, mean=MEAN, std=STD, swap=swap)
    plain, _ = TrainTransform(crop_size=32, short_side=(32, 32), hflip=False, mean=MEAN, std=STD)(x, 0)
    random.seed(0)
    seen = set()
    for _ in range(20):
        for label in (0, 2):
            y, out = t(x, label)
            flipped = torch.allclose(y, plain.flip(-1))
            assert flipped or torch.allclose(y, plain)
            assert out == ({0: 1}.get(label, label) if flipped else label)
            seen.add(flipped)
    assert seen == {True, False}


def test_random_erasing_one_box_through_all_frames():
    x = torch.zeros(3, 4, 32, 32)
    random.seed(0)
    torch.manual_seed(0)
    y = RandomErasing(1.0)(x)
    erased = y != 0
    assert erased.any() and frames_alike(y) and y.shape == x.shape
    assert torch.equal(RandomErasing(0.0)(x), x)


@pytest.mark.parametrize("mixup, cutmix", [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_mixup_cutmix_soft_targets(mixup, cutmix):
    torch.manual_seed(0)
    random.seed(0)
    video = torch.stack([torch.full((3, 4, 16, 16), float(i)) for i in range(4)])
    label = torch.tensor([0, 1, 2, 3])
    mix = MixupCutmix(5, mixup_alpha=mixup, cutmix_alpha=cutmix)
    for _ in range(5):
        v, y = mix(video, label)
        assert v.shape == video.shape and y.shape == (4, 5) and y.dtype == torch.float32
        torch.testing.assert_close(y.sum(1), torch.ones(4))
        lam = float(y[0, 0])
        assert torch.allclose(y[0, 3], torch.tensor(1 - lam))  # paired with the reversed batch
        # video 0 mixes 0 (weight lam) with video 3: its mean is 3 * (1 - lam), on every frame alike
        torch.testing.assert_close(v[0].mean(), torch.tensor(3 * (1 - lam)), atol=1e-5, rtol=0)
        assert frames_alike(v[0])
    v, y = MixupCutmix(5)(video, label)
    assert torch.equal(v, video) and torch.equal(y.argmax(1), label)


def test_classifier_trains_on_soft_targets():
    """``training_step`` accepts (B, C) float targets (mixup) as well as class indices."""
    from video_transformers.lit import VideoClassifier

    torch.manual_seed(0)
    model = VideoClassifier(
        backbone="vivit_base_factorised_encoder_16x2",
        num_classes=5,
        num_frames=4,
        img_size=16,
        backbone_kwargs=dict(
            patch_size=8, tubelet_size=2, embed_dim=32, spatial_depth=1, temporal_depth=1, num_heads=2
        ),
    )
    video, label = torch.randn(4, 3, 4, 16, 16), torch.tensor([0, 1, 2, 3])
    v, soft = MixupCutmix(5, mixup_alpha=0.8)(video, label)
    loss = model.training_step({"video": v, "label": soft}, 0)
    logp = model(v).log_softmax(-1)
    smooth = soft * (1 - model.hparams.label_smoothing) + model.hparams.label_smoothing / 5
    torch.testing.assert_close(loss, -(smooth * logp).sum(-1).mean())
    loss.backward()
    hard = model.training_step({"video": video, "label": label}, 0)
    assert hard.ndim == 0 and torch.isfinite(hard)
