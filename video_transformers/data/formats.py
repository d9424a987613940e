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


def _embedded(split_id: int) -> Format:
    return Format(
        lambda root: list(synthetic.CLASS_NAMES), _csv, lambda root: list(synthetic.PAIRS), len(synthetic.CLASS_NAMES)
    )


def _kinetics(variant: int) -> Callable[[int], Format]:
    return lambda split_id: Format(
        partial(kinetics.class_names, variant=variant), kinetics.read_split, num_classes=variant
    )


def _hmdb51(split_id: int) -> Format:
    read = partial(hmdb51.read_split, split_id=split_id)
    return Format(partial(hmdb51.class_names, split_id=split_id), read, num_classes=51)


# data.dataset name -> its Format for a split id (UCF101 / HMDB51 ship three splits). A new layout is its
# reader module, one entry here, a data config under configs/data/ and a test; the datamodule's ``dataset``
# choices are read from this table.
FORMATS: dict[str, Callable[[int], Format]] = {
    "embedded": _embedded,
    "csv": lambda split_id: Format(_classes_txt, _csv),
    "list": lambda split_id: Format(_classes_txt, _list),
    "folder": lambda split_id: Format(folder.class_names, folder.read_split),
    "kinetics400": _kinetics(400),
    "kinetics600": _kinetics(600),
    "kinetics700": _kinetics(700),
    "ssv2": lambda split_id: Format(ssv2.class_names, ssv2.read_split, num_classes=174),
    "ucf101": lambda split_id: Format(
        ucf101.class_names, partial(ucf101.read_split, split_id=split_id), num_classes=101
    ),
    "hmdb51": _hmdb51,
}
DATASETS = tuple(FORMATS)


def get_format(name: str, *, split_id: int = 1) -> Format:
    if name not in FORMATS:
        raise ValueError(f"data.dataset must be one of {DATASETS}; got {name!r}")
    fmt = FORMATS[name](split_id)
    return Format(_checked(fmt.class_names), fmt.read, fmt.class_pairs, fmt.num_classes)
