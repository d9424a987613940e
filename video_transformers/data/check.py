"""The check pass that ``vt data check`` and ``vt fit`` share: every listed video is probed the way training
will read it (:func:`~video_transformers.data.video.probe` decodes its first and last frames), and every problem
is recorded once, by kind, with the file and the reason."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from video_transformers.data.annotations import Annotations, VideoRecord
from video_transformers.data.errors import VideoDataError
from video_transformers.data.sampling import Sampling
from video_transformers.data.video import VideoInfo, probe

log = logging.getLogger(__name__)


@dataclass
class SplitScan:
    """What the check pass found in one split: usable records with their info, and every problem by kind."""

    split: str
    listed: int = 0
    records: list[VideoRecord] = field(default_factory=list)
    infos: list[VideoInfo] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    annotation_files: dict[str, str] = field(default_factory=dict)  # path -> sha256 of the files read

    @property
    def num_problems(self) -> int:
        return sum(len(v) for v in self.problems.values())

    def blocking(self) -> list[str]:
        """Problems that stop a run with ``on_bad_video=error``: all but files that were never listed as
        videos (``ignored``: a ``.txt`` or ``.gif`` in a class folder)."""
        return [msg for kind, msgs in self.problems.items() if kind != "ignored" for msg in msgs]


def problem_line(rec: VideoRecord, message: str) -> str:
    """``file:row: message``, without naming the video twice when the record's source is the video itself."""
    return message if rec.source == str(rec.path) and message.startswith(rec.source) else f"{rec.source}: {message}"


def scan_split(
    split: str,
    ann: Annotations,
    too_short: Callable[[VideoInfo], str | None],
    *,
    workers: int = 1,
    progress: bool = True,
) -> SplitScan:
    """Probe every record of ``ann`` (in ``workers`` threads); never raises on a bad row or video."""
    scan = SplitScan(split)
    for p in ann.problems:
        scan.problems[getattr(p, "kind", "annotation")].append(str(p))
    scan.listed = len(ann.records) + len(ann.problems)
    unique = _unique(ann.records, scan)

    def check(rec: VideoRecord) -> VideoInfo | VideoDataError:
        try:
            info = probe(rec.path)
        except VideoDataError as e:
            return e
        reason = too_short(info)
        return VideoDataError(f"{rec.path}: {reason}", kind="too_short") if reason else info

    with ThreadPoolExecutor(max(1, workers)) as pool:  # PyAV releases the GIL while it demuxes and decodes
        results = pool.map(check, unique)
        for rec, result in tqdm(
            zip(unique, results, strict=True),
            total=len(unique),
            desc=f"checking {split} videos",
            unit="video",
            leave=False,
            disable=not progress,
        ):
            if isinstance(result, VideoDataError):
                scan.problems[result.kind].append(problem_line(rec, str(result)))
            else:
                scan.records.append(rec)
                scan.infos.append(result)
    return scan


def _unique(records: Sequence[VideoRecord], scan: SplitScan) -> list[VideoRecord]:
    first: dict[str, VideoRecord] = {}
    unique = []
    for rec in records:
        if rec.key in first:
            scan.problems["duplicate"].append(
                f"{rec.source}: duplicated id {rec.key!r} (first listed at {first[rec.key].source})"
            )
            continue
        first[rec.key] = rec
        unique.append(rec)
    return unique


def apply_on_bad_video(scan: SplitScan, on_bad_video: str, root: object) -> None:
    """``data.on_bad_video`` on what the check pass found: ``error`` raises one error naming every unusable
    video (the file and reason first when there is one), ``skip`` warns with the list and trains without them."""
    ignored = scan.problems.get("ignored") or []
    if ignored:
        log.warning(
            "%d files under %s are not videos and are not used:\n  %s", len(ignored), root, "\n  ".join(ignored)
        )
    bad = scan.blocking()
    if bad:
        listing = "\n  ".join(bad)
        if on_bad_video == "error":
            where = f"{len(bad)} of {scan.listed} {scan.split} videos are unusable"
            fix = "set data.on_bad_video=skip to train without them; vt data check lists every problem"
            if len(bad) == 1:  # one line: the file and the reason first
                raise VideoDataError(f"{bad[0]} ({where}; {fix})")
            raise VideoDataError(f"{where} ({fix}):\n  {listing}")
        log.warning("skipping %d of %d %s videos:\n  %s", len(bad), scan.listed, scan.split, listing)
    if not scan.records:
        raise VideoDataError(f"no usable {scan.split} videos under {root}")


def log_clamped_strides(scan: SplitScan, sampling: Sampling) -> None:
    """Say how many usable videos are shorter than a frame-stride clip's span (their clips are clamped)."""
    if sampling.mode != "stride":
        return
    span = (sampling.num_frames - 1) * sampling.rate + 1
    short = sum(info.frames < span for info in scan.infos)
    if short:
        log.info(
            "%d %s videos are shorter than the %d-frame span of %s sampling: their clips are clamped"
            " to the last frame, as in the official code",
            short,
            scan.split,
            span,
            sampling.describe(),
        )
