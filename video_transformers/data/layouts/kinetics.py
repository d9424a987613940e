"""Kinetics-400 / 600 / 700 (Kay et al. 2017; Carreira et al. 2018, 2019).

Layout (``data.dataset: kinetics400`` | ``kinetics600`` | ``kinetics700``)::

    root/
      annotations/train.csv          official: label,youtube_id,time_start,time_end,split (any column order)
      annotations/validate.csv       (or val.csv)
      annotations/test.csv           the test split needs its label column
      train/<label>/<youtube_id>_<time_start:06d>_<time_end:06d>.mp4
      val/<label>/...                (or validate/, or the split column's value)
      classes.txt                    optional: fixes the class order; else the sorted labels of train.csv

Instead of the CSVs, ``annotations/<split>_list.txt`` files of ``path label`` lines (paths relative to root,
labels as names or indices into ``classes.txt``, as mmaction2's lists) may be given.

A video is looked for as ``<split dir>/<label>/<name>``, with the label's spaces kept or turned to underscores,
then flat as ``<split dir>/<name>``; ``.mp4``, ``.webm`` and ``.mkv`` are tried. The first candidate is kept for
a missing video, so the check pass names where it was expected. Duplicates are detected by
``<youtube_id>_<start>_<end>``. The class count is compared with the variant's (400/600/700) and a difference
is logged (tiny copies are fine).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

from video_transformers.data.annotations import (
    Annotations,
    VideoRecord,
    class_index,
    csv_lines,
    read_class_names,
    read_list,
)
from video_transformers.data.errors import VideoDataError
from video_transformers.data.layouts import Format

log = logging.getLogger(__name__)

COLUMNS = ("label", "youtube_id", "time_start", "time_end")
EXTENSIONS = (".mp4", ".webm", ".mkv")
SPLIT_FILES = {"train": ("train",), "val": ("validate", "val"), "test": ("test",)}
SPLIT_DIRS = {"train": ("train",), "val": ("val", "validate"), "test": ("test",)}


def _annotation(root: Path, split: str) -> tuple[Path, str]:
    names = SPLIT_FILES.get(split, (split,))
    for name in names:
        for path, kind in (
            (root / "annotations" / f"{name}.csv", "csv"),
            (root / "annotations" / f"{name}_list.txt", "list"),
        ):
            if path.is_file():
                return path, kind
    raise VideoDataError(
        f"{root / 'annotations' / (names[0] + '.csv')}: annotation file not found"
        f" (nor {', '.join(n + '.csv / ' + n + '_list.txt' for n in names)} under {root / 'annotations'})",
        kind="annotation",
    )


def class_names(root: Path, variant: int) -> list[str]:
    if (root / "classes.txt").is_file():
        names = read_class_names(root / "classes.txt")
    else:
        path, kind = _annotation(root, "train")
        if kind != "csv":
            raise VideoDataError(
                f"{root / 'classes.txt'}: class list not found (list files label by index)", kind="annotation"
            )
        with csv_lines(path) as f:
            names = sorted({(row.get("label") or "").strip() for row in _dict_rows(f, path)} - {""})
    if len(names) != variant:
        log.warning("Kinetics-%d at %s has %d classes (expected %d)", variant, root, len(names), variant)
    return names


def _dict_rows(f, path: Path) -> csv.DictReader:  # noqa: ANN001
    reader = csv.DictReader(f)
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise VideoDataError(
            f"{path}:1: missing columns {missing}; expected the official header"
            f" 'label,youtube_id,time_start,time_end,split'; got {reader.fieldnames!r}",
            kind="annotation",
        )
    reader.fieldnames = header
    return reader


def _find(root: Path, dirs: list[str], label: str, name: str) -> Path:
    candidates = [
        root / d / lab / (name + ext)
        for d in dirs
        for lab in dict.fromkeys((label, label.replace(" ", "_")))
        for ext in EXTENSIONS
    ] + [root / d / (name + ext) for d in dirs for ext in EXTENSIONS]
    return next((p for p in candidates if p.is_file()), candidates[0])


def read_split(root: Path, split: str, names: list[str]) -> Annotations:
    path, kind = _annotation(root, split)
    if kind == "list":
        return read_list(path, root, names)
    index = class_index(names)
    out = Annotations()
    with csv_lines(path) as f:
        for row_no, row in enumerate(_dict_rows(f, path), start=2):
            where = f"{path}:{row_no}"
            label = (row.get("label") or "").strip()
            if label not in index:
                out.problems.append(f"{where}: unknown label {label!r}; not in the {len(names)} classes")
                continue
            try:
                start, end = int(float(row["time_start"])), int(float(row["time_end"]))
            except (TypeError, ValueError):
                out.problems.append(
                    f"{where}: time_start/time_end must be numbers; got"
                    f" {row.get('time_start')!r}, {row.get('time_end')!r}"
                )
                continue
            vid = f"{(row['youtube_id'] or '').strip()}_{start:06d}_{end:06d}"
            dirs = list(
                dict.fromkeys([*(d for d in [(row.get("split") or "").strip()] if d), *SPLIT_DIRS.get(split, (split,))])
            )
            out.records.append(VideoRecord(_find(root, dirs, label, vid), index[label], where, vid))
    return out.raise_if_empty(path)


def _kinetics(variant: int) -> Callable[[int], Format]:
    return lambda split_id: Format(partial(class_names, variant=variant), read_split, num_classes=variant)


LAYOUTS = {"kinetics400": _kinetics(400), "kinetics600": _kinetics(600), "kinetics700": _kinetics(700)}
