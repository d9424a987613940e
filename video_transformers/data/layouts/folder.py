"""A folder per class, ``data.dataset: folder``::

    root/
      train/<class>/*.mp4     (.webm, .avi, .mkv, .mov, .m4v)
      val/<class>/...         (or validation/)
      test/<class>/...
      classes.txt             optional: fixes the class order; else the sorted folder names under train/

A class folder under val/ or test/ that train/ (or classes.txt) lacks is reported with its videos; other files in
class folders (``.gif``, ``.txt``) are reported as not used (kind ``ignored``), and broken symlinks are listed so
that the check names them.
"""

from __future__ import annotations

from pathlib import Path

from video_transformers.data.annotations import Annotations, VideoRecord, class_index, read_class_names
from video_transformers.data.errors import VideoDataError
from video_transformers.data.layouts import Format

EXTENSIONS = {".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v"}
SPLIT_DIRS = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}


def _split_dir(root: Path, split: str) -> Path:
    names = SPLIT_DIRS.get(split, (split,))
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise VideoDataError(
        f"{root / names[0]}: split folder not found (expected {split}/<class>/<video>)", kind="annotation"
    )


def class_names(root: Path) -> list[str]:
    if (root / "classes.txt").is_file():
        return read_class_names(root / "classes.txt")
    names = sorted(p.name for p in _split_dir(root, "train").iterdir() if p.is_dir())
    if not names:
        raise VideoDataError(f"{root / 'train'}: no class folders", kind="annotation")
    return names


def read_split(root: Path, split: str, names: list[str]) -> Annotations:
    base = _split_dir(root, split)
    index = class_index(names)
    exts = " ".join(sorted(EXTENSIONS))
    out = Annotations()
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.rglob("*") if not p.is_dir())  # broken symlinks too: the check names them
        videos = [p for p in files if p.suffix.lower() in EXTENSIONS]
        for p in files:
            if p.suffix.lower() not in EXTENSIONS:
                what = f"{p}: not a video file ({p.suffix or 'no extension'}; videos are {exts}): not used"
                out.problems.append(VideoDataError(what, kind="ignored"))
        if folder.name not in index:
            out.problems.extend(
                f"{v}: class folder {folder.name!r} is not among the {len(names)} classes" for v in videos
            )
            continue
        out.records.extend(VideoRecord(v, index[folder.name], str(v), str(v.relative_to(root))) for v in videos)
    return out.raise_if_empty(base)


LAYOUTS = {"folder": lambda split_id: Format(class_names, read_split)}
