"""Training and evaluation from shards (``data.source: stream``): LitData streams each video's encoded bytes,
and the clip is cut in memory by the same machinery as for files on disk.

Each streamed item is one video. It becomes a one-video :class:`BytesSource` (the :class:`ClipSource` interface
over bytes in memory, decoded with PyAV / decord / torchcodec from a file-like object), and the item is what
:class:`TrainClipDataset` (one random clip, ``repeats`` augmented copies) or :class:`MultiViewDataset` (every
``clips x crops`` view) make of that source: same samplers, transforms and item keys. An evaluation item stacks a
video's views; :func:`collate_repeated` flattens them into the batch, so ``(video_index, view_index)`` aggregate as
for files. ``video_index`` is the video's position in its split, the same on every rank.

LitData splits the chunks across ranks and loader workers (each rank a disjoint part of every epoch; in training
``drop_last`` evens the ranks out, so they take the same number of steps), shuffles chunks and items per epoch
from one seed, and its ``StreamingDataLoader`` is the stateful loader whose state Lightning saves with every
checkpoint: a run resumed mid-epoch skips the videos that epoch already served.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from video_transformers.data.annotations import VideoRecord
from video_transformers.data.dataset import ClipPlan, ClipSource, collate_repeated
from video_transformers.data.inflight import InFlight
from video_transformers.data.shards import MANIFEST, Store, allow_plain_http, read_manifest, require_litdata
from video_transformers.data.video import VideoBytes, VideoInfo


class BytesSource(ClipSource):
    """:class:`ClipSource` over one video held as encoded bytes (index 0): its record's path is a
    :class:`VideoBytes`, which the readers open in memory. Built per streamed item, so it skips the base class's
    per-instance set-up (the loader-worker marker folder is shared through ``inflight``)."""

    def __init__(
        self, name: str, data: bytes, label: int, info: VideoInfo, clip_duration: float, decoder: str, inflight: Any
    ) -> None:
        self.records = [VideoRecord(path=VideoBytes(data, name), label=label, source=name)]  # type: ignore[arg-type]
        self.infos, self.clip_duration, self.cache, self.decoder = [info], clip_duration, False, decoder
        self._videos, self._too_big = {}, set()
        self.inflight = inflight


class StreamedItem:
    """LitData ``transform``: a shard item (one video) -> a training item or an evaluation item (its views).

    Runs in the loader workers; holds only picklable settings."""

    def __init__(self, where: str, *, clip_duration: float, decoder: str, plan: ClipPlan) -> None:
        self.where, self.clip_duration, self.decoder, self.plan = where, clip_duration, decoder, plan
        self.inflight = InFlight()

    def source(self, sample: dict) -> BytesSource:
        info = VideoInfo(**json.loads(sample["info"]))
        name = f"{self.where}: {sample['name']}"
        return BytesSource(
            name, sample["video"], int(sample["label"]), info, self.clip_duration, self.decoder, self.inflight
        )

    def __call__(self, sample: dict) -> dict:
        source, index = self.source(sample), int(sample["index"])
        views = self.plan.dataset(source)
        if self.plan.train:
            item = views[0]
            item["video_index"] = index if self.plan.repeats == 1 else torch.full((self.plan.repeats,), index)
            return item
        items = [views[k] for k in range(len(views))]
        return {
            "video": torch.stack([it["video"] for it in items]),
            "label": torch.tensor([it["label"] for it in items]),
            "video_index": torch.full((len(items),), index),
            "view_index": torch.tensor([it["view_index"] for it in items]),
            "skipped": torch.full((len(items),), -1),
        }


def streaming_dataset(
    store: Store, split: str, item: StreamedItem, *, shuffle: bool, drop_last: bool, seed: int, cache_dir: str | None
) -> Any:
    """LitData's ``StreamingDataset`` over ``store/split``, each item passed through ``item`` (kept as ``.item``)."""
    from litdata import StreamingDataset

    allow_plain_http(store.endpoint_url)
    dataset = StreamingDataset(
        store.join(split),
        cache_dir=None if cache_dir is None else os.path.join(cache_dir, split),
        shuffle=shuffle,
        drop_last=drop_last,
        seed=seed,
        storage_options=store.storage_options,
        transform=item,
    )
    dataset.item = item
    return dataset


def streaming_loader(
    dataset: Any, *, batch_size: int, num_workers: int, timeout: float, worker_init_fn: Any = None
) -> Any:
    """LitData's stateful ``StreamingDataLoader`` with ``batch_size`` clips per batch: an evaluation item (one
    video's views) counts as its number of views, and the views are flattened into the batch."""
    from litdata import StreamingDataLoader

    item: StreamedItem = dataset.item
    plan = item.plan
    return StreamingDataLoader(
        dataset,
        batch_size=max(1, batch_size // plan.views) if not plan.train else batch_size,  # videos per batch
        num_workers=num_workers,
        persistent_workers=False,  # LitData sets each epoch's shuffle and worker split when its iterator starts
        timeout=timeout if num_workers > 0 else 0.0,
        collate_fn=collate_repeated if not plan.train or plan.repeats > 1 else None,
        # CUDA cannot be used in forked workers once the trainer has initialised it
        multiprocessing_context="spawn" if item.decoder == "torchcodec_cuda" and num_workers > 0 else None,
        worker_init_fn=worker_init_fn,
    )


class ShardSet:
    """The shard set a data module streams from (``data.source: stream``, ``data.root`` = what ``vt data shard``
    wrote, ``data.endpoint_url``, ``data.stream_cache``: where downloaded chunks are kept)."""

    def __init__(self, url: str, *, endpoint_url: str | None = None, cache_dir: str | None = None) -> None:
        require_litdata("data.source=stream")
        self.store = Store(url, endpoint_url)
        self.manifest = read_manifest(self.store)
        self.cache_dir = cache_dir
        self.train_loader: Any = None
        self._resume: dict | None = None  # the training loader's state from a checkpoint, until the loader exists

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest["class_names"])

    def dataset(self, split: str, item: StreamedItem) -> Any:
        """The split's streaming dataset: shuffled, ranks evened out (``drop_last``) in training; every video once
        at evaluation."""
        if split not in self.manifest["splits"]:
            have = ", ".join(sorted(self.manifest["splits"]))
            raise ValueError(f"{self.store.join(MANIFEST)}: no {split!r} split in these shards (has: {have})")
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))  # seed_everything's: the same on every rank
        return streaming_dataset(
            self.store,
            split,
            item,
            shuffle=item.plan.train,
            drop_last=item.plan.train,
            seed=seed,
            cache_dir=self.cache_dir,
        )

    def loader(
        self, dataset: Any, *, batch_size: int, num_workers: int, timeout: float, worker_init_fn: Any = None
    ) -> Any:
        """:func:`streaming_loader`; the training loader takes the state :meth:`load_state_dict` was given."""
        loader = streaming_loader(
            dataset, batch_size=batch_size, num_workers=num_workers, timeout=timeout, worker_init_fn=worker_init_fn
        )
        if dataset.item.plan.train:
            if self._resume is not None:
                loader.load_state_dict(self._resume)
                self._resume = None
            self.train_loader = loader
        return loader

    # Lightning saves a stateful loader's state in the fit loop's checkpoint, but does not restore it when
    # configure_optimizers reads trainer.estimated_stepping_batches (which builds the loader before the checkpoint
    # is read: Lightning issue #20550, open) - our schedules do. The data module's own state is restored before
    # that, so the training loader's position travels there too.
    def state_dict(self) -> dict[str, Any]:
        return {"train_loader": self.train_loader.state_dict()} if self.train_loader is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume = state.get("train_loader")
