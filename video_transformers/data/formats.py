"""``data.dataset`` names -> the reader of that layout: ``class_names(root)``, ``read(root, split, names)`` and
the class metadata a layout may declare: ``class_pairs(root)``, pairs of classes that differ only in the
direction of time (evaluation reports their accuracy), and ``num_classes`` when the dataset fixes it (what
``vt info`` counts with when the data is not on this machine).

Layouts are documented in each reader's module and in docs/datasets.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from video_transformers.data import folder, hmdb51, kinetics, ssv2, synthetic, ucf101
from video_transformers.data.annotations import Annotations, read_class_names, read_csv_rows, read_list
from video_transformers.data.errors import VideoDataError


def _no_pairs(root: Path) -> list[tuple[str, str]]:
    return []


@dataclass(frozen=True)
class Format:
    class_names: Callable[[Path], list[str]]
    read: Callable[[Path, str, list[str]], Annotations]
    class_pairs: Callable[[Path], list[tuple[str, str]]] = _no_pairs
    num_classes: int | None = None


def _csv(root: Path, split: str, names: list[str]) -> Annotations:
    return read_csv_rows(root / f"{split}.csv", root, names)


def _list(root: Path, split: str, names: list[str]) -> Annotations:
    return read_list(root / f"{split}.txt", root, names)


def _classes_txt(root: Path) -> list[str]:
    return read_class_names(root / "classes.txt")


DATASETS = (
    "embedded",
    "csv",
    "list",
    "folder",
    "kinetics400",
    "kinetics600",
    "kinetics700",
    "ssv2",
    "ucf101",
    "hmdb51",
)


def _checked(class_names: Callable[[Path], list[str]]) -> Callable[[Path], list[str]]:
    """Every layout's class list must be non-empty, of non-empty unique names (as ``classes.txt`` is)."""

    def read(root: Path) -> list[str]:
        names = class_names(root)
        if not names or any(not n.strip() for n in names):
            raise VideoDataError(
                f"{root}: no class names found (or an empty one) in the annotations", kind="annotation"
            )
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise VideoDataError(f"{root}: duplicated class names {dup[:5]} in the annotations", kind="annotation")
        return names

    return read


def get_format(name: str, *, split_id: int = 1) -> Format:
    fmt = _get_format(name, split_id=split_id)
    return Format(_checked(fmt.class_names), fmt.read, fmt.class_pairs, fmt.num_classes)


def _get_format(name: str, *, split_id: int = 1) -> Format:
    if name == "embedded":
        return Format(
            lambda root: list(synthetic.CLASS_NAMES),
            _csv,
            lambda root: list(synthetic.PAIRS),
            len(synthetic.CLASS_NAMES),
        )
    if name == "csv":
        return Format(_classes_txt, _csv)
    if name == "list":
        return Format(_classes_txt, _list)
    if name == "folder":
        return Format(folder.class_names, folder.read_split)
    if name.startswith("kinetics") and name[8:] in ("400", "600", "700"):
        return Format(
            partial(kinetics.class_names, variant=int(name[8:])), kinetics.read_split, num_classes=int(name[8:])
        )
    if name == "ssv2":
        return Format(ssv2.class_names, ssv2.read_split, num_classes=174)
    if name == "ucf101":
        return Format(ucf101.class_names, partial(ucf101.read_split, split_id=split_id), num_classes=101)
    if name == "hmdb51":
        return Format(
            partial(hmdb51.class_names, split_id=split_id),
            partial(hmdb51.read_split, split_id=split_id),
            num_classes=51,
        )
    raise ValueError(f"data.dataset must be one of {DATASETS}; got {name!r}")
