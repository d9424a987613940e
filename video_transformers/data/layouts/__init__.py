"""Dataset layout readers, one module per layout family. Each module declares the ``data.dataset`` names it
reads in a module-level ``LAYOUTS`` dict: name -> the :class:`Format` for a split id (UCF101 / HMDB51 ship
three splits). :mod:`video_transformers.data.formats` finds the modules of this package itself, so a new
layout is its module here, its test and ``configs/data/<name>.yaml``; nothing else lists layouts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from video_transformers.data.annotations import Annotations


def no_pairs(root: Path) -> list[tuple[str, str]]:
    return []


@dataclass(frozen=True)
class Format:
    """How to read one layout: ``class_names(root)``, ``read(root, split, names)``, and the class metadata a
    layout may declare: ``class_pairs(root)``, pairs of classes that differ only in the direction of time
    (evaluation reports their accuracy), and ``num_classes`` when the dataset fixes it (what ``vt info``
    counts with when the data is not on this machine)."""

    class_names: Callable[[Path], list[str]]
    read: Callable[[Path, str, list[str]], Annotations]
    class_pairs: Callable[[Path], list[tuple[str, str]]] = no_pairs
    num_classes: int | None = None
