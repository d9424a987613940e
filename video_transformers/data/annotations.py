"""The CSV annotation layout: ``classes.txt`` plus ``<split>.csv`` files with a ``path,label`` header.

Paths are relative to the dataset root (absolute paths are taken as they are); labels are class names
from ``classes.txt`` (one per line) or integer indices into it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from video_transformers.data.errors import VideoDataError


@dataclass(frozen=True)
class VideoRecord:
    path: Path
    label: int
    source: str  # "file:row" for messages


def read_class_names(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise VideoDataError(f"{path}: class list not found; expected one class name per line")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise VideoDataError(f"{path}: class list is empty")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise VideoDataError(f"{path}: duplicated class names {dup}")
    return names


def read_csv(path: str | Path, root: str | Path, class_names: list[str]) -> list[VideoRecord]:
    """Read a ``path,label`` CSV; malformed rows and unknown labels raise naming ``file:row``."""
    path, root = Path(path), Path(root)
    if not path.is_file():
        raise VideoDataError(f"{path}: annotation file not found")
    index = {name: i for i, name in enumerate(class_names)}
    records = []
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["path", "label"]:
            raise VideoDataError(f"{path}:1: expected the header 'path,label'; got {header!r}")
        for row_no, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            where = f"{path}:{row_no}"
            if len(row) != 2:
                raise VideoDataError(f"{where}: expected 2 columns (path,label); got {len(row)}: {row!r}")
            rel, label = row[0].strip(), row[1].strip()
            if label in index:
                y = index[label]
            elif label.isdigit() and int(label) < len(class_names):
                y = int(label)
            else:
                raise VideoDataError(f"{where}: unknown label {label!r}; not in the {len(class_names)} classes")
            records.append(VideoRecord(root / rel, y, where))
    if not records:
        raise VideoDataError(f"{path}: no videos listed")
    return records
