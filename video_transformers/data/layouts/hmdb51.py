"""HMDB51 (Kuehne et al. 2011), ``data.dataset: hmdb51``, with the official three splits.

Layout, as distributed::

    root/
      testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt   "<video>.avi <0|1|2>" per line
      hmdb51_org/<class>/<video>.avi                             (or videos/<class>/...)

Marker 1 = training, 2 = testing, 0 = unused in that split. Classes are the sorted class names of the split
files (51). ``data.split_id`` picks the split (1-3); there is no validation split (``data.val_split: test``).
When a listed ``.avi`` is absent but a same-named ``.mp4`` exists (after ``vt data resize``), that is used.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

from video_transformers.data.annotations import Annotations, VideoRecord, numbered_lines
from video_transformers.data.errors import VideoDataError
from video_transformers.data.layouts import Format

SPLITS = "testTrainMulti_7030_splits"
VIDEO_DIRS = ("hmdb51_org", "videos")
MARKERS = {"train": "1", "test": "2"}
_NAME = re.compile(r"(.+)_test_split([123])\.txt")


def _split_files(root: Path, split_id: int) -> dict[str, Path]:
    folder = root / SPLITS
    if not folder.is_dir():
        raise VideoDataError(
            f"{folder}: split folder not found; expected <class>_test_split<N>.txt files", kind="annotation"
        )
    files = {
        m.group(1): p
        for p in sorted(folder.iterdir())
        if (m := _NAME.fullmatch(p.name)) and int(m.group(2)) == split_id
    }
    if not files:
        raise VideoDataError(f"{folder}: no <class>_test_split{split_id}.txt files", kind="annotation")
    return files


def class_names(root: Path, split_id: int = 1) -> list[str]:
    return sorted(_split_files(root, split_id))


def read_split(root: Path, split: str, names: list[str], split_id: int = 1) -> Annotations:
    if split not in MARKERS:
        raise VideoDataError(
            f"HMDB51 has train and test splits only, not {split!r}: set data.val_split: test", kind="annotation"
        )
    if split_id not in (1, 2, 3):
        raise ValueError(f"data.split_id must be 1, 2 or 3 for HMDB51; got {split_id}")
    files = _split_files(root, split_id)
    missing = sorted(set(names) - set(files))
    if missing:
        raise VideoDataError(f"{root / SPLITS}: no split{split_id} file for classes {missing}", kind="annotation")
    base = next((root / d for d in VIDEO_DIRS if (root / d).is_dir()), root / VIDEO_DIRS[0])
    out = Annotations()
    for label, name in enumerate(names):
        path = files[name]
        for where, line in numbered_lines(path):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                out.problems.append(f"{where}: expected '<video>.avi <0|1|2>'; got {line.strip()!r}")
                continue
            if parts[1] != MARKERS[split]:
                continue
            video = base / name / parts[0]
            if not video.is_file() and video.with_suffix(".mp4").is_file():
                video = video.with_suffix(".mp4")
            out.records.append(VideoRecord(video, label, where, Path(parts[0]).stem))
    return out.raise_if_empty(root / SPLITS / f"*_test_split{split_id}.txt ({split})")


def _hmdb51(split_id: int) -> Format:
    return Format(partial(class_names, split_id=split_id), partial(read_split, split_id=split_id), num_classes=51)


LAYOUTS = {"hmdb51": _hmdb51}
