"""``data.dataset`` names -> the reader of that layout (a :class:`~video_transformers.data.layouts.Format`).

The table is read from the modules of :mod:`video_transformers.data.layouts`, each of which declares the names
it reads in ``LAYOUTS``; nothing here lists them. :data:`DATASETS` is sorted, so the data module's ``dataset``
choices and the error messages do not depend on file names. Layouts are documented in each reader's module and
in docs/datasets.md.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path

from video_transformers.data import layouts
from video_transformers.data.errors import VideoDataError
from video_transformers.data.layouts import Format


def _discover() -> dict[str, Callable[[int], Format]]:
    """Every ``LAYOUTS`` entry of the modules of ``data/layouts/``, sorted by name; a name declared twice raises."""
    found: dict[str, tuple[str, Callable[[int], Format]]] = {}
    for info in sorted(pkgutil.iter_modules(layouts.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{layouts.__name__}.{info.name}")
        for name, factory in getattr(module, "LAYOUTS", {}).items():
            if name in found:
                raise ValueError(f"{module.__file__}: layout {name!r} is already declared in {found[name][0]}")
            found[name] = (module.__file__, factory)
    return {name: found[name][1] for name in sorted(found)}


# data.dataset name -> its Format for a split id (UCF101 / HMDB51 ship three splits).
FORMATS: dict[str, Callable[[int], Format]] = _discover()
DATASETS = tuple(FORMATS)


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
    if name not in FORMATS:
        raise ValueError(f"data.dataset must be one of {DATASETS}; got {name!r}")
    fmt = FORMATS[name](split_id)
    return Format(_checked(fmt.class_names), fmt.read, fmt.class_pairs, fmt.num_classes)


__all__ = ["DATASETS", "FORMATS", "Format", "get_format"]
