"""Any dataset described by annotation files (parsers in :mod:`video_transformers.data.annotations`)::

    root/classes.txt              one class name per line (the class order)
    root/{train,val,test}.csv     ``data.dataset: csv``: header ``path,label``
    root/{train,val,test}.txt     ``data.dataset: list``: ``path label`` lines

Labels are class names or 0-based indices into ``classes.txt``; paths are relative to the root.
"""

from __future__ import annotations

from pathlib import Path

from video_transformers.data.annotations import Annotations, read_class_names, read_csv_rows, read_list
from video_transformers.data.layouts import Format


def read_csv_split(root: Path, split: str, names: list[str]) -> Annotations:
    return read_csv_rows(root / f"{split}.csv", root, names)


def read_list_split(root: Path, split: str, names: list[str]) -> Annotations:
    return read_list(root / f"{split}.txt", root, names)


def classes_txt(root: Path) -> list[str]:
    return read_class_names(root / "classes.txt")


LAYOUTS = {
    "csv": lambda split_id: Format(classes_txt, read_csv_split),
    "list": lambda split_id: Format(classes_txt, read_list_split),
}
