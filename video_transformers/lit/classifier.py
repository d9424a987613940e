"""``VideoClassifier``: the LightningModule that trains and evaluates any registered backbone.

Cross-entropy with label smoothing; an injected optimizer (AdamW by default, with no weight decay on
biases, norms, tokens and position embeddings unless ``filter_bias_and_bn`` is off) and an injected lr
schedule (``lit/schedule.py``; linear warm-up + cosine by default), stepped per optimizer step; top-1/top-5 per
stage. Validation and test scores are aggregated per video over all views (see ``multiview``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from timm.models import group_parameters
from torchmetrics.classification import MulticlassAccuracy

from video_transformers.lit.multiview import (
    ViewCollector,
    aggregate_views,
    evaluated_videos,
    parse_rule,
    write_predictions,
)
from video_transformers.lit.schedule import Schedule, WarmupCosine
from video_transformers.models import create_model
from video_transformers.pretrained.common import PretrainedError
from video_transformers.pretrained.image_init import init_from_image
from video_transformers.pretrained.lightning_ckpt import SPEC_KEY, backbone_from_source

log = logging.getLogger(__name__)


def layer_ids(model: torch.nn.Module) -> tuple[dict[str, int], int]:
    """Depth of each parameter for layer-wise lr decay, and the number of blocks ``L``: timm's grouping
    (``group_parameters``) by the model's own ``group_matcher``: embeddings are layer 0, the blocks ``1..L`` in
    the order they run (ViViT Model 2's temporal blocks above its spatial ones), everything else (head, final
    norms, UniFormerV2's global blocks that read several levels of the stack) ``L + 1``."""
    ids = group_parameters(model, model.group_matcher(coarse=False), reverse=True)
    return ids, max(ids.values()) - 1


def default_optimizer(params: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)


class VideoClassifier(L.LightningModule):
    """Video classification with a backbone from the registry.

    Args:
        backbone: registered model name (``video_transformers.list_models()``).
        backbone_kwargs: overrides of the registered configuration (depth, width, drop-path, ...).
        num_classes / num_frames / img_size / class_names: linked from the data module by ``vt``
            (``num_classes=None``: the ``init_from`` checkpoint's, else 400).
        pretrained: image weights (timm name or local file) loaded with the family's image-init filter.
        on_pretrained_error: ``error`` (default), or ``random``: when the ``pretrained`` weights cannot be
            loaded (offline, say), say so loudly and go on from random weights (smoke runs only).
        init_from: any ``from_pretrained`` source (HF folder, official .pyth / UniFormerV2 .pth, this suite's
            .ckpt); the backbone's architecture is the checkpoint's (``backbone`` is ignored,
            ``backbone_kwargs`` override it) and a different class count gets a new head.
        label_smoothing: cross-entropy label smoothing (Szegedy et al. 2016).
        optimizer: optimizer factory, called with parameter groups.
        lr_schedule: the lr factor per fractional epoch (``lit/schedule.py``), stepped after every optimizer
            step; default: ``WarmupCosine(warmup_epochs=1, min_lr_ratio=0.01)``.
        filter_bias_and_bn: no weight decay on biases, norms and the model's ``no_weight_decay()`` tensors
            (timm's ``filter_bias_and_bn``); off, every parameter gets the optimizer's weight decay.
        aggregate: per-video rule over views, ``{logits,softmax}_{mean,sum,max}``.
        grad_checkpointing: recompute block activations in backward (``set_grad_checkpointing``).
        compile: ``torch.compile`` the backbone in place (state-dict keys unchanged).
        layer_decay: layer-wise lr decay (BEiT, Bao et al. 2022): block ``i`` of ``L`` gets
            ``lr * layer_decay ** (L + 1 - i)``, embeddings ``i = 0``, head and final norms ``i = L + 1``.
    """

    def __init__(
        self,
        *,
        backbone: str = "vivit_base_factorised_encoder_16x2",
        backbone_kwargs: dict[str, Any] | None = None,
        num_classes: int | None = None,
        num_frames: int | None = None,
        img_size: int | None = None,
        class_names: list[str] | None = None,
        pretrained: str | None = None,
        on_pretrained_error: Literal["error", "random"] = "error",
        init_from: str | None = None,
        label_smoothing: float = 0.1,
        optimizer: OptimizerCallable = default_optimizer,
        lr_schedule: Schedule | None = None,
        filter_bias_and_bn: bool = True,
        aggregate: str = "softmax_mean",
        grad_checkpointing: bool = False,
        compile: bool = False,
        layer_decay: float | None = None,
    ) -> None:
        super().__init__()
        parse_rule(aggregate)
        if class_names is not None and num_classes is not None and len(class_names) != num_classes:
            raise ValueError(f"model.class_names has {len(class_names)} names but num_classes is {num_classes}")
        if class_names is not None and num_classes is None and init_from is not None:
            num_classes = len(class_names)  # the names state the classes; the checkpoint's head follows them
        self.save_hyperparameters(ignore=["optimizer", "lr_schedule"])
        if pretrained is not None and init_from is not None:
            raise ValueError("model.pretrained (image weights) and model.init_from (a checkpoint) exclude each other")
        sizes = {k: v for k, v in dict(num_frames=num_frames, img_size=img_size).items() if v is not None}
        self._init_backbone(backbone, init_from, num_classes, {**sizes, **(backbone_kwargs or {})})
        if pretrained is not None:
            self._init_from_image(pretrained, on_pretrained_error)
        num_classes = self.hparams.num_classes = self.model.num_classes
        if class_names is not None:
            self.model.class_names = class_names
        if layer_decay is not None and not 0.0 < layer_decay <= 1.0:
            raise ValueError(f"model.layer_decay must be in (0, 1]; got {layer_decay}")
        if grad_checkpointing:
            self.model.set_grad_checkpointing(True)
        if compile:
            self.model.compile()  # in place: keeps the state-dict keys of the uncompiled model
        self.optimizer_factory = optimizer
        self.lr_schedule = lr_schedule if lr_schedule is not None else WarmupCosine(warmup_epochs=1, min_lr_ratio=0.01)
        self._init_metrics(num_classes)
        self.collector = ViewCollector()
        # Last per-video (scores, labels) per stage, for callbacks (confusion matrix, per-class accuracy).
        self.last_aggregated: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.last_video_ids: dict[str, torch.Tensor] = {}  # the dataset's video index of each row

    def _init_backbone(self, backbone: str, init_from: str | None, num_classes: int | None, kwargs: dict) -> None:
        """``self.model``: the registered ``backbone`` (400 classes unless told), or the model of the checkpoint
        ``init_from``; ``self.backbone_spec`` says how to rebuild one that no registry name describes."""
        self.backbone_spec = None
        if init_from is None:
            self.model = create_model(backbone, num_classes=400 if num_classes is None else num_classes, **kwargs)
        else:
            self.model, self.backbone_spec = backbone_from_source(init_from, num_classes=num_classes, **kwargs)

    def _init_metrics(self, num_classes: int) -> None:
        """Top-1 and top-``k`` accuracy (``k = min(5, num_classes)``) per stage."""
        k = self.top_k = min(5, num_classes)
        self.metrics = torch.nn.ModuleDict(
            {
                f"{stage}_{name}": MulticlassAccuracy(num_classes, top_k=top_k, average="micro")
                for stage in ("train", "val", "test")
                for name, top_k in (("acc1", 1), (f"acc{k}", k))
            }
        )

    def _init_from_image(self, source: str, on_error: str) -> None:
        try:
            init_from_image(self.model, source)
        except PretrainedError as e:
            if on_error != "random":
                raise
            log.warning(
                "\n%s\nmodel.pretrained %r could not be loaded: %s\nGOING ON FROM RANDOM WEIGHTS"
                " (model.on_pretrained_error: random): results of this run say nothing about the model.\n%s",
                "!" * 100,
                source,
                e,
                "!" * 100,
            )

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.model(video)

    @property
    def input_normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Mean/std the backbone's weights expect; the data module uses them when its own are None."""
        return tuple(self.model.mean), tuple(self.model.std)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another class count with a message that says how to fine-tune from it."""
        theirs = (checkpoint.get("hyper_parameters") or {}).get("num_classes")
        head = checkpoint.get("state_dict", {}).get("model.head.weight")
        theirs = head.shape[0] if theirs is None and head is not None else theirs
        ours = self.hparams.num_classes
        if theirs is not None and theirs != ours:
            try:
                path = self.trainer.ckpt_path or "the checkpoint"
            except RuntimeError:  # not attached to a trainer (load_from_checkpoint)
                path = "the checkpoint"
            raise ValueError(
                f"{path}: checkpoint has {theirs} classes, the data has {ours}. To fine-tune it on this data, start"
                f" from its weights with a new head: --model.init_from {path} (instead of --ckpt_path)"
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Read by from_pretrained: normalisation, and the architecture of an init_from backbone.
        norm = {"mean": list(self.model.mean), "std": list(self.model.std)}
        checkpoint[SPEC_KEY] = {**(self.backbone_spec or {}), **norm}

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
            # trainer.log_dir broadcasts under DDP, so every rank asks; rank zero writes (all hold the same scores)
            out = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "test_predictions.csv"
            if self.trainer.is_global_zero:
                ids, (scores, labels) = self.last_video_ids["test"], self.last_aggregated["test"]
                names = getattr(self.model, "class_names", None) or [str(i) for i in range(scores.shape[1])]
                write_predictions(out, evaluated_videos(self.trainer, ids), scores, labels, names, self.top_k)
                rank_zero_info(f"test: per-video scores in {out}")

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
        return torch.cat([g[: int(c)] for g, c in zip(gathered, counts, strict=True)])

    def _aggregate(self, stage: str) -> tuple[float, float, int, float] | None:
        if self.trainer.sanity_checking or len(self.collector) == 0:
            self.collector.reset()
            return None
        local = self.collector.cat()
        self.collector.reset()
        views = {k: self._gather(v) for k, v in local.items()}
        ids, scores, labels, counts = aggregate_views(
            views["logits"], views["video_index"], views["view_index"], views["labels"], self.hparams.aggregate
        )
        self.last_aggregated[stage] = (scores.detach().cpu(), labels.detach().cpu())
        self.last_video_ids[stage] = ids.detach().cpu()
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
        layers, num_layers = layer_ids(self.model)
        decay = self.hparams.layer_decay
        groups: dict[tuple[int, bool], dict] = {}
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            no_wd = self.hparams.filter_bias_and_bn and (p.ndim <= 1 or name in skip)
            layer = layers[name] if decay is not None else 0
            group = groups.setdefault((layer, no_wd), {"params": [], "lr_scale": 1.0})
            group["params"].append(p)
            if no_wd:
                group["weight_decay"] = 0.0
            if decay is not None:
                group["lr_scale"] = decay ** (num_layers + 1 - layer)
        optimizer = self.optimizer_factory([groups[k] for k in sorted(groups)])
        for group in optimizer.param_groups:  # before the scheduler records each group's initial lr
            group["lr"] *= group["lr_scale"]
        total = int(self.trainer.estimated_stepping_batches)
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        scheduler = self.lr_schedule.scheduler(optimizer, steps_per_epoch=total / epochs, max_epochs=epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
