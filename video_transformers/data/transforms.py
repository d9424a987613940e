"""Clip transforms on ``(C, T, H, W)`` tensors. Every random choice is drawn once per clip, so all frames of a
clip get the same crop, flip, RandAugment ops and magnitudes, and erased box.

The training pieces the papers' recipes combine (see ``configs/data/recipes`` and docs/datasets.md):

* :func:`scale_jitter_box` - short side resized to a random size in ``[256, 320]``, random 224 crop (TimeSformer,
  from SlowFast's ``random_short_side_scale_jitter`` + ``random_crop``);
* :func:`random_resized_box` - Inception-style RandomResizedCrop, area ``(0.08, 1)``, aspect ``(3/4, 4/3)``
  (mmaction2's UniFormerV2 pipeline);
* horizontal flip, with optional label swapping for direction-sensitive classes (``hflip_label_pairs``);
* :class:`RandAugment` parsed from timm-style strings (``rand-m7-n4-mstd0.5``), with PyTorchVideo's video op set;
* :class:`RandomErasing` (Zhong et al. 2020) of one box through every frame;
* :class:`MixupCutmix` (Zhang et al. 2018; Yun et al. 2019) on batches, giving ``(B, num_classes)`` soft targets.

Crops are cut before resizing (the same pixels, a fraction of the interpolation work at 320p input).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode


def uniform_temporal_subsample(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Pick ``num_frames`` evenly spaced frames from ``(C, T, H, W)`` (repeats frames if T is short)."""
    t = x.shape[1]
    idx = torch.linspace(0, t - 1, num_frames).round().long()
    return x.index_select(1, idx)


