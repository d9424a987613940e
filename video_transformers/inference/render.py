"""Figures: a per-window class-score timeline, and frames with attention heat-map overlays (PNG grid + GIF)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)


def _pyplot():  # noqa: ANN202 (matplotlib.pyplot module)
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_timeline(
    starts: Sequence[float],
    ends: Sequence[float],
    scores: torch.Tensor,
    class_names: Sequence[str],
    path: Path,
    *,
    topk: int = 5,
    title: str = "",
) -> list[str]:
    """Plot the ``topk`` classes (by peak score) over time, one point per window at its centre.

    ``scores`` is ``(windows, classes)`` probabilities. Returns the plotted class names.
    """
    plt = _pyplot()
    centres = (np.asarray(starts) + np.asarray(ends)) / 2
    k = min(topk, scores.shape[1])
    top = scores.max(dim=0).values.topk(k).indices.tolist()
    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    for c in top:
        ax.plot(centres, scores[:, c].numpy(), marker="o", markersize=3, label=class_names[c])
    ax.set_xlabel("time (s), window centre")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.set_xlim(min(starts), max(ends))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return [class_names[c] for c in top]


def denormalize(video: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(C, T, H, W)`` normalised -> ``(T, H, W, 3)`` uint8 frames."""
    m = torch.tensor(mean).view(-1, 1, 1, 1)
    s = torch.tensor(std).view(-1, 1, 1, 1)
    x = ((video.float().cpu() * s + m) * 255).clamp(0, 255).round().byte()
    return x.permute(1, 2, 3, 0).numpy()


def upsample_map(grid: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` patch map -> ``(H, W)`` by nearest-patch upsampling (each patch covers its pixels)."""
    h, w = grid.shape
    return np.kron(grid.numpy(), np.ones((size[0] // h, size[1] // w), dtype=np.float32))


def overlay(frame: np.ndarray, heat: np.ndarray, vmax: float, alpha: float = 0.5) -> np.ndarray:
    """Blend a jet-coloured heat map (scaled to ``[0, vmax]``) onto an RGB uint8 frame."""
    plt = _pyplot()
    colours = plt.get_cmap("jet")(np.clip(heat / max(vmax, 1e-12), 0, 1))[..., :3]
    return (frame.astype(np.float32) * (1 - alpha) + colours * 255 * alpha).clip(0, 255).astype(np.uint8)


def render_attention(
    frames: np.ndarray,
    maps: np.ndarray,
    out_dir: Path,
    *,
    captions: Sequence[str],
    title: str,
    stem: str = "attention",
    scale: int = 4,
) -> tuple[Path, Path]:
    """Write ``<stem>.png`` (row 1: frames, row 2: overlays) and ``<stem>.gif`` (overlay | frame, animated).

    ``frames`` is ``(T, H, W, 3)`` uint8, ``maps`` ``(T, H, W)`` non-negative heat (one per frame). One colour
    scale (the largest value) is shared by all frames so their intensities compare.
    """
    from PIL import Image

    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    t = len(frames)
    vmax = float(maps.max())
    blended = [overlay(f, m, vmax) for f, m in zip(frames, maps, strict=True)]
    fig, axes = plt.subplots(2, t, figsize=(1.6 * t, 3.8), dpi=100, squeeze=False)
    for i in range(t):
        axes[0, i].imshow(frames[i])
        axes[1, i].imshow(blended[i])
        axes[0, i].set_title(captions[i], fontsize=7)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("input", fontsize=8)
    axes[1, 0].set_ylabel("rollout", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    png = out_dir / f"{stem}.png"
    fig.savefig(png)
    plt.close(fig)

    gif = out_dir / f"{stem}.gif"
    pics = [
        Image.fromarray(np.concatenate([b, f], axis=1)).resize(
            (2 * frames.shape[2] * scale, frames.shape[1] * scale), Image.NEAREST
        )
        for b, f in zip(blended, frames, strict=True)
    ]
    pics[0].save(gif, save_all=True, append_images=pics[1:], duration=250, loop=0)
    return png, gif
