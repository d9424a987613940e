"""Shards of a multi-view dataset for ``vt features``: a fixed plan, a loader that skips finished shards, and
the output folder's bookkeeping.

Shard ``k`` holds videos ``[k*S, (k+1)*S)`` of the listing, and its views are cut into the same batches on every
run (a batch never spans two shards), so a shard's values do not depend on which shards were already done, on
the number of ranks, or on which rank computed it: a resumed run writes byte-identical files. Under DDP each
rank takes whole shards (``pending[rank::world]``) through :class:`ShardSampler`, a ``DistributedSampler`` that
Lightning leaves in place.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import Dataset, DistributedSampler, default_collate

from video_transformers.data.dataset import MultiViewDataset
from video_transformers.data.inflight import ReportingDataLoader
from video_transformers.utils.provenance import text_sha256

log = logging.getLogger(__name__)

SETTINGS = "features.json"
INDEX = "index.csv"


@dataclass(frozen=True)
class ShardPlan:
    """``num_videos`` videos of ``views`` views each, ``shard_size`` videos per shard, batches of at most
    ``batch_size`` views that never span two shards."""

    num_videos: int
    views: int
    shard_size: int
    batch_size: int

    def __post_init__(self) -> None:
        if self.shard_size < 1 or self.batch_size < 1:
            raise ValueError(f"--shard_size and --batch_size must be >= 1; got {self.shard_size}, {self.batch_size}")

    @property
    def num_shards(self) -> int:
        return -(-self.num_videos // self.shard_size)

    def videos(self, shard: int) -> range:
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, self.num_videos))

    def items(self, shard: int) -> range:
        """Dataset items (views) of ``shard``: ``video * views + view``."""
        v = self.videos(shard)
        return range(v.start * self.views, v.stop * self.views)

    def batches(self, shard: int) -> list[range]:
        items = self.items(shard)
        return [items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size)]


class ShardBatches(Dataset):
    """Item ``i`` is the ``i``-th batch of the plan (shards in order), collated, with its ``shard``."""

    def __init__(self, dataset: MultiViewDataset, plan: ShardPlan) -> None:
        self.dataset, self.plan = dataset, plan
        self.index = [(k, b) for k in range(plan.num_shards) for b in plan.batches(k)]
        self.first = {}  # shard -> its first batch's position in self.index
        for i, (k, _) in enumerate(self.index):
            self.first.setdefault(k, i)
        self.source = dataset.source  # ReportingDataLoader names the videos in flight through it

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        shard, items = self.index[i]
        batch = default_collate([self.dataset[j] for j in items])
        batch.pop("skipped", None)  # skip_bad is off: a run-time decode failure stops the run
        batch["shard"] = shard
        return batch

    def batch_ids(self, shards: list[int]) -> list[int]:
        return [self.first[k] + j for k in shards for j in range(len(self.plan.batches(k)))]


class ShardSampler(DistributedSampler):
    """This rank's batches: every batch of shards ``pending[rank::world]``, in order."""

    def __init__(self, batches: ShardBatches, pending: list[int], *, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(batches, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.shards = pending[rank::num_replicas]
        self.ids = batches.batch_ids(self.shards)

    def __iter__(self):  # noqa: ANN204
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)


# -- the output folder ----------------------------------------------------------------------------------------
def shard_stem(shard: int) -> str:
    return f"shard_{shard:05d}"


def finished_shards(out: Path, plan: ShardPlan, suffix: str) -> list[int]:
    """Shards whose feature file and index rows are both in place (each is renamed into place when complete)."""
    return [k for k in range(plan.num_shards) if all((out / (shard_stem(k) + s)).is_file() for s in (suffix, ".csv"))]


def prepare_out(out: Path, settings: dict[str, Any]) -> None:
    """Create ``out`` with ``features.json``, or check that an existing one was written with ``settings``."""
    path = out / SETTINGS
    if path.is_file():
        old = json.loads(path.read_text())
        changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if changed:
            diffs = "; ".join(f"{k}: {json.dumps(old.get(k))} -> {json.dumps(settings.get(k))}" for k in changed)
            raise ValueError(f"{path}: {out} holds features made with other settings ({diffs}); use a new --out")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out}: exists and is not a vt features folder (no {SETTINGS}); use a new --out")
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(settings, indent=1) + "\n")
    tmp.replace(path)


