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
from video_transformers.data.check import SplitScan, scan_split
from video_transformers.data.dataset import ClipSource, MultiViewDataset, TrainClipDataset, collate_repeated
from video_transformers.data.errors import VideoDataError
from video_transformers.data.formats import DATASETS, get_format
from video_transformers.data.inflight import ReportingDataLoader
from video_transformers.data.sampling import ClipSampler, Sampling, parse_sampling
from video_transformers.data.streaming import ShardSet, StreamedItem
from video_transformers.data.transforms import EvalTransform, MixupCutmix, TrainTransform, label_swap_map
from video_transformers.data.video import VideoInfo, check_decoder, resolve_decoder
from video_transformers.data.workers import WorkerInit

log = logging.getLogger(__name__)

Split = Literal["train", "val", "test"]
Dataset = Literal[DATASETS]  # the layouts of data/formats.py's table


KINETICS_MEAN, KINETICS_STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)  # data.mean/std without a model


class VideoDataModule(L.LightningDataModule):
    """Clips from a video dataset; see docs/datasets.md for the layouts and recipes.

    Args:
        dataset: the layout at ``root``: ``embedded`` builds the synthetic default dataset on first use (at
            ``root``, else ``$VT_DATA_DIR``, else ``~/.cache/video_transformers``); ``csv`` (``path,label`` +
            classes.txt), ``list`` (``path label``), ``folder`` (a folder per class), ``kinetics400/600/700``,
            ``ssv2``, ``ucf101``, ``hmdb51``.
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
            its pretrained weights expect (``input_normalisation`` of the LightningModule the trainer runs),
            else Kinetics' 0.45 / 0.225 (see :meth:`normalisation`).
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
        if source not in ("files", "stream"):
            raise ValueError(f"data.source must be 'files' or 'stream'; got {source!r}")
        if source == "stream" and root is None:
            raise ValueError(
                "data.root is required when data.source is 'stream' (the folder or s3:// URL of the shards)"
            )
        if dataset != "embedded" and root is None:
            raise ValueError(f"data.root is required when data.dataset is {dataset!r}")
        for name, value in dict(
            num_frames=num_frames,
            sampling_rate=sampling_rate,
            crop_size=crop_size,
            batch_size=batch_size,
            val_clips=val_clips,
            val_crops=val_crops,
            test_clips=test_clips,
            test_crops=test_crops,
            repeated_aug=repeated_aug,
        ).items():
            if value < 1:
                raise ValueError(f"data.{name} must be >= 1; got {value}")
        if loader_timeout < 0:
            raise ValueError(f"data.loader_timeout must be >= 0 seconds (0: no timeout); got {loader_timeout}")
        if fps <= 0:
            raise ValueError(f"data.fps must be > 0; got {fps}")
        if not crop_size <= train_short_side[0] <= train_short_side[1] or eval_short_side < crop_size:
            raise ValueError(
                f"need crop_size <= train_short_side[0] <= train_short_side[1] and crop_size <= eval_short_side;"
                f" got crop_size={crop_size}, train_short_side={train_short_side}, eval_short_side={eval_short_side}"
            )
        if not 0 <= random_erasing <= 1:
            raise ValueError(f"data.random_erasing is a probability; got {random_erasing}")
        self.sampling: Sampling = parse_sampling(sampling, num_frames=num_frames, sampling_rate=sampling_rate)
        check_decoder(decoder)
        self.decoder = resolve_decoder(decoder)  # torchcodec_cuda without a usable GPU: torchcodec, one warning
        self.save_hyperparameters()
        self.dataset = dataset
        self.root = Path(root) if root is not None else (synthetic.default_root() if dataset == "embedded" else None)
        self.format = get_format(dataset, split_id=split_id)
        self.num_frames, self.crop_size = num_frames, crop_size
        self.clip_duration = num_frames * sampling_rate / fps
        self.shards = ShardSet(root, endpoint_url=endpoint_url, cache_dir=stream_cache) if source == "stream" else None
        with recording_reads() as self.class_files:  # {path: sha256} of the class list, for vt test's report
            self.class_names = self.shards.class_names if self.shards else self.format.class_names(self.root)
        self.num_classes = len(self.class_names)
        self.class_pairs = self.format.class_pairs(self.root)  # time-reversed class pairs, for the reports
        self.label_swap = label_swap_map(hflip_label_pairs, self.class_names)
        if rand_augment:
            TrainTransform(
                crop_size=crop_size,
                short_side=train_short_side,
                hflip=False,
                mean=mean,
                std=std,
                rand_augment=rand_augment,
            )  # parse the string now: a typo fails before any decoding
        self.mixup = MixupCutmix(
            self.num_classes,
            mixup_alpha=mixup_alpha,
            cutmix_alpha=cutmix_alpha,
            prob=mixup_prob,
            switch_prob=mixup_switch_prob,
        )
        self._records: dict[str, tuple[list[VideoRecord], list[VideoInfo]]] = {}
        self.scans: dict[str, SplitScan] = {}
        self._datasets: dict[str, object] = {}
        self.skipped: dict[str, list[str]] = defaultdict(list)  # run-time substitutions, per split, this epoch

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
        if self.sampling.mode == "stride":
            span = (self.sampling.num_frames - 1) * self.sampling.rate + 1
            short = sum(info.frames < span for info in scan.infos)
            if short:
                log.info(
                    "%d %s videos are shorter than the %d-frame span of %s sampling: their clips are clamped"
                    " to the last frame, as in the official code",
                    short,
                    split,
                    span,
                    self.sampling.describe(),
                )
        return scan

    def checked_split(self, split: Split) -> tuple[list[VideoRecord], list[VideoInfo]]:
        """The split's records that pass the check pass, with their stream info (cached)."""
        if split not in self._records:
            if self.dataset == "embedded":
                self._build_embedded()  # no-op when built; covers use without prepare_data
            scan = self.scan(split)
            ignored = scan.problems.get("ignored") or []
            if ignored:
                log.warning(
                    "%d files under %s are not videos and are not used:\n  %s",
                    len(ignored),
                    self.root,
                    "\n  ".join(ignored),
                )
            bad = scan.blocking()
            if bad:
                listing = "\n  ".join(bad)
                if self.hparams.on_bad_video == "error":
                    where = f"{len(bad)} of {scan.listed} {split} videos are unusable"
                    fix = "set data.on_bad_video=skip to train without them; vt data check lists every problem"
                    if len(bad) == 1:  # one line: the file and the reason first
                        raise VideoDataError(f"{bad[0]} ({where}; {fix})")
                    raise VideoDataError(f"{where} ({fix}):\n  {listing}")
                log.warning("skipping %d of %d %s videos:\n  %s", len(bad), scan.listed, split, listing)
            if not scan.records:
                raise VideoDataError(f"no usable {split} videos under {self.root}")
            self._records[split] = (scan.records, scan.infos)
            self.scans[split] = scan  # what the check pass found: vt test's report lists it
        return self._records[split]

    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)``: data.mean/std, else the attached model's, else Kinetics' 0.45 / 0.225.

        Read here rather than pushed from the model: Lightning runs ``DataModule.setup`` (which builds the
        transforms) before ``LightningModule.setup``.
        """
        h = self.hparams
        if (h.mean is None) != (h.std is None):
            raise ValueError(f"set both data.mean and data.std or neither; got mean={h.mean}, std={h.std}")
        if h.mean is not None:
            return tuple(h.mean), tuple(h.std)
        module = self.trainer.lightning_module if self.trainer is not None else None
        if hasattr(module, "input_normalisation"):
            mean, std = module.input_normalisation
            log.info("data: normalising with the model's mean %s, std %s", mean, std)
            return tuple(mean), tuple(std)
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

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        mean, std = self.normalisation()
        h.mean, h.std = mean, std  # saved with checkpoints: inference normalises as this run did
        evaluate = EvalTransform(crop_size=h.crop_size, short_side=h.eval_short_side, mean=mean, std=std)
        skip = h.on_bad_video == "skip"
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in splits.get(stage or "fit", ("train", "val", "test")):
            if split in self._datasets:
                continue
            if self.shards is not None:
                self._datasets[split] = self.shards.dataset(split, self._streamed_item(split, evaluate))
                continue
            source = ClipSource(
                *self.checked_split(split), self.clip_duration, cache=h.cache_videos, decoder=self.decoder
            )
            if split == "train":
                self._datasets[split] = TrainClipDataset(
                    source,
                    num_frames=h.num_frames,
                    transform=self._train_transform(),
                    sampling=self.sampling,
                    repeats=h.repeated_aug,
                    skip_bad=skip,
                )
            else:
                clips, crops = (h.val_clips, h.val_crops) if split == "val" else (h.test_clips, h.test_crops)
                self._datasets[split] = MultiViewDataset(
                    source,
                    num_frames=h.num_frames,
                    num_clips=clips,
                    num_crops=crops,
                    transform=evaluate,
                    sampling=self.sampling,
                    skip_bad=skip,
                )
        trainer = getattr(self, "trainer", None)
        if skip and trainer is not None and not any(isinstance(c, SkippedVideoReport) for c in trainer.callbacks):
            trainer.callbacks.append(SkippedVideoReport())

    def _streamed_item(self, split: str, evaluate: EvalTransform) -> StreamedItem:
        """What a streamed video becomes in ``split``: the same sampler and transforms as files on disk."""
        h = self.hparams
        common = dict(
            clip_duration=self.clip_duration, decoder=self.decoder, sampling=self.sampling, num_frames=h.num_frames
        )
        where = self.shards.store.join(split)
        if split == "train":
            return StreamedItem(where, **common, transform=self._train_transform(), train=True, repeats=h.repeated_aug)
        clips, crops = (h.val_clips, h.val_crops) if split == "val" else (h.test_clips, h.test_crops)
        return StreamedItem(where, **common, transform=evaluate, train=False, num_clips=clips, num_crops=crops)

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
    (``on_bad_video=skip``); added to the trainer by :meth:`VideoDataModule.setup`."""

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
