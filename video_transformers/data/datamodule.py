"""``VideoDataModule``: annotation CSVs (or the embedded dataset) -> clip data loaders.

Training draws one random clip per video; validation and test cut every video into
``num_clips x num_crops`` views (4 x 3 by default at test) whose scores the LightningModule aggregates
per video. Before any loader is built, a check pass probes every listed video and either raises one
error naming every bad file (``on_bad_video="error"``) or drops them with a warning that lists them
(``"skip"``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import lightning as L
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from video_transformers.data import synthetic
from video_transformers.data.annotations import VideoRecord, read_class_names, read_csv
from video_transformers.data.dataset import ClipSource, MultiViewDataset, TrainClipDataset
from video_transformers.data.errors import VideoDataError
from video_transformers.data.transforms import EvalTransform, TrainTransform
from video_transformers.data.video import VideoInfo, probe

log = logging.getLogger(__name__)

Split = Literal["train", "val", "test"]


class VideoDataModule(L.LightningDataModule):
    """Clips from a CSV-annotated dataset (``root/classes.txt``, ``root/{train,val,test}.csv``).

    Args:
        dataset: ``embedded`` builds the synthetic default dataset on first use (at ``root``, else
            ``$VT_DATA_DIR``, else ``~/.cache/video_transformers``); ``csv`` reads an existing ``root``.
        num_frames / sampling_rate / fps: a clip spans ``num_frames * sampling_rate / fps`` seconds
            and is subsampled to ``num_frames`` frames.
        crop_size: side of the square input; ``train_short_side`` is the random short-side range
            before the random crop; ``eval_short_side`` the short side before evaluation crops.
        val_clips / val_crops, test_clips / test_crops: views per video at validation / test.
        on_bad_video: ``error`` (default) or ``skip`` for missing, unreadable and too-short videos.
        cache_videos: decode each video once and keep its frames in memory (small datasets only).
    """

    def __init__(
        self,
        *,
        dataset: Literal["embedded", "csv"] = "embedded",
        root: str | None = None,
        num_frames: int = 8,
        sampling_rate: int = 2,
        fps: float = 16.0,
        crop_size: int = 32,
        train_short_side: tuple[int, int] = (32, 40),
        eval_short_side: int = 40,
        hflip: bool = False,
        mean: tuple[float, float, float] = (0.45, 0.45, 0.45),
        std: tuple[float, float, float] = (0.225, 0.225, 0.225),
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        val_clips: int = 1,
        val_crops: int = 1,
        test_clips: int = 4,
        test_crops: int = 3,
        on_bad_video: Literal["error", "skip"] = "error",
        cache_videos: bool = False,
    ) -> None:
        super().__init__()
        if dataset == "csv" and root is None:
            raise ValueError("data.root is required when data.dataset is 'csv'")
        for name, value in dict(num_frames=num_frames, sampling_rate=sampling_rate, crop_size=crop_size,
                                batch_size=batch_size, val_clips=val_clips, val_crops=val_crops,
                                test_clips=test_clips, test_crops=test_crops).items():
            if value < 1:
                raise ValueError(f"data.{name} must be >= 1; got {value}")
        if fps <= 0:
            raise ValueError(f"data.fps must be > 0; got {fps}")
        if not crop_size <= train_short_side[0] <= train_short_side[1] or eval_short_side < crop_size:
            raise ValueError(
                f"need crop_size <= train_short_side[0] <= train_short_side[1] and crop_size <= eval_short_side;"
                f" got crop_size={crop_size}, train_short_side={train_short_side}, eval_short_side={eval_short_side}"
            )
        self.save_hyperparameters()
        self.dataset = dataset
        self.root = Path(root) if root is not None else (synthetic.default_root() if dataset == "embedded" else None)
        self.num_frames, self.crop_size = num_frames, crop_size
        self.clip_duration = num_frames * sampling_rate / fps
        self.class_names = list(synthetic.CLASS_NAMES) if dataset == "embedded" else read_class_names(self.root / "classes.txt")
        self.num_classes = len(self.class_names)
        self._records: dict[str, tuple[list[VideoRecord], list[VideoInfo]]] = {}
        self._datasets: dict[str, object] = {}

    # -- preparation --------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.dataset == "embedded":
            synthetic.build(self.root)

    def checked_split(self, split: Split) -> tuple[list[VideoRecord], list[VideoInfo]]:
        """The split's records that pass the check pass, with their stream info (cached)."""
        if split not in self._records:
            if self.dataset == "embedded":
                synthetic.build(self.root)  # no-op when built; covers use without prepare_data
            records = read_csv(self.root / f"{split}.csv", self.root, self.class_names)
            self._records[split] = self._check(split, records)
        return self._records[split]

    def _check(self, split: str, records: list[VideoRecord]) -> tuple[list[VideoRecord], list[VideoInfo]]:
        good, infos, bad = [], [], []
        min_duration = self.clip_duration - 1.0 / self.hparams.fps  # allow one frame of rounding
        for rec in tqdm(records, desc=f"checking {split} videos", unit="video", leave=False):
            try:
                info = probe(rec.path)
                if info.duration < min_duration:
                    raise VideoDataError(
                        f"{rec.path}: video is {info.duration:.2f}s long; a clip needs {self.clip_duration:.2f}s"
                        f" ({self.num_frames} frames x sampling rate {self.hparams.sampling_rate} at"
                        f" {self.hparams.fps:g} fps)"
                    )
            except VideoDataError as e:
                bad.append(f"{rec.source}: {e}")
                continue
            good.append(rec)
            infos.append(info)
        if bad:
            listing = "\n  ".join(bad)
            if self.hparams.on_bad_video == "error":
                raise VideoDataError(
                    f"{len(bad)} of {len(records)} {split} videos are unusable"
                    f" (set data.on_bad_video=skip to train without them):\n  {listing}"
                )
            log.warning("skipping %d of %d %s videos:\n  %s", len(bad), len(records), split, listing)
        if not good:
            raise VideoDataError(f"no usable {split} videos under {self.root}")
        return good, infos

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        evaluate = EvalTransform(crop_size=h.crop_size, short_side=h.eval_short_side, mean=h.mean, std=h.std)
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in splits.get(stage or "fit", ("train", "val", "test")):
            if split in self._datasets:
                continue
            source = ClipSource(*self.checked_split(split), self.clip_duration, cache=h.cache_videos)
            if split == "train":
                train = TrainTransform(crop_size=h.crop_size, short_side=tuple(h.train_short_side), hflip=h.hflip,
                                       mean=h.mean, std=h.std)
                self._datasets[split] = TrainClipDataset(source, num_frames=h.num_frames, transform=train)
            else:
                clips, crops = (h.val_clips, h.val_crops) if split == "val" else (h.test_clips, h.test_crops)
                self._datasets[split] = MultiViewDataset(
                    source, num_frames=h.num_frames, num_clips=clips, num_crops=crops, transform=evaluate
                )

    # -- loaders ------------------------------------------------------------------------------------
    def _loader(self, split: str, *, train: bool) -> DataLoader:
        h = self.hparams
        return DataLoader(
            self._datasets[split],
            batch_size=h.batch_size if train else (h.eval_batch_size or h.batch_size),
            shuffle=train,
            drop_last=train,
            num_workers=h.num_workers,
            persistent_workers=h.num_workers > 0,
            pin_memory=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)