def merge_index(out: Path, plan: ShardPlan) -> Path:
    """``index.csv``: the shards' rows in shard order (one header)."""
    lines: list[str] = []
    for k in range(plan.num_shards):
        rows = (out / f"{shard_stem(k)}.csv").read_text().splitlines(keepends=True)
        lines += rows if not lines else rows[1:]
    tmp = out / f"{INDEX}.{id(lines)}.tmp"
    tmp.write_text("".join(lines))
    tmp.replace(out / INDEX)
    return out / INDEX


# -- the data module ------------------------------------------------------------------------------------------
@dataclass
class FeatureSet:
    """What :class:`FeatureData` embeds: the multi-view dataset, the class names of its labels, what the check
    pass left out (one message per video), and the clip / dataset settings recorded in ``features.json``."""

    dataset: MultiViewDataset
    class_names: list[str]
    left_out: list[str]
    settings: dict[str, Any]

    def listing_sha256(self) -> str:
        """sha256 of the embedded videos' ``path<TAB>label`` lines, in order."""
        records = self.dataset.source.records
        return text_sha256("".join(f"{r.path}\t{r.label}\n" for r in records))


class FeatureData(L.LightningDataModule):
    """Batches of the shards not yet written to ``out``. ``make(trainer)`` builds the :class:`FeatureSet` on each
    rank (with the trainer attached, so a data module reads the model's normalisation); rank 0 checks ``out``
    (:func:`prepare_out`) and lists the finished shards, which every rank then skips."""

    def __init__(
        self,
        make: Callable[[L.Trainer | None], FeatureSet],
        *,
        out: Path,
        settings: dict[str, Any],
        shard_size: int,
        batch_size: int,
        suffix: str,
        num_workers: int = 0,
        timeout: float = 0.0,
    ) -> None:
        super().__init__()
        self.make, self.out, self.settings, self.suffix = make, Path(out), settings, suffix
        self.shard_size, self.batch_size, self.num_workers, self.timeout = shard_size, batch_size, num_workers, timeout
        self.data: FeatureSet | None = None
        self.plan: ShardPlan | None = None
        self.done: list[int] = []
        self.pending: list[int] = []

    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        trainer = getattr(self, "trainer", None)
        self.data = self.make(trainer)
        ds = self.data.dataset
        ds.skip_bad = False
        self.plan = ShardPlan(len(ds.source), ds.views_per_video, self.shard_size, self.batch_size)
        done: list[int] | None = None
        if trainer is None or trainer.is_global_zero:
            listing = {"videos": self.plan.num_videos, "listing_sha256": self.data.listing_sha256()}
            prepare_out(self.out, {**self.settings, **self.data.settings, **listing, "shard_size": self.shard_size})
            for stale in self.out.glob(".shard_*.tmp"):  # left by a killed run
                stale.unlink()
            done = finished_shards(self.out, self.plan, self.suffix)
        if trainer is not None:  # one rank reads the folder; all skip the same shards
            done = trainer.strategy.broadcast(done, src=0)
        self.done = list(done)
        self.pending = [k for k in range(self.plan.num_shards) if k not in set(self.done)]

    def predict_dataloader(self) -> ReportingDataLoader:
        trainer = getattr(self, "trainer", None)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        batches = ShardBatches(self.data.dataset, self.plan)
        return ReportingDataLoader(
            batches,
            inflight=self.data.dataset.source.inflight,
            batch_size=None,  # items are whole batches
            sampler=ShardSampler(batches, self.pending, num_replicas=world, rank=rank),
            num_workers=self.num_workers,
            persistent_workers=False,
            timeout=self.timeout if self.num_workers > 0 else 0.0,
        )
