"""Per-video aggregation of multi-view scores (e.g. 4 temporal clips x 3 spatial crops).

Views are keyed by ``(video_index, view_index)``: views of one video may arrive in different batches or
on different ranks, and a distributed sampler may pad a rank with repeated views; each view is counted
once before its video's scores are combined. ``vt test`` writes the per-video scores with
:func:`write_predictions` (``test_predictions.csv``), and ``vt predict`` aggregates its views with the same
:func:`aggregate_views`.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import lightning as L
import torch

Score = Literal["logits", "softmax"]
Reduce = Literal["mean", "sum", "max"]
AGGREGATIONS = [f"{s}_{r}" for s in ("logits", "softmax") for r in ("mean", "sum", "max")]
_REDUCE = {"mean": "mean", "sum": "sum", "max": "amax"}


def parse_views(text: str | int | tuple | list) -> tuple[int, int]:
    """``"4x3"`` (or ``(4, 3)``) -> 4 temporal clips x 3 spatial crops; an int ``n`` is 1 clip x ``n`` crops."""
    if isinstance(text, int) and not isinstance(text, bool):
        clips, crops = 1, text
    elif isinstance(text, list | tuple):
        clips, crops = (int(v) for v in text)
    else:
        parts = str(text).lower().replace("×", "x").split("x")
        if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"views {text!r}: expected CLIPSxCROPS, e.g. 4x3")
        clips, crops = (int(p) for p in parts)
    if clips < 1 or crops < 1:
        raise ValueError(f"views {text!r}: clips and crops must be >= 1")
    return clips, crops


def parse_rule(rule: str) -> tuple[Score, Reduce]:
    if rule not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {rule!r}; expected one of {AGGREGATIONS}")
    score, reduce = rule.split("_")
    return score, reduce  # type: ignore[return-value]


def aggregate_views(
    logits: torch.Tensor,
    video_index: torch.Tensor,
    view_index: torch.Tensor,
    labels: torch.Tensor,
    rule: str = "softmax_mean",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Combine ``(V, C)`` per-view logits into per-video scores.

    Returns ``(video_ids, scores (N, C), labels (N,), views_per_video (N,))`` for the ``N`` distinct
    videos, sorted by id. ``rule`` is ``{logits,softmax}_{mean,sum,max}``.
    """
    score, reduce = parse_rule(rule)
    # Count each (video, view) once: DDP samplers pad ranks by repeating items.
    key = video_index.long() * (int(view_index.max()) + 1) + view_index.long()
    _, first = _unique_first(key)
    logits, video_index, labels = logits[first], video_index[first].long(), labels[first]
    values = logits.float().softmax(-1) if score == "softmax" else logits.float()
    ids, inverse = torch.unique(video_index, sorted=True, return_inverse=True)
    out = values.new_zeros(len(ids), values.shape[1])
    out.scatter_reduce_(0, inverse[:, None].expand_as(values), values, reduce=_REDUCE[reduce], include_self=False)
    video_labels = labels.new_zeros(len(ids)).scatter_(0, inverse, labels)
    counts = torch.bincount(inverse, minlength=len(ids))
    return ids, out, video_labels, counts


def _unique_first(key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique values of ``key`` and the index of each one's first occurrence."""
    uniq, inverse = torch.unique(key, sorted=True, return_inverse=True)
    first = torch.full((len(uniq),), len(key), dtype=torch.long, device=key.device)
    first.scatter_reduce_(0, inverse, torch.arange(len(key), device=key.device), reduce="amin")
    return uniq, first


class ViewCollector:
    """Accumulates per-view outputs of one evaluation epoch on this rank."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.logits: list[torch.Tensor] = []
        self.video_index: list[torch.Tensor] = []
        self.view_index: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def update(self, logits: torch.Tensor, batch: dict) -> None:
        self.logits.append(logits.detach().float())
        self.video_index.append(batch["video_index"].detach())
        self.view_index.append(batch["view_index"].detach())
        self.labels.append(batch["label"].detach())

    def __len__(self) -> int:
        return sum(len(x) for x in self.labels)

    def cat(self) -> dict[str, torch.Tensor]:
        return {
            "logits": torch.cat(self.logits),
            "video_index": torch.cat(self.video_index),
            "view_index": torch.cat(self.view_index),
            "labels": torch.cat(self.labels),
        }


def write_predictions(
    path: Path,
    videos: Sequence[str],
    scores: torch.Tensor,
    labels: torch.Tensor,
    class_names: Sequence[str],
    topk: int = 5,
) -> Path:
    """``path`` as CSV, one row per video: ``path, label, predicted, top1, top1_score, ..., top<k>_score``
    (``label`` empty when unknown, i.e. negative). ``vt predict`` on the same files gives the same scores."""
    k = min(topk, scores.shape[1])
    values, idx = scores.float().topk(k, dim=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "predicted"] + [c for r in range(1, k + 1) for c in (f"top{r}", f"top{r}_score")])
        for video, label, vals, cls in zip(videos, labels.tolist(), values.tolist(), idx.tolist(), strict=True):
            top = [x for v, c in zip(vals, cls, strict=True) for x in (class_names[c], f"{v:.8f}")]
            w.writerow([video, class_names[label] if label >= 0 else "", class_names[cls[0]], *top])
    return path


def evaluated_videos(trainer: L.Trainer, ids: torch.Tensor) -> list[str]:
    """The file of each video index of the test loader's dataset (its ``source.records``), else the index."""
    loaders = trainer.test_dataloaders
    loader = loaders[0] if isinstance(loaders, list | tuple) else loaders
    records = getattr(getattr(getattr(loader, "dataset", None), "source", None), "records", None)
    return [str(records[i].path) if records is not None else str(i) for i in ids.tolist()]
