"""Annotation records, and the two generic layouts.

``csv``: ``classes.txt`` plus ``<split>.csv`` files with a ``path,label`` header. ``list``: ``classes.txt`` plus
``<split>.txt`` files of ``path label`` lines (space-separated, as mmaction2's ``*_list_videos.txt``).

Paths are relative to the dataset root; a path that leaves it (``..``, absolute) is a bad row unless
``data.allow_outside_root`` (:func:`keep_within_root`). Labels are class names from ``classes.txt`` (one per
line) or integer indices into it.

Readers return :class:`Annotations`: the records, plus one message per bad row (``file:row: what was wrong``)
so that ``vt data check`` can list them all and ``on_bad_video=skip`` can drop them. File-level problems (no
file, wrong header or columns) raise :class:`VideoDataError` at once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from video_transformers.data.errors import VideoDataError


@dataclass(frozen=True)
class VideoRecord:
    path: Path
    label: int
    source: str  # "file:row" for messages
    video_id: str = ""  # what duplicates are detected by (the path when empty)

    @property
    def key(self) -> str:
        return self.video_id or str(self.path)


@dataclass
class Annotations:
    records: list[VideoRecord] = field(default_factory=list)
    # "file:row: message" (kind "annotation"), or a VideoDataError whose kind says what else was wrong
    problems: list[str | VideoDataError] = field(default_factory=list)

    def raise_if_empty(self, path: Path | str) -> Annotations:
        if not self.records and not self.problems:
            raise VideoDataError(f"{path}: no videos listed", kind="annotation")
        return self


_READS: ContextVar[dict[str, str] | None] = ContextVar("annotation_reads", default=None)


@contextmanager
def recording_reads() -> Iterator[dict[str, str]]:
    """Inside the block, every annotation file :func:`read_text` reads is recorded as ``{path: sha256}`` (what
    ``vt test``'s report lists as the annotation files it was measured on)."""
    reads: dict[str, str] = {}
    token = _READS.set(reads)
    try:
        yield reads
    finally:
        _READS.reset(token)


def read_text(path: str | Path) -> str:
    """An annotation file as text (UTF-8, BOM allowed). Undecodable bytes or NUL characters (a binary or
    damaged file) are a :class:`VideoDataError` naming the file, not a ``UnicodeDecodeError`` from deep inside a
    reader."""
    path = Path(path)
    try:
        data = path.read_bytes()
        reads = _READS.get()
        if reads is not None:
            reads[str(path)] = hashlib.sha256(data).hexdigest()
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise VideoDataError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})", kind="annotation") from e
    except OSError as e:
        raise VideoDataError(f"{path}: cannot read ({e.strerror or e})", kind="annotation") from e
    if "\x00" in text:
        raise VideoDataError(f"{path}: holds NUL bytes: not a text annotation file", kind="annotation")
    return text


def csv_lines(path: str | Path) -> io.StringIO:
    """:func:`read_text` as a file object for ``csv.reader`` / ``csv.DictReader``."""
    return io.StringIO(read_text(path), newline="")


def require_file(path: Path, what: str = "annotation file") -> Path:
    """``path``, or a :class:`VideoDataError` saying that the ``what`` is not there."""
    if not path.is_file():
        raise VideoDataError(f"{path}: {what} not found", kind="annotation")
    return path


def numbered_lines(path: Path) -> Iterator[tuple[str, str]]:
    """``("file:row", line)`` for every non-blank line of a text annotation file (rows count from 1)."""
    for row_no, line in enumerate(read_text(path).splitlines(), start=1):
        if line.strip():
            yield f"{path}:{row_no}", line


def class_index(names: list[str]) -> dict[str, int]:
    return {name: i for i, name in enumerate(names)}


def read_class_names(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise VideoDataError(f"{path}: class list not found; expected one class name per line", kind="annotation")
    names = [line.strip() for line in read_text(path).splitlines() if line.strip()]
    if not names:
        raise VideoDataError(f"{path}: class list is empty", kind="annotation")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise VideoDataError(f"{path}: duplicated class names {dup}", kind="annotation")
    return names


def resolve_label(label: str, index: dict[str, int], num_classes: int) -> int | None:
    """A class name, or an integer index into the class list; ``None`` when it is neither."""
    if label in index:
        return index[label]
    if label.isdigit() and int(label) < num_classes:
        return int(label)
    return None


def keep_within_root(ann: Annotations, root: str | Path, *, allow_outside: bool = False) -> Annotations:
    """Move every record whose path leaves ``root`` (``..`` components, absolute paths) to the problems,
    naming its row, unless ``allow_outside``. Paths are compared after lexical normalisation, not by
    following symlinks: a dataset may keep its videos on another disk behind a link, but an annotation file
    (often downloaded) cannot point the loader at arbitrary files."""
    if allow_outside:
        return ann
    base = os.path.abspath(root)
    kept = []
    for rec in ann.records:
        target = os.path.abspath(rec.path)  # abspath normalises '..' without touching the file system
        if os.path.commonpath([base, target]) == base:
            kept.append(rec)
        else:
            ann.problems.append(
                f"{rec.source}: {rec.path} is outside the dataset root {base}"
                " (set data.allow_outside_root=true if the annotation file is trusted)"
            )
    ann.records = kept
    return ann


def read_csv_rows(path: str | Path, root: str | Path, class_names: list[str]) -> Annotations:
    """Read a ``path,label`` CSV; malformed rows and unknown labels are collected naming ``file:row``."""
    path, root = require_file(Path(path)), Path(root)
    index, out = class_index(class_names), Annotations()
    with csv_lines(path) as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != ["path", "label"]:
            raise VideoDataError(f"{path}:1: expected the header 'path,label'; got {header!r}", kind="annotation")
        for row_no, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            where = f"{path}:{row_no}"
            if len(row) != 2:
                out.problems.append(f"{where}: expected 2 columns (path,label); got {len(row)}: {row!r}")
                continue
            rel, label = row[0].strip(), row[1].strip()
            y = resolve_label(label, index, len(class_names))
            if y is None:
                out.problems.append(f"{where}: unknown label {label!r}; not in the {len(class_names)} classes")
                continue
            out.records.append(VideoRecord(root / rel, y, where))
    return out.raise_if_empty(path)


def read_list(path: str | Path, root: str | Path, class_names: list[str]) -> Annotations:
    """Read ``path label`` lines (the label is the last space-separated field, so paths may hold spaces)."""
    path, root = require_file(Path(path)), Path(root)
    index, out = class_index(class_names), Annotations()
    for where, line in numbered_lines(path):
        parts = line.strip().rsplit(maxsplit=1)
        if len(parts) != 2:
            out.problems.append(f"{where}: expected 'path label'; got {line.strip()!r}")
            continue
        y = resolve_label(parts[1], index, len(class_names))
        if y is None:
            out.problems.append(f"{where}: unknown label {parts[1]!r}; not in the {len(class_names)} classes")
            continue
        out.records.append(VideoRecord(root / parts[0], y, where))
    return out.raise_if_empty(path)


def read_csv(path: str | Path, root: str | Path, class_names: list[str]) -> list[VideoRecord]:
    """:func:`read_csv_rows`, raising one error that lists every bad row."""
    ann = read_csv_rows(path, root, class_names)
    if ann.problems:
        raise VideoDataError("\n".join(map(str, ann.problems)), kind="annotation")
    return ann.records
