"""``vt features`` in Lightning's predict loop: :class:`FeatureExtractor` embeds each batch of views, and
:class:`FeatureWriter` (a ``BasePredictionWriter``) writes a shard once all its batches are in.

Each shard is ``shard_<k>.safetensors`` (``features`` ``(rows, D)`` float32, ``video`` and ``view`` indices) or
``shard_<k>.npy`` (the features alone) plus ``shard_<k>.csv``: one row per embedding (``path``, ``label``,
``view``, ``start`` / ``end`` seconds of the clip). Both are written under a temporary name and renamed, so a
shard is either complete or absent; :func:`~video_transformers.lit.shards.merge_index` joins the CSVs into
``index.csv`` at the end. On SIGTERM the run stops after the current batch; finished shards stay.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import nn

from video_transformers.inference.clips import describe_views
from video_transformers.inference.features import Embedder, Layer
from video_transformers.lit.shards import FeatureData, shard_stem

log = logging.getLogger(__name__)

Pool = Literal["none", "mean", "max"]
FORMATS = {"safetensors": ".safetensors", "npy": ".npy"}


class FeatureExtractor(L.LightningModule):
    """Wraps a video model: ``predict_step`` returns the batch's ``(B, D)`` float32 embeddings of ``layer``
    with the batch's ``video_index`` / ``view_index`` / ``shard``."""

    def __init__(self, model: nn.Module, layer: Layer) -> None:
        super().__init__()
        self.model = model.eval()
        self.embedder = Embedder(self.model, layer)

    @property
    def input_normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Mean/std the model's weights expect (the data module uses them when its own are unset, as in vt test)."""
        return tuple(self.model.mean), tuple(self.model.std)

    def predict_step(self, batch: dict, batch_idx: int) -> dict[str, Any]:
        return {
            "features": self.embedder(batch["video"]).float(),
            "video_index": batch["video_index"],
            "view_index": batch["view_index"],
            "shard": batch["shard"],
        }


class FeatureWriter(BasePredictionWriter):
    """Collects each shard's batches and writes the shard when the last one arrives (see the module docstring)."""

    def __init__(self, *, pool: Pool = "none", fmt: str = "safetensors") -> None:
        super().__init__(write_interval="batch")
        if pool not in ("none", "mean", "max"):
            raise ValueError(f"--pool {pool!r}: expected none, mean or max")
        if fmt not in FORMATS:
            raise ValueError(f"--format {fmt!r}: expected one of {sorted(FORMATS)}")
        self.pool, self.fmt = pool, fmt
        self._parts: dict[int, list[dict[str, torch.Tensor]]] = {}
        self.written: list[int] = []

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        data: FeatureData = trainer.datamodule
        shard = int(prediction["shard"])
        parts = self._parts.setdefault(shard, [])
        parts.append({k: prediction[k].detach().cpu() for k in ("features", "video_index", "view_index")})
        if len(parts) == len(data.plan.batches(shard)):
            self.write_shard(data, shard, self._parts.pop(shard))
        if trainer.received_sigterm:  # Lightning's predict loop does not stop by itself
            raise SIGTERMException()

    def write_shard(self, data: FeatureData, shard: int, parts: list[dict[str, torch.Tensor]]) -> None:
        feats = torch.cat([p["features"] for p in parts])
        video = torch.cat([p["video_index"] for p in parts]).long()
        view = torch.cat([p["view_index"] for p in parts]).long()
        expected = torch.tensor(list(data.plan.items(shard)))
        if not torch.equal(video * data.plan.views + view, expected):
            raise RuntimeError(f"shard {shard}: views arrived out of order or incomplete")
        views = data.plan.views
        if self.pool != "none":  # rows are (video, view) in order: one row per video
            feats = feats.reshape(-1, views, feats.shape[1])
            feats = feats.mean(1) if self.pool == "mean" else feats.amax(1)
            video, view = video[::views], torch.full((len(feats),), -1)
        stem = data.out / shard_stem(shard)
        _replace(stem.with_suffix(".csv"), self._index_rows(data, shard, video, view).encode())
        _replace(stem.with_suffix(FORMATS[self.fmt]), self._tensor_bytes(feats, video, view, shard))
        self.written.append(shard)

    def _tensor_bytes(self, feats: torch.Tensor, video: torch.Tensor, view: torch.Tensor, shard: int) -> bytes:
        feats = feats.contiguous()
        if self.fmt == "npy":
            buf = io.BytesIO()
            np.save(buf, feats.numpy())
            return buf.getvalue()
        from safetensors.torch import save

        tensors = {"features": feats, "video": video.contiguous(), "view": view.contiguous()}
        # one metadata entry: safetensors writes a map of several in no fixed order, and resumed files must be equal
        return save(tensors, metadata={"vt_features": json.dumps({"pool": self.pool, "shard": shard})})

    def _index_rows(self, data: FeatureData, shard: int, video: torch.Tensor, view: torch.Tensor) -> str:
        ds, names = data.data.dataset, data.data.class_names
        f = io.StringIO(newline="")
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["shard", "row", "video", "path", "label", "view", "start", "end"])
        described: dict[int, list] = {}
        for row, (v, j) in enumerate(zip(video.tolist(), view.tolist(), strict=True)):
            if v not in described:
                described[v] = describe_views(ds, v)
            record, views = ds.source.records[v], described[v]
            label = names[record.label] if 0 <= record.label < len(names) else ""
            if j >= 0:
                name, start, end = views[j].name, views[j].start, views[j].end
            else:  # pooled over the video's views
                clips, crops = ds.num_clips, ds.num_crops
                name = f"{self.pool} of {clips}x{crops}"
                start, end = min(x.start for x in views), max(x.end for x in views)
            w.writerow([shard, row, v, record.path, label, name, f"{start:.4f}", f"{end:.4f}"])
        return f.getvalue()


def _replace(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder (a killed run leaves no half file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


__all__ = ["FORMATS", "FeatureExtractor", "FeatureWriter", "Pool"]