def resize_short_side(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``(C, T, H, W)`` so that min(H, W) == size, keeping the aspect ratio (bilinear, antialiased)."""
    h, w = x.shape[-2:]
    if min(h, w) == size:
        return x
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    y = F.interpolate(x.transpose(0, 1), size=new, mode="bilinear", align_corners=False, antialias=True)
    return y.transpose(0, 1)


def crop(x: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    return x[..., top : top + size, left : left + size]


def spatial_crop(x: torch.Tensor, size: int, index: int, num_crops: int) -> torch.Tensor:
    """The ``index``-th of ``num_crops`` crops along the long side (3 crops: left/top, centre, right/bottom).

    With one crop it is the centre crop (as in SlowFast / PyTorchVideo's uniform crop).
    """
    h, w = x.shape[-2:]
    if min(h, w) < size:
        raise ValueError(f"frame {h}x{w} is smaller than the crop {size}")
    top, left = (h - size) // 2, (w - size) // 2
    if num_crops > 1:
        frac = index / (num_crops - 1)
        if w >= h:
            left = round((w - size) * frac)
        else:
            top = round((h - size) * frac)
    return crop(x, top, left, size)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (or float) ``(C, T, H, W)`` in ``[0, 255]`` -> float ``(x / 255 - mean) / std`` (a new tensor)."""
    x = x.float() / 255.0
    m = torch.tensor(mean, dtype=x.dtype).view(-1, 1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(-1, 1, 1, 1)
    return (x - m) / s


def scale_jitter_box(h: int, w: int, crop_size: int, short_side: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` in the original frame of a ``crop_size`` crop taken after resizing the
    short side to a random size in ``short_side``."""
    scale = random.randint(*short_side) / min(h, w)
    side = min(h, w, max(1, round(crop_size / scale)))
    return random.randint(0, h - side), random.randint(0, w - side), side, side


def random_resized_box(
    h: int, w: int, scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)
) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop.get_params``: 10 tries, then a centre crop of clamped aspect."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * random.uniform(*scale)
        aspect = math.exp(random.uniform(*log_ratio))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            return random.randint(0, h - ch), random.randint(0, w - cw), ch, cw
    aspect = w / h
    if aspect < ratio[0]:
        cw, ch = w, round(w / ratio[0])
    elif aspect > ratio[1]:
        ch, cw = h, round(h * ratio[1])
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def resized_crop(x: torch.Tensor, box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    """Cut ``box`` from ``(C, T, H, W)`` and resize it to ``size x size`` (bilinear, antialiased) as float."""
    top, left, ch, cw = box
    x = x[..., top : top + ch, left : left + cw].float()
    if (ch, cw) == (size, size):
        return x
    y = F.interpolate(x.transpose(0, 1), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return y.transpose(0, 1)


# -- RandAugment ---------------------------------------------------------------------------------------------
_MAX_LEVEL = 10.0
# PyTorchVideo's RandAugment op set and ranges (``pytorchvideo/transforms/rand_augment.py``): (base, max change)
RANDAUG_OPS: dict[str, tuple[float, float] | None] = {
    "AdjustBrightness": (1, 0.9),
    "AdjustContrast": (1, 0.9),
    "AdjustSaturation": (1, 0.9),
    "AdjustSharpness": (1, 0.9),
    "AutoContrast": None,
    "Equalize": None,
    "Invert": None,
    "Rotate": (0, 30),
    "Posterize": (4, 4),
    "Solarize": (1, 1),
    "ShearX": (0, 0.3),
    "ShearY": (0, 0.3),
    "TranslateX": (0, 0.45),
    "TranslateY": (0, 0.45),
}


_BILINEAR = InterpolationMode.BILINEAR


def _affine(x: torch.Tensor, fill: list[float], *, translate=(0, 0), shear=(0.0, 0.0)) -> torch.Tensor:
    return TF.affine(
        x, angle=0.0, translate=list(translate), scale=1.0, shear=list(shear), interpolation=_BILINEAR, fill=fill
    )


# name -> op(frames, arg, fill) (timm's ``NAME_TO_OP``); ``arg`` comes from the level by :func:`_op_arg`
NAME_TO_OP: dict[str, Callable[[torch.Tensor, float, list[float]], torch.Tensor]] = {
    "AdjustBrightness": lambda x, v, fill: TF.adjust_brightness(x, v),
    "AdjustContrast": lambda x, v, fill: TF.adjust_contrast(x, v),
    "AdjustSaturation": lambda x, v, fill: TF.adjust_saturation(x, v),
    "AdjustSharpness": lambda x, v, fill: TF.adjust_sharpness(x, v),
    "AutoContrast": lambda x, v, fill: TF.autocontrast(x),
    "Equalize": lambda x, v, fill: TF.equalize(x),
    "Invert": lambda x, v, fill: TF.invert(x),
    "Rotate": lambda x, v, fill: TF.rotate(x, v, interpolation=_BILINEAR, fill=fill),
    "Posterize": lambda x, v, fill: TF.posterize(x, v),
    "Solarize": lambda x, v, fill: TF.solarize(x, v),
    "ShearX": lambda x, v, fill: _affine(x, fill, shear=(math.degrees(math.atan(v)), 0.0)),
    "ShearY": lambda x, v, fill: _affine(x, fill, shear=(0.0, math.degrees(math.atan(v)))),
    "TranslateX": lambda x, v, fill: _affine(x, fill, translate=(round(v * x.shape[-1]), 0)),
    "TranslateY": lambda x, v, fill: _affine(x, fill, translate=(0, round(v * x.shape[-2]))),
}


def _op_arg(name: str, level: float) -> float:
    """An op's argument at ``level`` (PyTorchVideo's ``_LEVEL_TO_ARG``): ``base +- level/10 * change`` with a
    random sign; Posterize's bits and Solarize's threshold fall with the level instead."""
    params = RANDAUG_OPS[name]
    if params is None:
        return 0.0
    base, change = params
    frac = level / _MAX_LEVEL
    signed = (
        frac if random.random() > 0.5 else -frac
    ) * change  # drawn for every ranged op: one RNG stream whatever the op
    if name == "Posterize":
        return int(base - int(frac * change))
    if name == "Solarize":
        return int((base - frac * change) * 255)
    return base + signed


def _apply_op(x: torch.Tensor, name: str, level: float, fill: list[float]) -> torch.Tensor:
    """One op on uint8 ``(T, C, H, W)``: torchvision v2 functionals treat leading dims as a batch with one set of
    parameters, so every frame gets the same change."""
    return NAME_TO_OP[name](x, _op_arg(name, level), fill)


class RandAugment:
    """RandAugment (Cubuk et al. 2020) for clips, configured by a timm-style string.

    ``rand-m7-n4-mstd0.5-inc1``: ``n`` ops drawn without replacement from :data:`RANDAUG_OPS`, each applied with
    probability ``p`` (default 0.5) at a level drawn from ``N(m, mstd)`` clipped to ``[0, 10]`` (PyTorchVideo's
    sampling, which mmaction2's UniFormerV2 recipe uses with m=7, n=4). PyTorchVideo's ops already grow with the
    level, so ``inc1`` is accepted and ``inc0`` is refused. Input and output: uint8 ``(T, C, H, W)``.
    """

    def __init__(self, magnitude: float = 9, num_ops: int = 2, mstd: float = 0.5, prob: float = 0.5) -> None:
        if not 0 <= magnitude <= _MAX_LEVEL or not 1 <= num_ops <= len(RANDAUG_OPS):
            raise ValueError(
                f"RandAugment: need 0 <= m <= 10 and 1 <= n <= {len(RANDAUG_OPS)}; got m={magnitude}, n={num_ops}"
            )
        self.magnitude, self.num_ops, self.mstd, self.prob = magnitude, num_ops, mstd, prob

    @classmethod
    def from_string(cls, spec: str) -> RandAugment:
        parts = spec.split("-")
        if parts[0] != "rand":
            raise ValueError(
                f"RandAugment spec {spec!r}: expected it to start with 'rand-' (e.g. 'rand-m7-n4-mstd0.5')"
            )
        kw: dict[str, float] = {}
        for part in parts[1:]:
            m = re.fullmatch(r"(mstd|inc|m|n|p)(\d+(?:\.\d+)?)", part)
            if m is None:
                raise ValueError(
                    f"RandAugment spec {spec!r}: cannot parse {part!r}; expected m<float>, n<int>,"
                    " mstd<float>, p<float> or inc1"
                )
            kw[m.group(1)] = float(m.group(2))
        if kw.pop("inc", 1.0) != 1.0:
            raise ValueError(f"RandAugment spec {spec!r}: only increasing-magnitude ops (inc1) are implemented")
        return cls(
            magnitude=kw.get("m", 9), num_ops=int(kw.get("n", 2)), mstd=kw.get("mstd", 0.5), prob=kw.get("p", 0.5)
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8:
            raise TypeError(f"RandAugment expects uint8 frames; got {x.dtype}")
        fill = [128.0] * x.shape[-3]
        for name in random.sample(list(RANDAUG_OPS), self.num_ops):
            if random.random() >= self.prob:
                continue
            level = min(
                _MAX_LEVEL, max(0.0, random.gauss(self.magnitude, self.mstd) if self.mstd > 0 else self.magnitude)
            )
            x = _apply_op(x, name, level, fill)
        return x


class RandomErasing:
    """Erase one random box (area ``scale`` of the frame, log-uniform aspect) through all frames of a normalised
    ``(C, T, H, W)`` clip with per-pixel N(0, 1) noise shared across frames (timm's ``mode='pixel'``, one cube)."""

    def __init__(
        self, prob: float, scale: tuple[float, float] = (0.02, 1 / 3), ratio: tuple[float, float] = (0.3, 3.3)
    ):
        self.prob, self.scale, self.log_ratio = prob, scale, (math.log(ratio[0]), math.log(ratio[1]))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if random.random() >= self.prob:
            return x
        c, _, h, w = x.shape
        for _ in range(10):
            area = h * w * random.uniform(*self.scale)
            aspect = math.exp(random.uniform(*self.log_ratio))
            eh, ew = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < eh < h and 0 < ew < w:
                top, left = random.randint(0, h - eh), random.randint(0, w - ew)
                x = x.clone()
                x[:, :, top : top + eh, left : left + ew] = torch.randn(c, 1, eh, ew, dtype=x.dtype)
                return x
        return x


def label_swap_map(pairs: Sequence[Sequence[str]] | None, class_names: Sequence[str]) -> dict[int, int]:
    """Class index -> class index a horizontal flip turns it into, from ``[[left_name, right_name], ...]``."""
    index = {n: i for i, n in enumerate(class_names)}
    swap: dict[int, int] = {}
    for pair in pairs or []:
        if len(pair) != 2:
            raise ValueError(f"data.hflip_label_pairs: expected [name, name] pairs; got {pair!r}")
        unknown = [n for n in pair if n not in index]
        if unknown:
            raise ValueError(f"data.hflip_label_pairs: {unknown} not among the dataset's {len(class_names)} classes")
        a, b = index[pair[0]], index[pair[1]]
        swap[a], swap[b] = b, a
    return swap


class TrainTransform:
    """uint8 ``(C, T, H, W)`` clip and its label -> normalised float ``(C, T, crop, crop)`` and the label.

    ``crop``: ``scale_jitter`` (random short side in ``short_side``, then a random crop) or ``random_resized``
    (``rrc_scale`` / ``rrc_ratio``). Then a horizontal flip with probability 0.5 when ``hflip`` (labels in
    ``swap`` change to their mirror class), ``rand_augment``, normalisation and ``random_erasing``.
    """

    def __init__(
        self,
        *,
        crop_size: int,
        short_side: tuple[int, int],
        hflip: bool,
        mean: Sequence[float],
        std: Sequence[float],
        crop: str = "scale_jitter",
        rrc_scale: tuple[float, float] = (0.08, 1.0),
        rrc_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        swap: dict[int, int] | None = None,
        rand_augment: str | None = None,
        random_erasing: float = 0.0,
    ) -> None:
        if crop not in ("scale_jitter", "random_resized"):
            raise ValueError(f"data.train_crop must be 'scale_jitter' or 'random_resized'; got {crop!r}")
        self.crop_size, self.short_side, self.hflip, self.crop = crop_size, short_side, hflip, crop
        self.rrc_scale, self.rrc_ratio, self.swap = rrc_scale, rrc_ratio, swap or {}
        self.mean, self.std = mean, std
        self.rand_augment = RandAugment.from_string(rand_augment) if rand_augment else None
        self.random_erasing = RandomErasing(random_erasing) if random_erasing > 0 else None

    def __call__(self, x: torch.Tensor, label: int = 0) -> tuple[torch.Tensor, int]:
        h, w = x.shape[-2:]
        if self.crop == "scale_jitter":
            box = scale_jitter_box(h, w, self.crop_size, self.short_side)
        else:
            box = random_resized_box(h, w, self.rrc_scale, self.rrc_ratio)
        x = resized_crop(x, box, self.crop_size)
        if self.hflip and random.random() < 0.5:
            x = x.flip(-1)
            label = self.swap.get(label, label)
        if self.rand_augment is not None:
            frames = x.round_().clamp_(0, 255).to(torch.uint8).transpose(0, 1)  # T C H W
            x = self.rand_augment(frames).transpose(0, 1)
        x = normalize(x, self.mean, self.std)
        if self.random_erasing is not None:
            x = self.random_erasing(x)
        return x, label


class MixupCutmix:
    """Batch mixup / CutMix (timm's ``Mixup`` in batch mode): each batch is mixed with its reverse, by mixup
    (``lam ~ Beta(mixup_alpha)``) or, with probability ``switch_prob`` when both are on, CutMix of one box through
    all frames (``lam`` corrected to the box's area). Returns ``(B, num_classes)`` float targets; label smoothing
    is left to the loss (``model.label_smoothing`` applies to soft targets alike)."""

    def __init__(
        self,
        num_classes: int,
        *,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
    ) -> None:
        if mixup_alpha < 0 or cutmix_alpha < 0 or not 0 <= prob <= 1:
            raise ValueError(f"mixup: need alphas >= 0 and 0 <= prob <= 1; got {mixup_alpha}, {cutmix_alpha}, {prob}")
        self.num_classes, self.mixup_alpha, self.cutmix_alpha = num_classes, mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob = prob, switch_prob

    @property
    def enabled(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(self, video: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        target = label if label.is_floating_point() else F.one_hot(label, self.num_classes).to(video.dtype)
        if not self.enabled or random.random() >= self.prob:
            return video, target
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or random.random() < self.switch_prob)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        flipped = video.flip(0)
        if use_cutmix:
            h, w = video.shape[-2:]
            cut = math.sqrt(1 - lam)
            ch, cw = int(h * cut), int(w * cut)
            cy, cx = random.randint(0, h - 1), random.randint(0, w - 1)
            y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
            x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
            video = video.clone()
            video[..., y0:y1, x0:x1] = flipped[..., y0:y1, x0:x1]
            lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
        else:
            video = video * lam + flipped * (1 - lam)
        return video, target * lam + target.flip(0) * (1 - lam)


class EvalTransform:
    """Short-side resize, then crop ``index`` of ``num_crops`` along the long side, normalise.

    :meth:`resize_frame` is the resize of one frame: decoders run it as frames arrive (the resize treats frames
    independently, so the result is the same, bit for bit) and the clip's resize is then a no-op."""

    def __init__(self, *, crop_size: int, short_side: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.crop_size, self.short_side, self.mean, self.std = crop_size, short_side, mean, std

    def resize_frame(self, frame: torch.Tensor) -> torch.Tensor:
        """``(C, H, W)`` uint8 -> ``(C, h, w)`` float with ``min(h, w) == short_side``."""
        return resize_short_side(frame.float()[:, None], self.short_side)[:, 0]

    def __call__(self, x: torch.Tensor, index: int = 0, num_crops: int = 1) -> torch.Tensor:
        x = resize_short_side(x.float(), self.short_side)
        return normalize(spatial_crop(x, self.crop_size, index, num_crops), self.mean, self.std)
