"""``VideoDataModule``: a dataset layout (Kinetics, SSv2, UCF101, HMDB51, folders, CSV, the embedded one) ->
clip data loaders, with the papers' frame sampling and augmentation recipes as options.

Training draws one random clip per video; validation and test cut every video into
``num_clips x num_crops`` views (4 x 3 by default at test) whose scores the LightningModule aggregates
per video. Before any loader is built, a check pass probes every listed video and either raises one
error naming every bad file and row (``on_bad_video="error"``) or drops them with a warning that lists them
(``"skip"``). With ``skip``, a video that still fails at run time is logged and replaced by the next one of its
split, and the epoch's replaced videos are reported when it ends (:class:`SkippedVideoReport`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from video_transformers.data import synthetic
from video_transformers.data.annotations import VideoRecord, keep_within_root, recording_reads
from video_transformers.data.check import SplitScan, apply_on_bad_video, log_clamped_strides, scan_split
from video_transformers.data.dataset import ClipPlan, ClipSource, collate_repeated
from video_transformers.data.formats import DATASETS, get_format
from video_transformers.data.inflight import ReportingDataLoader
from video_transformers.data.options import check_options
from video_transformers.data.sampling import ClipSampler, Sampling, parse_sampling
from video_transformers.data.streaming import ShardSet, StreamedItem
from video_transformers.data.transforms import EvalTransform, MixupCutmix, TrainTransform, label_swap_map
from video_transformers.data.video import VideoInfo, check_decoder, resolve_decoder
from video_transformers.data.workers import WorkerInit

log = logging.getLogger(__name__)

Split = Literal["train", "val", "test"]
Dataset = Literal[DATASETS]  # the layouts declared by the modules of data/layouts/


KINETICS_MEAN, KINETICS_STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)  # data.mean/std without a model


class VideoDataModule(L.LightningDataModule):
    """Clips from a video dataset; see docs/datasets.md for the layouts and recipes.

    Args:
        dataset: the layout at ``root``, one of those declared in ``data/layouts/`` (docs/datasets.md), e.g.
            ``embedded`` builds the synthetic default dataset on first use (at ``root``, else ``$VT_DATA_DIR``,
            else ``~/.cache/video_transformers``); ``csv`` (``path,label`` + classes.txt), ``folder`` (a folder
            per class), ``kinetics400``, ``ssv2``, ``ucf101``, ``hmdb51``.
        split_id: the official split (1-3) of UCF101 and HMDB51.
        val_split / test_split: the annotation split the validation / test loaders read (``val`` for Kinetics and
            SSv2 tests, whose test labels are withheld; ``test`` for validation on UCF101 / HMDB51).
        sampling: ``time`` (``num_frames * sampling_rate / fps`` seconds), ``stride`` or ``"8x32"`` (frame
            strides), ``uniform`` or ``"u8"`` (TSN segments), or ``timesformer`` / ``vivit`` / ``uniformerv2``.
        decoder: ``pyav`` (default), or the optional ``decord`` / ``torchcodec``, or ``torchcodec_cuda`` (NVDEC: frames
            decoded and augmented on the rank's GPU, loader workers spawned; the CPU with one warning without one).
        crop_size: side of the square input; ``train_crop`` is ``scale_jitter`` (random short side in
            ``train_short_side``, random crop) or ``random_resized`` (``rrc_scale``, ``rrc_ratio``);
            ``eval_short_side`` is the short side before evaluation crops.
        hflip / hflip_label_pairs: random horizontal flips; flipped clips of a listed class take its mirror's label.
        rand_augment: a timm-style RandAugment string (``rand-m7-n4-mstd0.5``); ``random_erasing``: its probability.
        mixup_alpha / cutmix_alpha / mixup_prob / mixup_switch_prob: batch mixing; training labels become
            ``(B, num_classes)`` soft targets.
        repeated_aug: augmented copies of each decoded training clip (the batch holds ``batch_size x`` that).
        mean / std: per-channel normalisation of ``[0, 1]`` pixels. ``None`` (default): the model's, i.e. what
            its pretrained weights expect (handed over by :meth:`set_normalisation`), else Kinetics' 0.45 / 0.225
            (see :meth:`normalisation`).
        val_clips / val_crops, test_clips / test_crops: views per video at validation / test.
        on_bad_video: ``error`` (default) or ``skip`` for bad rows and missing, unreadable, too-short or
            duplicated videos.
        cache_videos: decode each video once and keep its frames in memory (small datasets only; a video
            larger than ``safety.limits.LIMITS.max_cached_video_bytes`` is decoded per clip instead).
        allow_outside_root: accept annotation paths that leave ``root`` (``..``, absolute paths); off, each such
            row is a bad row naming the file and row.
        loader_timeout: seconds a worker may take for one batch before the run stops with an error naming the
            videos being decoded (a hung decoder); 0 waits forever. Needs ``num_workers > 0``.
        source: ``files`` (default: the videos under ``root``) or ``stream``: ``root`` is a shard set made by
            ``vt data shard`` (a folder or ``s3://bucket/prefix``), streamed through LitData
            (:mod:`video_transformers.data.streaming`); class names come from its manifest and ``dataset`` is not read.
        endpoint_url: the S3-compatible endpoint of a streamed ``s3://`` root (MinIO, Ceph, R2); AWS when unset.
        stream_cache: local folder for downloaded chunks (default: LitData's cache folder).
    """

    def __init__(
        self,
        *,
        dataset: Dataset = "embedded",
        root: str | None = None,
        split_id: int = 1,
        val_split: str = "val",
        test_split: str = "test",
        sampling: str = "time",
        decoder: Literal["pyav", "decord", "torchcodec", "torchcodec_cuda"] = "pyav",
        num_frames: int = 8,
        sampling_rate: int = 2,
        fps: float = 16.0,
        crop_size: int = 32,
        train_crop: Literal["scale_jitter", "random_resized"] = "scale_jitter",
        train_short_side: tuple[int, int] = (32, 40),
        rrc_scale: tuple[float, float] = (0.08, 1.0),
        rrc_ratio: tuple[float, float] = (0.75, 1.3333),
        eval_short_side: int = 40,
        hflip: bool = False,
        hflip_label_pairs: list[list[str]] | None = None,
        rand_augment: str | None = None,
        random_erasing: float = 0.0,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        mixup_prob: float = 1.0,
        mixup_switch_prob: float = 0.5,
        repeated_aug: int = 1,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        val_clips: int = 1,
        val_crops: int = 1,
        test_clips: int = 4,
        test_crops: int = 3,
        on_bad_video: Literal["error", "skip"] = "error",
        cache_videos: bool = False,
        allow_outside_root: bool = False,
        loader_timeout: float = 600.0,
        source: Literal["files", "stream"] = "files",
        endpoint_url: str | None = None,
        stream_cache: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_options(self.hparams)
        self.sampling: Sampling = parse_sampling(sampling, num_frames=num_frames, sampling_rate=sampling_rate)
        check_decoder(decoder)
        self.decoder = resolve_decoder(decoder)  # torchcodec_cuda without a usable GPU: torchcodec, one warning
        self.dataset, self.num_frames, self.crop_size = dataset, num_frames, crop_size
        self.root = Path(root) if root is not None else (synthetic.default_root() if dataset == "embedded" else None)
        self.format = get_format(dataset, split_id=split_id)
        self.clip_duration = num_frames * sampling_rate / fps
        self.shards = ShardSet(root, endpoint_url=endpoint_url, cache_dir=stream_cache) if source == "stream" else None
        self._init_classes()
        self.model_normalisation: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # set_normalisation
        self._records: dict[str, tuple[list[VideoRecord], list[VideoInfo]]] = {}
        self.scans: dict[str, SplitScan] = {}
        self._datasets: dict[str, object] = {}
        self.skipped: dict[str, list[str]] = defaultdict(list)  # run-time substitutions, per split, this epoch

    def _init_classes(self) -> None:
        """The class list, and what depends on it: the flip label swap, batch mixing's soft targets."""
        h = self.hparams
        with recording_reads() as self.class_files:  # {path: sha256} of the class list, for vt test's report
            self.class_names = self.shards.class_names if self.shards else self.format.class_names(self.root)
        self.num_classes = len(self.class_names)
        self.class_pairs = self.format.class_pairs(self.root)  # time-reversed class pairs, for the reports
        self.label_swap = label_swap_map(h.hflip_label_pairs, self.class_names)
        self.mixup = MixupCutmix(
            self.num_classes,
            mixup_alpha=h.mixup_alpha,
            cutmix_alpha=h.cutmix_alpha,
            prob=h.mixup_prob,
            switch_prob=h.mixup_switch_prob,
        )

    def annotation_split(self, split: str) -> str:
        return {"val": self.hparams.val_split, "test": self.hparams.test_split}.get(split, split)

    # -- preparation --------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.dataset == "embedded" and self.shards is None:
            self._build_embedded()

    def _build_embedded(self) -> None:
        # An explicit root holding a complete embedded dataset of any size is used as it is (tests build tiny
        # ones); the default root is (re)built at the default size.
        if self.hparams.root is None or synthetic.verify(self.root) is not None:
            synthetic.build(self.root)

    def scan(self, split: str, *, workers: int | None = None, progress: bool = True) -> SplitScan:
        """Read the split's annotations and probe every listed video; never raises on a bad row or video."""
        with recording_reads() as files:
            ann = self.format.read(self.root, self.annotation_split(split), self.class_names)
        ann = keep_within_root(ann, self.root, allow_outside=self.hparams.allow_outside_root)
        sampler = ClipSampler(self.sampling, self.clip_duration)
        workers = workers or max(1, self.hparams.num_workers)
        scan = scan_split(split, ann, sampler.too_short, workers=workers, progress=progress)
        scan.annotation_files = {**self.class_files, **files}
        log_clamped_strides(scan, self.sampling)
        return scan

    def checked_split(self, split: Split) -> tuple[list[VideoRecord], list[VideoInfo]]:
        """The split's records that pass the check pass, with their stream info (cached)."""
        if split not in self._records:
            if self.dataset == "embedded":
                self._build_embedded()  # no-op when built; covers use without prepare_data
            scan = self.scan(split)
            apply_on_bad_video(scan, self.hparams.on_bad_video, self.root)
            self._records[split] = (scan.records, scan.infos)
            self.scans[split] = scan  # what the check pass found: vt test's report lists it
        return self._records[split]

    # -- normalisation and transforms -----------------------------------------------------------------
    def set_normalisation(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        """The model's normalisation (what its weights expect), used when data.mean / data.std are unset. Whoever
        pairs the model with this data module calls it before ``setup``: the ``vt`` CLI after building both."""
        self.model_normalisation = tuple(mean), tuple(std)

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)``: data.mean/std, else the model's (:meth:`set_normalisation`), else Kinetics' 0.45 / 0.225."""
        h = self.hparams
        if (h.mean is None) != (h.std is None):
            raise ValueError(f"set both data.mean and data.std or neither; got mean={h.mean}, std={h.std}")
        if h.mean is not None:
            return tuple(h.mean), tuple(h.std)
        if self.model_normalisation is not None:
            log.info("data: normalising with the model's mean %s, std %s", *self.model_normalisation)
            return self.model_normalisation
        return KINETICS_MEAN, KINETICS_STD

    def _train_transform(self) -> TrainTransform:
        h = self.hparams
        return TrainTransform(
            crop_size=h.crop_size,
            short_side=tuple(h.train_short_side),
            hflip=h.hflip,
            mean=h.mean,
            std=h.std,
            crop=h.train_crop,
            rrc_scale=tuple(h.rrc_scale),
            rrc_ratio=tuple(h.rrc_ratio),
            swap=self.label_swap,
            rand_augment=h.rand_augment,
            random_erasing=h.random_erasing,
        )

    def _plan(self, split: str, evaluate: EvalTransform) -> ClipPlan:
        """How ``split`` cuts its videos: one augmented training clip, or the split's clips x crops views."""
        h = self.hparams
        if split == "train":
            transform = self._train_transform()
            return ClipPlan(h.num_frames, self.sampling, transform, train=True, repeats=h.repeated_aug)
        clips, crops = (h.val_clips, h.val_crops) if split == "val" else (h.test_clips, h.test_crops)
        return ClipPlan(h.num_frames, self.sampling, evaluate, train=False, num_clips=clips, num_crops=crops)

    # -- datasets -------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        mean, std = self.normalisation()
        h.mean, h.std = mean, std  # saved with checkpoints: inference normalises as this run did
        evaluate = EvalTransform(crop_size=h.crop_size, short_side=h.eval_short_side, mean=mean, std=std)
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in splits.get(stage or "fit", ("train", "val", "test")):
            if split not in self._datasets:
                self._datasets[split] = self._dataset(split, self._plan(split, evaluate))

    def _dataset(self, split: str, plan: ClipPlan) -> object:
        """Files on disk (after the check pass) or the split's shards (``data.source: stream``), cut by ``plan``."""
        if self.shards is not None:
            where = self.shards.store.join(split)
            item = StreamedItem(where, clip_duration=self.clip_duration, decoder=self.decoder, plan=plan)
            return self.shards.dataset(split, item)
        h = self.hparams
        source = ClipSource(*self.checked_split(split), self.clip_duration, cache=h.cache_videos, decoder=self.decoder)
        return plan.dataset(source, skip_bad=h.on_bad_video == "skip")

    # -- loaders ------------------------------------------------------------------------------------
    def _loader(self, split: str, *, train: bool) -> DataLoader:
        h = self.hparams
        trainer = getattr(self, "trainer", None)
        worker_init = WorkerInit(trainer.global_rank if trainer is not None else 0)
        if self.shards is not None:
            size = h.batch_size if train else (h.eval_batch_size or h.batch_size)
            return self.shards.loader(
                self._datasets[split],
                batch_size=size,
                num_workers=h.num_workers,
                timeout=h.loader_timeout,
                worker_init_fn=worker_init,
            )
        return ReportingDataLoader(
            self._datasets[split],
            inflight=self._datasets[split].source.inflight,
            batch_size=h.batch_size if train else (h.eval_batch_size or h.batch_size),
            shuffle=train,
            drop_last=train,
            num_workers=h.num_workers,
            persistent_workers=h.num_workers > 0,
            timeout=h.loader_timeout if h.num_workers > 0 else 0.0,
            pin_memory=False,
            collate_fn=collate_repeated if train and h.repeated_aug > 1 else None,
            # CUDA cannot be used in forked workers once the trainer has initialised it
            multiprocessing_context="spawn" if self.decoder == "torchcodec_cuda" and h.num_workers > 0 else None,
            worker_init_fn=worker_init,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def state_dict(self) -> dict:
        """Saved in checkpoints: where a streamed training epoch stands (files on disk need no state)."""
        return self.shards.state_dict() if self.shards is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.shards is not None:
            self.shards.load_state_dict(state)

    # -- per batch: run-time skips, mixup -----------------------------------------------------------------
    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        trainer = getattr(self, "trainer", None)
        training = trainer is not None and trainer.training
        skipped = batch.pop("skipped", None)
        if skipped is not None and bool((skipped >= 0).any()):
            split = "train" if training else ("test" if trainer is not None and trainer.testing else "val")
            self.note_skipped(split, skipped)
        if training and self.mixup.enabled:
            batch["video"], batch["label"] = self.mixup(batch["video"], batch["label"])
        return batch

    def note_skipped(self, split: str, skipped: torch.Tensor) -> None:
        source = self._datasets[split].source
        for j in sorted({int(j) for j in skipped.flatten().tolist() if j >= 0}):
            path = str(source.records[j].path)
            if path not in self.skipped[split]:
                self.skipped[split].append(path)

    def report_skipped(self, split: str) -> list[str]:
        """Log and forget the videos of ``split`` that were replaced at run time since the last report."""
        paths = self.skipped.pop(split, [])
        if paths:
            log.warning(
                "%d %s videos failed to decode at run time and were replaced by the next video of the split:\n  %s",
                len(paths),
                split,
                "\n  ".join(paths),
            )
        return paths


class SkippedVideoReport(Callback):
    """Reports, at the end of each epoch, the videos that failed at run time and were replaced
    (``on_bad_video=skip``); every ``vt`` run has one (``cli.FORCED_CALLBACKS``)."""

    def __init__(self) -> None:
        self.history: list[tuple[str, int, list[str]]] = []  # (split, epoch, paths)

    def _report(self, trainer: L.Trainer, split: str) -> None:
        dm = trainer.datamodule
        if isinstance(dm, VideoDataModule):
            paths = dm.report_skipped(split)
            if paths:
                self.history.append((split, trainer.current_epoch, paths))

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, "train")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, "test")
