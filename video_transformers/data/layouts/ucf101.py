"""UCF101 (Soomro et al. 2012), ``data.dataset: ucf101``, with the official three train/test splits.

Layout, as distributed::

    root/
      ucfTrainTestlist/classInd.txt          "1 ApplyEyeMakeup" ... "101 YoYo"
      ucfTrainTestlist/trainlist0{1,2,3}.txt "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1" (1-based class)
      ucfTrainTestlist/testlist0{1,2,3}.txt  "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi" (class from the folder)
      UCF-101/<Class>/v_<Class>_gXX_cYY.avi  (or videos/<Class>/...)

``data.split_id`` picks the split (1-3). There is no validation list: set ``data.val_split: test`` (the usual
practice, as in the papers' UCF101 transfer results). Listed extensions are kept; when the listed ``.avi`` is
absent but a same-named ``.mp4`` exists (after ``vt data resize``), that is used.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from video_transformers.data.annotations import (
    Annotations,
    VideoRecord,
    class_index,
    numbered_lines,
    read_text,
    require_file,
)
from video_transformers.data.errors import VideoDataError
from video_transformers.data.layouts import Format

LISTS = "ucfTrainTestlist"
VIDEO_DIRS = ("UCF-101", "videos")


def class_names(root: Path) -> list[str]:
    path = root / LISTS / "classInd.txt"
    if not path.is_file():
        raise VideoDataError(
            f"{path}: class index not found; expected '<1-based index> <ClassName>' lines", kind="annotation"
        )
    pairs = []
    for row_no, line in enumerate(read_text(path).splitlines(), start=1):
        if line.strip():
            parts = line.split()
            if len(parts) != 2 or not parts[0].isdigit():
                raise VideoDataError(
                    f"{path}:{row_no}: expected '<index> <ClassName>'; got {line!r}", kind="annotation"
                )
            pairs.append((int(parts[0]), parts[1]))
    if sorted(i for i, _ in pairs) != list(range(1, len(pairs) + 1)):
        raise VideoDataError(f"{path}: indices must be 1..{len(pairs)} without gaps or repeats", kind="annotation")
    return [name for _, name in sorted(pairs)]


def _video(root: Path, rel: str) -> Path:
    base = next((root / d for d in VIDEO_DIRS if (root / d).is_dir()), root / VIDEO_DIRS[0])
    path = base / rel
    if not path.is_file() and path.with_suffix(".mp4").is_file():
        return path.with_suffix(".mp4")
    return path


def read_split(root: Path, split: str, names: list[str], split_id: int = 1) -> Annotations:
    if split not in ("train", "test"):
        raise VideoDataError(
            f"UCF101 has train and test lists only, not {split!r}: set data.val_split: test", kind="annotation"
        )
    if split_id not in (1, 2, 3):
        raise ValueError(f"data.split_id must be 1, 2 or 3 for UCF101; got {split_id}")
    path = require_file(root / LISTS / f"{split}list0{split_id}.txt", "split list")
    index, out = class_index(names), Annotations()
    for where, line in numbered_lines(path):
        parts = line.split()
        rel = parts[0]
        folder = rel.split("/")[0]
        if folder not in index:
            out.problems.append(f"{where}: class folder {folder!r} of {rel!r} is not in classInd.txt")
            continue
        if len(parts) == 2:
            if not parts[1].isdigit() or int(parts[1]) - 1 != index[folder]:
                out.problems.append(
                    f"{where}: label {parts[1]!r} does not match the folder {folder!r}"
                    f" (class {index[folder] + 1} in classInd.txt)"
                )
                continue
        elif len(parts) != 1:
            out.problems.append(f"{where}: expected '<Class>/<file>.avi [<index>]'; got {line!r}")
            continue
        out.records.append(VideoRecord(_video(root, rel), index[folder], where, Path(rel).stem))
    return out.raise_if_empty(path)


LAYOUTS = {
    "ucf101": lambda split_id: Format(class_names, partial(read_split, split_id=split_id), num_classes=101),
}
