"""``VideoClassifier``: the LightningModule that trains and evaluates any registered backbone.

Cross-entropy with label smoothing; an injected optimizer (AdamW by default) with no weight decay on
biases, norms, tokens and position embeddings; linear warm-up + cosine decay per step; top-1/top-5 per
stage. Validation and test scores are aggregated per video over all views (see ``multiview``).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics.classification import MulticlassAccuracy

from video_transformers.lit.multiview import ViewCollector, aggregate_views, parse_rule
from video_transformers.lit.schedule import warmup_cosine
from video_transformers.models import create_model


def default_optimizer(params: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)


class VideoClassifier(L.LightningModule):
    """Video classification with a backbone from the registry.

    Args:
        backbone: registered model name (``video_transformers.list_models()``).
        backbone_kwargs: overrides of the registered configuration (depth, width, drop-path, ...).
        num_classes / num_frames / img_size / class_names: linked from the data module by ``vt``.
        label_smoothing: cross-entropy label smoothing (Szegedy et al. 2016).
        optimizer: optimizer factory, called with parameter groups.
        warmup_epochs / min_lr_ratio: the warm-up + cosine schedule.
        aggregate: per-video rule over views, ``{logits,softmax}_{mean,sum,max}``.
    """

    def __init__(
        self,
        *,
        backbone: str = "vivit_base_factorised_encoder_16x2",
        backbone_kwargs: dict[str, Any] | None = None,
        num_classes: int = 400,
        num_frames: int | None = None,
        img_size: int | None = None,
        class_names: list[str] | None = None,
        label_smoothing: float = 0.1,
        optimizer: OptimizerCallable = default_optimizer,
        warmup_epochs: float = 1.0,
        min_lr_ratio: float = 0.01,
        aggregate: str = "softmax_mean",
    ) -> None:
        super().__init__()
        parse_rule(aggregate)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"model.class_names has {len(class_names)} names but num_classes is {num_classes}")
        self.save_hyperparameters(ignore=["optimizer"])
        sizes = {k: v for k, v in dict(num_frames=num_frames, img_size=img_size).items() if v is not None}
        self.model = create_model(backbone, num_classes=num_classes, **{**sizes, **(backbone_kwargs or {})})
        self.model.class_names = class_names
        self.optimizer_factory = optimizer
        k = min(5, num_classes)
        self.metrics = torch.nn.ModuleDict(
            {
                f"{stage}_{name}": MulticlassAccuracy(num_classes, top_k=top_k, average="micro")
                for stage in ("train", "val", "test")
                for name, top_k in (("acc1", 1), (f"acc{k}", k))
            }
        )
        self.top_k = k
        self.collector = ViewCollector()

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.model(video)

    # -- training -----------------------------------------------------------------------------------
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self(batch["video"])
        # labels are class indices (B,) or, after mixup/cutmix, (B, C) probabilities: cross_entropy takes both
        # and smooths either; accuracy counts the dominant class of a soft target
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.hparams.label_smoothing)
        hard = batch["label"].argmax(-1) if batch["label"].is_floating_point() else batch["label"]
        n = len(batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        for name in ("acc1", f"acc{self.top_k}"):
            metric = self.metrics[f"train_{name}"]
            metric(logits.detach(), hard)
            self.log(f"train/{name}", metric, on_step=False, on_epoch=True, batch_size=n)
        return loss

    # -- evaluation: per-view logits, aggregated per video at epoch end --------------------------------
    def _eval_step(self, batch: dict, stage: str) -> None:
        logits = self(batch["video"])
        loss = F.cross_entropy(logits, batch["label"])
        self.log(f"{stage}/clip_loss", loss, batch_size=len(batch["label"]), sync_dist=True)
        self.collector.update(logits, batch)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_validation_epoch_start(self) -> None:
        self.collector.reset()

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_epoch_end(self) -> None:
        self._aggregate("val")

    def on_test_epoch_end(self) -> None:
        result = self._aggregate("test")
        if result is not None:
            acc1, acck, videos, views = result
            rank_zero_info(
                f"test: {videos} videos x {views} views, {self.hparams.aggregate} -> "
                f"video-level top-1 {100 * acc1:.2f}%, top-{self.top_k} {100 * acck:.2f}%"
            )

    def predict_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        return {"logits": self(batch["video"]), "video_index": batch["video_index"], "view_index": batch["view_index"]}

    def _gather(self, x: torch.Tensor) -> torch.Tensor:
        """All ranks' rows of ``x`` (ranks may hold different counts: pad, gather, strip)."""
        if self.trainer.world_size == 1:
            return x
        n = torch.tensor([len(x)], device=x.device)
        counts = self.all_gather(n).flatten()
        pad = int(counts.max()) - len(x)
        padded = torch.cat([x, x.new_zeros((pad,) + x.shape[1:])]) if pad else x
        gathered = self.all_gather(padded)  # world, max_n, ...
        return torch.cat([g[: int(c)] for g, c in zip(gathered, counts)])

    def _aggregate(self, stage: str) -> tuple[float, float, int, float] | None:
        if self.trainer.sanity_checking or len(self.collector) == 0:
            self.collector.reset()
            return None
        local = self.collector.cat()
        self.collector.reset()
        views = {k: self._gather(v) for k, v in local.items()}
        _, scores, labels, counts = aggregate_views(
            views["logits"], views["video_index"], views["view_index"], views["labels"], self.hparams.aggregate
        )
        acc1 = self.metrics[f"{stage}_acc1"](scores, labels)
        acck = self.metrics[f"{stage}_acc{self.top_k}"](scores, labels)
        self.metrics[f"{stage}_acc1"].reset()
        self.metrics[f"{stage}_acc{self.top_k}"].reset()
        # Every rank holds the same gathered result, so no further reduction is needed.
        self.log(f"{stage}/acc1", acc1, prog_bar=True, rank_zero_only=False)
        self.log(f"{stage}/acc{self.top_k}", acck, rank_zero_only=False)
        self.log(f"{stage}/videos", float(len(labels)), rank_zero_only=False)
        return float(acc1), float(acck), len(labels), float(counts.float().mean())

    # -- optimisation -------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict:
        skip = self.model.no_weight_decay() if hasattr(self.model, "no_weight_decay") else set()
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim <= 1 or name in skip else decay).append(p)
        optimizer = self.optimizer_factory([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}])
        total = int(self.trainer.estimated_stepping_batches)
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        warmup = round(self.hparams.warmup_epochs * total / epochs)
        scheduler = warmup_cosine(optimizer, total_steps=total, warmup_steps=warmup, min_lr_ratio=self.hparams.min_lr_ratio)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
